"""Tests of `keras_reliability.report`: the page, its numbers, and its errors."""

import base64
import html.parser
import math
import os
import warnings

import keras
import numpy as np
import pytest

import keras_reliability as kr
from keras_reliability.callbacks import tensorboard_images

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _Page(html.parser.HTMLParser):
    """Images (id of the enclosing figure, data URI) and tables (id -> rows) of a page."""

    def __init__(self, text):
        super().__init__()
        self.images, self.tables, self.headings, self.captions = [], {}, [], []
        self._figure = self._table = self._row = self._cell = None
        self._in_heading = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure":
            self._figure = attrs.get("id")
        elif tag == "img":
            self.images.append((self._figure, attrs["src"]))
            self.captions.append(attrs.get("alt"))
        elif tag == "table":
            self._table = self.tables.setdefault(attrs.get("id", ""), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = ""
        elif tag == "h2":
            self._in_heading = True
            self.headings.append("")

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row:
                self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "h2":
            self._in_heading = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._in_heading:
            self.headings[-1] += data


def _page(path):
    with open(path, encoding="utf-8") as file:
        return _Page(file.read())


def _assert_close_to_4_digits(cell, value):
    assert math.isclose(float(cell), value, rel_tol=5e-4, abs_tol=1e-12), (cell, value)


def test_report_holds_every_section_and_embedded_pngs(finished_run):
    report = finished_run["report"]
    assert report.path == os.path.join(str(finished_run["log_dir"]), "reliability_report.html")
    page = _page(report.path)
    assert page.headings == [
        "Summary",
        "Per-epoch curves",
        "Calibration",
        "Out-of-distribution detection",
        "Adversarial robustness",
        "Uncertainty",
    ]
    tags = [tag for tag, _ in page.images]
    assert tags == [
        "curves/0",
        "curves/1",
        "curves/2",
        "curves/3",
        "calibration/val_reliability_diagram",
        "ood/ood_roc_curves",
        "ood/ood_msp_histogram",
        "ood/ood_energy_histogram",
        "robustness/adv_accuracy_vs_epsilon",
        "uncertainty/examples",
    ]
    for tag, source in page.images:
        prefix = "data:image/png;base64,"
        assert source.startswith(prefix), tag
        assert base64.b64decode(source[len(prefix) :]).startswith(PNG_SIGNATURE), tag


def test_summary_table_holds_the_logged_numbers(finished_run):
    history = finished_run["history"]
    rows = {row[0]: row[1:] for row in _page(finished_run["report"].path).tables["summary"]}
    # Every key fit logged, the reliability ones included.
    assert set(rows) == set(history)
    for key in ("val_ece", "ood_energy_auroc", "adv_fgsm_accuracy", "loss", "val_accuracy"):
        latest, epoch, low, high = rows[key]
        _assert_close_to_4_digits(latest, history[key][-1])
        assert epoch == "2"
        _assert_close_to_4_digits(low, min(history[key]))
        _assert_close_to_4_digits(high, max(history[key]))


def test_robustness_curve_is_the_attack_at_fractions_of_the_budget(finished_run):
    table = _page(finished_run["report"].path).tables["robustness/adv_fgsm"]
    epsilons = [float(row[0]) for row in table]
    np.testing.assert_allclose(epsilons, [0.0, 0.025, 0.05, 0.075, 0.1])
    accuracies = [float(row[1]) for row in table]
    # The clean point equals the callback's clean accuracy of the last epoch,
    # the full budget its FGSM accuracy (same model, data and attack).
    history = finished_run["history"]
    _assert_close_to_4_digits(table[0][1], history["adv_clean_accuracy"][-1])
    _assert_close_to_4_digits(table[-1][1], history["adv_fgsm_accuracy"][-1])
    assert accuracies[-1] <= accuracies[0]


def test_uncertainty_table_matches_predict_with_uncertainty(finished_run):
    rows = {row[0]: row[1:] for row in _page(finished_run["report"].path).tables["uncertainty"]}
    with pytest.warns(UserWarning, match="same output in all 8 samples"):
        result = kr.uncertainty.predict_with_uncertainty(
            finished_run["model"], finished_run["uncertainty_data"], num_samples=8
        )
    for name, values in (
        ("confidence", result.confidence),
        ("predictive entropy (nats)", result.predictive_entropy),
        ("epistemic (mutual information, nats)", result.epistemic),
    ):
        for cell, value in zip(rows[name], (np.mean(values), np.min(values), np.max(values))):
            assert math.isclose(float(cell), value, rel_tol=5e-4, abs_tol=1e-6), name


def test_report_of_an_mc_dropout_model(make_digits_model, shuffled_digits, tmp_path):
    x, y = shuffled_digits
    noise = np.random.default_rng(2).uniform(size=(30, 64)).astype("float32")
    report = kr.report.ReliabilityReport(
        tmp_path, uncertainty_data=np.concatenate([x[1500:1530], noise]), num_samples=16
    )
    make_digits_model(mc_dropout=True).fit(
        x[:1200], y[:1200], epochs=1, verbose=0, callbacks=[report]
    )
    page = _page(report.path)
    rows = {row[0]: row[1:] for row in page.tables["uncertainty"]}
    epistemic_mean, _, epistemic_max = map(float, rows["epistemic (mutual information, nats)"])
    assert 0.0 < epistemic_mean < epistemic_max
    assert [tag for tag, _ in page.images][-1] == "uncertainty/examples"


def test_reliability_bins_of_the_calibration_callback(finished_run, shuffled_digits):
    calibration = finished_run["callbacks"][0]
    assert calibration.latest_epoch == 1
    bins = calibration.latest_reliability_bins()
    x, y = shuffled_digits
    outputs = finished_run["model"].predict(x[1200:], verbose=0)
    expected = kr.metrics.reliability_bins(y[1200:], outputs, num_bins=15, from_logits=True)
    np.testing.assert_allclose(bins.count, expected.count)
    np.testing.assert_allclose(bins.accuracy, expected.accuracy, equal_nan=True)
    np.testing.assert_allclose(bins.confidence, expected.confidence, rtol=1e-5, equal_nan=True)
    assert kr.callbacks.CalibrationCallback((x[:10], y[:10])).latest_reliability_bins() is None


def test_write_report_after_the_run_gives_the_same_table(finished_run, tmp_path):
    path = kr.report.write_report(
        str(tmp_path),
        finished_run["history"],
        callbacks=finished_run["callbacks"],
        filename="after.html",
        title="After the run",
    )
    assert path == os.path.join(str(tmp_path), "after.html")
    page = _page(path)
    during = _page(finished_run["report"].path)
    assert page.tables["summary"] == during.tables["summary"]
    # The model comes from the callbacks; no uncertainty data, no section.
    assert "Adversarial robustness" in page.headings and "Uncertainty" not in page.headings
    # Without a history, the callbacks' own keys.
    path = kr.report.write_report(str(tmp_path), callbacks=finished_run["callbacks"][:1])
    keys = {row[0] for row in _page(path).tables["summary"]}
    assert keys == set(finished_run["callbacks"][0].log_keys)


def test_report_images_reach_tensorboard(finished_run):
    if not tensorboard_images.tensorboard_available():
        pytest.skip("TensorFlow and TensorBoard are needed to read the event files")
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    # tf.summary.image writes tensor summaries: [width, height, PNG].
    accumulator = event_accumulator.EventAccumulator(
        str(finished_run["log_dir"] / "reliability"), size_guidance={"tensors": 0}
    )
    accumulator.Reload()
    tags = set(accumulator.Tags()["tensors"])
    assert {
        "report/calibration/val_reliability_diagram",
        "report/ood/ood_roc_curves",
        "report/robustness/adv_accuracy_vs_epsilon",
        "report/uncertainty/examples",
    } <= tags
    steps = [event.step for event in accumulator.Tensors("report/uncertainty/examples")]
    assert steps == [0, 1]
    event = accumulator.Tensors("report/robustness/adv_accuracy_vs_epsilon")[-1]
    width, height, png = tensor_util.make_ndarray(event.tensor_proto)
    assert png.startswith(PNG_SIGNATURE)
    assert (int(width), int(height)) == (500, 400)


def test_bare_report_draws_the_logged_keys(make_digits_model, shuffled_digits, tmp_path):
    x, y = shuffled_digits
    report = kr.report.ReliabilityReport(tmp_path, every=2)
    make_digits_model().fit(
        x[:256], y[:256], epochs=3, verbose=0, validation_split=0.25, callbacks=[report]
    )
    page = _page(report.path)
    assert page.headings == ["Summary", "Per-epoch curves"]
    rows = {row[0]: row for row in page.tables["summary"]}
    assert set(rows) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    # Written at epoch 2, then at the end (epoch 3).
    assert rows["loss"][2] == "3"
    with open(report.path, encoding="utf-8") as file:
        assert "Finished after epoch 3" in file.read()


def test_report_before_its_callbacks_warns(make_digits_model, shuffled_digits, tmp_path):
    x, y = shuffled_digits
    calibration = kr.callbacks.CalibrationCallback((x[1500:], y[1500:]), metrics=("ece",))
    report = kr.report.ReliabilityReport(tmp_path, callbacks=[calibration])
    with pytest.warns(UserWarning, match=r"\['val_ece'\] of CalibrationCallback .* after it"):
        make_digits_model().fit(
            x[:256], y[:256], epochs=1, verbose=0, callbacks=[report, calibration]
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_digits_model().fit(
            x[:256], y[:256], epochs=1, verbose=0, callbacks=[calibration, report]
        )
    assert not [w for w in caught if "ReliabilityReport" in str(w.message)]


def test_uncertainty_data_the_model_cannot_take_fails_before_training(
    make_digits_model, shuffled_digits, tmp_path
):
    x, y = shuffled_digits
    model = make_digits_model()
    report = kr.report.ReliabilityReport(tmp_path, uncertainty_data=np.zeros((4, 63), "float32"))
    with pytest.raises(Exception, match="63|64"):
        model.fit(x[:64], y[:64], epochs=1, verbose=0, callbacks=[report])
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 0
    assert not os.path.exists(report.path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"log_dir": ""}, "`log_dir` must be a directory path; received ''"),
        ({"log_dir": None}, "`log_dir` must be a directory path; received None"),
        ({"filename": "sub/report.html"}, "`filename` must be a file name .* 'sub/report.html'"),
        ({"every": 0}, "`every`"),
        ({"num_samples": -1}, "`num_samples`"),
        ({"num_examples": 0}, "`num_examples`"),
        (
            {"robustness_epsilons": [0.1, -0.1]},
            r"`robustness_epsilons` must be a non-empty list of finite numbers >= 0",
        ),
        ({"robustness_epsilons": []}, "`robustness_epsilons` must be a non-empty list"),
        ({"callbacks": "calibration"}, "`callbacks` must be a list"),
        ({"callbacks": [keras.callbacks.History()]}, "may hold CalibrationCallback"),
        ({"image_shape": (8, 8)}, "`image_shape` is set but `uncertainty_data` is not"),
        (
            {"uncertainty_data": np.zeros((4, 64)), "image_shape": (8, 7)},
            r"shape \(64,\) cannot be drawn as `image_shape=\(8, 7\)`",
        ),
        ({"uncertainty_data": np.zeros((0, 64))}, r"at least one input; .* shape \(0, 64\)"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, match, tmp_path):
    kwargs = {"log_dir": str(tmp_path), **kwargs}
    with pytest.raises(ValueError, match="ReliabilityReport: .*" + match):
        kr.report.ReliabilityReport(**kwargs)


def test_adversarial_callback_without_eval_data_or_attacks_is_refused(tmp_path):
    adversarial = kr.callbacks.AdversarialTrainingCallback("fgsm", epsilon=0.1)
    with pytest.raises(ValueError, match="has no `eval_data`"):
        kr.report.ReliabilityReport(tmp_path, callbacks=[adversarial])
    adversarial = kr.callbacks.AdversarialTrainingCallback(
        "fgsm", epsilon=0.1, eval_data=(np.zeros((4, 64), "float32"), np.zeros(4)), eval_attacks=()
    )
    with pytest.raises(ValueError, match="has no `eval_attacks`"):
        kr.report.ReliabilityReport(tmp_path, callbacks=[adversarial])


def test_subclasses_of_the_reliability_callbacks_are_drawn(shuffled_digits, tmp_path):
    class MyCalibration(kr.callbacks.CalibrationCallback):
        pass

    x, y = shuffled_digits
    source = MyCalibration((x[:50], y[:50]))
    report = kr.report.ReliabilityReport(tmp_path, callbacks=[source])
    assert report.sources == [source]


def test_config_round_trip(tmp_path):
    report = kr.report.ReliabilityReport(
        tmp_path,
        num_samples=4,
        num_examples=1,
        class_names=list("0123456789"),
        robustness_epsilons=[0, 0.1],
        every=3,
        filename="r.html",
        title="Run 7",
    )
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(report))
    assert isinstance(restored, kr.report.ReliabilityReport)
    assert restored.get_config() == report.get_config()
    assert restored.path == os.path.join(str(tmp_path), "r.html")
    data = np.zeros((3, 8, 8, 1), "float32")
    rebuilt = kr.report.ReliabilityReport.from_config(report.get_config(), uncertainty_data=data)
    assert rebuilt.uncertainty_data.shape == (3, 8, 8, 1)


def test_keys_missing_from_some_epochs_become_nan(make_digits_model, shuffled_digits, tmp_path):
    x, y = shuffled_digits
    report = kr.report.ReliabilityReport(tmp_path, every=10)
    make_digits_model().fit(
        x[:256],
        y[:256],
        epochs=3,
        verbose=0,
        validation_data=(x[1500:], y[1500:]),
        validation_freq=2,
        callbacks=[report],
    )
    assert len(report.history["loss"]) == 3
    val_loss = report.history["val_loss"]
    assert math.isnan(val_loss[0]) and math.isfinite(val_loss[1]) and math.isnan(val_loss[2])
    rows = {row[0]: row for row in _page(report.path).tables["summary"]}
    assert rows["val_loss"][2] == "2"  # the latest value is epoch 2's


def test_two_callbacks_of_a_kind_are_told_apart(make_digits_model, shuffled_digits, tmp_path):
    x, y = shuffled_digits
    validation = kr.callbacks.CalibrationCallback((x[1200:1500], y[1200:1500]), metrics=("ece",))
    test = kr.callbacks.CalibrationCallback((x[1500:], y[1500:]), metrics=("ece",), prefix="test_")
    report = kr.report.ReliabilityReport(tmp_path, callbacks=[validation, test])
    make_digits_model().fit(
        x[:512], y[:512], epochs=1, verbose=0, callbacks=[validation, test, report]
    )
    page = _page(report.path)
    assert page.captions[:3] == ["Calibration (val_)", "Calibration (test_)", "Training"]
    assert [tag for tag, _ in page.images][-2:] == [
        "calibration/val_reliability_diagram",
        "calibration/test_reliability_diagram",
    ]
    assert page.captions[-1].startswith("test_: Reliability diagram")
