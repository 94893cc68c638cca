"""The report opens and renders in a real browser (headless Chromium)."""

import math
import pathlib

import pytest


def _open(browser, path):
    browser.get(pathlib.Path(path).resolve().as_uri())
    return browser.execute_script(
        "return {"
        "  title: document.title,"
        "  images: Array.from(document.images).map(image => ({"
        "    id: image.closest('figure').id, complete: image.complete,"
        "    width: image.naturalWidth, height: image.naturalHeight,"
        "    shown: image.getBoundingClientRect().width})),"
        "  summary: Array.from(document.querySelectorAll('#summary tbody tr'))"
        "    .map(row => Array.from(row.cells).map(cell => cell.textContent)),"
        "  requests: performance.getEntriesByType('resource').map(entry => entry.name),"
        "}"
    )


def test_every_image_loads_and_the_table_has_the_logged_numbers(browser, finished_run):
    page = _open(browser, finished_run["report"].path)
    assert page["title"] == "Reliability report"
    assert len(page["images"]) == 10
    for image in page["images"]:
        # Decoded by the browser, with a size, and laid out on the page.
        assert image["complete"] and image["width"] > 100 and image["height"] > 100, image
        assert image["shown"] > 100, image
    # Self-contained: the page fetched nothing.
    assert page["requests"] == []
    history = finished_run["history"]
    rows = {row[0]: row for row in page["summary"]}
    assert set(rows) == set(history)
    for key, values in history.items():
        assert math.isclose(float(rows[key][1]), values[-1], rel_tol=5e-4, abs_tol=1e-12), key
        assert rows[key][2] == str(len(values))


@pytest.mark.filterwarnings("ignore:predict_with_uncertainty:UserWarning")
def test_a_page_written_after_the_run_renders_too(browser, finished_run, tmp_path):
    from keras_reliability.report import write_report

    path = write_report(
        tmp_path,
        finished_run["history"],
        callbacks=finished_run["callbacks"][:2],
        uncertainty_data=finished_run["uncertainty_data"],
        image_shape=(8, 8),
        num_samples=4,
    )
    page = _open(browser, path)
    ids = [image["id"] for image in page["images"]]
    assert "uncertainty/examples" in ids and "robustness/adv_accuracy_vs_epsilon" not in ids
    assert all(image["complete"] and image["width"] > 100 for image in page["images"])
