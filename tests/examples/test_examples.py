"""The scripts of examples/, run in their `--quick` mode as a user would run them.

Each example runs as a subprocess (`python examples/<script> --quick --out
<tmp>`, under the current KERAS_BACKEND) and must exit with status 0, write
its files (real PNGs, CSVs, ...) and print sane numbers, parsed from its
output. The examples are backend-agnostic and take a few seconds each, so CI
runs them once, under PyTorch. Adding an example is one `Example` entry in
`EXAMPLES` with a check of its printed numbers.
"""

import dataclasses
import json
import os
import pathlib
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable

import pytest

if os.environ.get("KERAS_BACKEND") != "torch":
    pytest.skip(
        "the examples are backend-agnostic: CI runs them once, under PyTorch "
        "(KERAS_BACKEND=torch)",
        allow_module_level=True,
    )

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The same location rule as tests/conftest.py (not importable under importlib mode).
DATA = pathlib.Path(os.environ.get("KERAS_RELIABILITY_DATA", ROOT.parent / "shared" / "data"))
TIMEOUT = 300  # seconds per example; a quick run takes 10-20 s on 2 CPUs


# ---------------------------------------------------------------------------
# Reading what an example wrote and printed.
# ---------------------------------------------------------------------------


def _check_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"


def _check_csv(path):
    lines = path.read_text().splitlines()
    assert len(lines) >= 2 and "," in lines[0], f"{path.name} is not a CSV with a header row"


def _check_json(path):
    json.loads(path.read_text())


def _check_keras(path):
    with zipfile.ZipFile(path) as archive:
        assert "config.json" in archive.namelist(), f"{path.name} is not a .keras archive"


def _check_html(path):
    assert "<html" in path.read_text().lower(), f"{path.name} is not an HTML page"


FILE_CHECKS = {
    ".png": _check_png,
    ".csv": _check_csv,
    ".json": _check_json,
    ".keras": _check_keras,
    ".html": _check_html,
}

_NUMBER = r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?"


def values(stdout):
    """The `name: number` lines of an example's output, as a dict."""
    pattern = rf"^([^|\n]+?): ({_NUMBER})$"
    return {name: float(number) for name, number in re.findall(pattern, stdout, re.M)}


def table(stdout):
    """The numeric rows `| name | 0.1 | 93.00% | ... |` of the printed tables.

    Returns a dict from the first cell to the list of numbers of the row;
    percentages are returned as fractions.
    """
    rows = {}
    for line in stdout.splitlines():
        if not line.startswith("|"):
            continue
        name, *cells = (cell.strip() for cell in line.strip().strip("|").split("|"))
        numbers = [re.fullmatch(rf"({_NUMBER})(%?)", cell) for cell in cells]
        if cells and all(numbers):
            rows[name] = [float(m[1]) / (100 if m[2] else 1) for m in numbers]
    return rows


def within(value, low, high):
    return low <= value <= high


# ---------------------------------------------------------------------------
# The checks of each example's numbers (quick mode).
# ---------------------------------------------------------------------------


def check_calibrate_digits(stdout, out):
    found = re.search(rf"test accuracy ({_NUMBER})  test ECE ({_NUMBER}) -> ({_NUMBER})", stdout)
    assert found, "no test accuracy / ECE line"
    accuracy, before, after = map(float, found.groups())
    assert within(accuracy, 0.5, 1.0)  # chance is 0.1
    assert within(before, 0.0, 1.0) and within(after, 0.0, 1.0)
    # Two epochs leave the network underconfident: the temperature helps.
    assert after < before
    assert len((out / "history.csv").read_text().splitlines()) == 1 + 2  # header, 2 epochs


def check_ood(stdout, out):
    accuracy = float(re.search(rf"^test accuracy ({_NUMBER})$", stdout, re.M)[1])
    assert within(accuracy, 0.3, 1.0)
    rows = table(stdout)
    scorers = {"msp", "maxlogit", "energy", "entropy", "odin", "mahalanobis", "knn", "vim"}
    assert scorers | {"react", "mutual_information"} <= set(rows)
    for name, (auroc, aupr_in, aupr_out, fpr95) in rows.items():
        assert all(within(v, 0.0, 1.0) for v in (auroc, aupr_in, aupr_out, fpr95)), name
    # Feature-space distances tell letters from digits even after one epoch.
    assert rows["mahalanobis"][0] > 0.9


def check_adversarial(stdout, out):
    rows = table(stdout)
    assert set(rows) == {"0", "0.05", "0.1", "0.2", "0.3"}
    assert all(within(v, 0.0, 1.0) for row in rows.values() for v in row)
    (plain_clean, robust_clean), (plain_03, robust_03) = rows["0"], rows["0.3"]
    assert plain_clean > 0.3 and robust_clean > 0.3
    assert plain_03 < plain_clean and robust_03 < robust_clean
    epoch = re.search(rf"^epoch 1  clean ({_NUMBER})  FGSM eps=0.1 ({_NUMBER})$", stdout, re.M)
    assert epoch and all(within(float(v), 0.0, 1.0) for v in epoch.groups())


def check_robust_models(stdout, out):
    rows = table(stdout)
    assert set(rows) == {"fgsm", "pgd_madry"}
    report = json.loads((out / "accuracy.json").read_text())
    assert report["num_images"] == 100 and report["epsilon"] == 0.3
    for name, (clean, fgsm, pgd, apgd, square) in rows.items():
        assert clean >= 0.95, name  # 98.5% / 99.0% on the whole test set
        assert all(within(v, 0.0, clean) for v in (fgsm, pgd, apgd, square)), name
        # Adversarially trained: most digits survive even the strongest attack.
        assert min(pgd, apgd) >= 0.75, name
        assert report["results"][name]["pgd"] == pytest.approx(pgd)


def check_mc_dropout(stdout, out):
    found = values(stdout)
    assert within(found["MC mean test accuracy"], 0.8, 1.0)
    for inputs in ("digits", "noise"):
        assert within(found[f"{inputs} entropy"], 0.0, 2.31)  # log(10) nats at most
        assert within(found[f"{inputs} 95% interval width"], 0.0, 1.0)
    # Measured in quick mode (seeds 0-3, all three backends): noise had 3-4
    # times the digits' mutual information, and >= 98% of noise images
    # exceeded the median digit.
    assert found["noise mutual information"] > 2 * found["digits mutual information"] > 0
    assert found["noise above the median digit's mutual information"] >= 0.9


def check_bayesian_swap(stdout, out):
    assert "swapped layers: DenseFlipout, DenseFlipout, DenseFlipout" in stdout
    assert values(stdout)["largest weight change on reload"] == 0
    rows = table(stdout)
    assert set(rows) == {"deterministic", "swapped", "fine-tuned", "reloaded"}
    for name, (accuracy, ece, *uncertainty) in rows.items():
        assert within(accuracy, 0.8, 1.0) and within(ece, 0.0, 1.0), name
        assert all(v >= 0 for v in uncertainty), name
    # The swap keeps the trained weights as posterior means.
    assert abs(rows["swapped"][0] - rows["deterministic"][0]) <= 0.03
    assert abs(rows["reloaded"][0] - rows["fine-tuned"][0]) <= 0.03  # 8 samples apart
    assert rows["deterministic"][4:] == [0.0, 0.0]
    for name in ("swapped", "fine-tuned", "reloaded"):
        mi_digits, mi_noise = rows[name][4:]
        assert mi_noise > mi_digits > 0, name


def check_reliability_report(stdout, out):
    found = values(stdout)
    for key in ("val_ece", "val_ece_after_ts", "ood_msp_auroc", "ood_energy_auroc"):
        assert within(found[key], 0.0, 1.0), key
    assert found["val_temperature"] > 0
    assert within(found["adv_pgd_accuracy"], 0.0, found["adv_clean_accuracy"])
    assert found["adv_clean_accuracy"] > 0.2  # chance is 0.1
    assert found["mutual information, digits"] >= 0
    assert found["mutual information, letters"] >= 0
    assert f"report: {out / 'reliability_report.html'}" in stdout
    page = (out / "reliability_report.html").read_text()
    # Curves of 4 groups, reliability diagram, ROC, 2 histograms, robustness, uncertainty.
    assert page.count('src="data:image/png;base64,') == 10


# ---------------------------------------------------------------------------
# The examples.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Example:
    script: str
    files: tuple  # paths under --out that the quick run must write
    check: Callable  # check(stdout, out_dir) of the printed numbers
    args: tuple = ()  # extra arguments after --quick
    data: tuple = ()  # folders of DATA it reads (then it gets --data DATA)


EXAMPLES = [
    Example(
        "calibrate_digits.py",
        files=(
            "history.csv",
            "reliability_epoch_0001.png",
            "reliability_epoch_0002.png",
            "calibration_history.png",
            "reliability_test.png",
        ),
        check=check_calibrate_digits,
    ),
    Example(
        "ood_mnist_vs_notmnist.py",
        files=(
            "history.csv",
            "ood_roc_epoch_0001.png",
            "ood_msp_histogram_epoch_0001.png",
            "roc_curves.png",
            "histogram_msp.png",
            "histogram_vim.png",
        ),
        check=check_ood,
        data=("mnist_test_idx", "notmnist_test_idx"),
    ),
    Example(
        "adversarial_training_mnist.py",
        files=("robustness_curve.png",),
        check=check_adversarial,
        data=("mnist_test_idx",),
    ),
    Example(
        "robust_models_mnist.py",
        files=("accuracy.json", "robustness_curve.png"),
        check=check_robust_models,
        args=("--curve",),
        data=("mnist_test_idx", "wong2020_mnist_models"),
    ),
    Example(
        "mc_dropout_noise.py",
        files=("bands_digit.png", "bands_noise.png"),
        check=check_mc_dropout,
    ),
    Example(
        "bayesian_layer_swap.py",
        files=("bayesian.keras", "reliability_bayesian.png", "bands_noise.png"),
        check=check_bayesian_swap,
    ),
    Example(
        "reliability_report_mnist.py",
        files=("reliability_report.html", "history.csv"),
        check=check_reliability_report,
        data=("mnist_test_idx", "notmnist_test_idx"),
    ),
]


def test_every_example_is_listed():
    scripts = {path.name for path in (ROOT / "examples").glob("*.py")} - {
        "mnist_data.py",
        "digits_data.py",
    }
    assert scripts == {example.script for example in EXAMPLES}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example.script[:-3])
def test_example(example, tmp_path):
    for folder in example.data:
        if not (DATA / folder).exists():
            pytest.skip(
                f"reference data {DATA / folder} is absent (set KERAS_RELIABILITY_DATA "
                "to the shared/data folder to run this example)"
            )
    command = [sys.executable, str(ROOT / "examples" / example.script), "--quick"]
    command += ["--out", str(tmp_path), *example.args]
    if example.data:
        command += ["--data", str(DATA)]
    run = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert run.returncode == 0, f"{example.script} failed:\n{run.stdout}\n{run.stderr[-3000:]}"
    for name in example.files:
        path = tmp_path / name
        assert path.is_file(), f"{example.script} did not write {name}"
        FILE_CHECKS[path.suffix](path)
    example.check(run.stdout, tmp_path)
