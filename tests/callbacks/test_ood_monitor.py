"""OODMonitorCallback inside real `model.fit` runs on scikit-learn's digits.

The model learns digits 0-4 (in-distribution); digits 5-9 are the OOD set, a
semantic shift the classifier has never seen.
"""

import csv
import importlib.util
import math
import re
import warnings

import keras
import numpy as np
import pytest

import keras_reliability as kr
from keras_reliability.callbacks import OODMonitorCallback
from keras_reliability.metrics import evaluate_ood
from keras_reliability.ood import KNN
from keras_reliability.ood import ODIN
from keras_reliability.ood import Energy
from keras_reliability.ood import MaxLogit
from keras_reliability.ood import MaxSoftmax
from keras_reliability.ood import Mahalanobis
from keras_reliability.ood import MutualInformation
from keras_reliability.ood import ReAct
from keras_reliability.ood import ViM
from keras_reliability.ood.synthetic import synthetic_ood_sets

METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95")
DEFAULT_KEYS = [f"ood_{s}_{m}" for s in ("msp", "energy") for m in METRICS]
NUM_CLASSES = 5
IMAGE_SHAPE = (8, 8, 1)


@pytest.fixture(scope="module")
def digits(shuffled_digits):
    """`(x_train, y_train), x_in, x_ood` as flat 64-vectors in [0, 1]."""
    x, y = shuffled_digits
    known = y < NUM_CLASSES
    x_known, y_known = x[known], y[known]
    x_ood = x[~known][:200]
    return (x_known[:400], y_known[:400]), x_known[400:600], x_ood


def as_images(x):
    return x.reshape((-1,) + IMAGE_SHAPE)


def make_model(
    image=False, output_activation=None, learning_rate=1e-2, seed=0, dropout=None
):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input(shape=IMAGE_SHAPE if image else (64,))]
    if image:
        layers.append(keras.layers.Flatten())
    layers.append(keras.layers.Dense(32, activation="relu", name="hidden"))
    if dropout is not None:
        layers.append(kr.layers.MCDropout(dropout, seed=seed))
    layers.append(
        keras.layers.Dense(NUM_CLASSES, activation=output_activation, name="head")
    )
    model = keras.Sequential(layers)
    if learning_rate == 0:
        optimizer = keras.optimizers.SGD(learning_rate=0.0)
    else:
        optimizer = keras.optimizers.Adam(learning_rate)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=output_activation is None
        ),
    )
    return model


def direct_metrics(scorer, model, x_in, x_out):
    """`evaluate_ood` of scores computed with the scorer itself."""
    return evaluate_ood(
        np.asarray(scorer.score(model, x_in)), np.asarray(scorer.score(model, x_out))
    )


def last(history, key):
    return history.history[key][-1]


class EpochRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs_begun = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs_begun += 1


# ----------------------------------------------------------------------------
# Keys in History and CSVLogger, equal to direct scoring
# ----------------------------------------------------------------------------


def test_keys_reach_history_and_csv_and_match_direct_scoring(digits, tmp_path):
    (x, y), x_in, x_ood = digits
    model = make_model()
    csv_path = tmp_path / "log.csv"
    callback = OODMonitorCallback(x_in, ood_data=x_ood)
    history = model.fit(
        x, y, epochs=3, batch_size=100, verbose=0,
        callbacks=[callback, keras.callbacks.CSVLogger(str(csv_path))],
    )
    assert callback.log_keys == DEFAULT_KEYS
    # A single OOD array: pooled keys only, no per-set keys.
    assert sorted(k for k in history.history if k.startswith("ood_")) == sorted(DEFAULT_KEYS)
    for key in DEFAULT_KEYS:
        values = history.history[key]
        assert len(values) == 3, key
        assert all(math.isfinite(v) for v in values), key
    with open(csv_path) as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 3
    for key in DEFAULT_KEYS:
        np.testing.assert_allclose(
            [float(row[key]) for row in rows], history.history[key], rtol=1e-6
        )
    for name, scorer in (("msp", MaxSoftmax()), ("energy", Energy())):
        expected = direct_metrics(scorer, model, x_in, x_ood)
        for metric in METRICS:
            assert last(history, f"ood_{name}_{metric}") == pytest.approx(
                expected[metric], abs=1e-6
            ), (name, metric)
    # Unseen digit classes are detectably OOD once the model has trained.
    assert last(history, "ood_msp_auroc") > 0.8
    assert last(history, "ood_energy_auroc") > 0.65
    # The callback's own record matches what Keras logged.
    for key in DEFAULT_KEYS:
        np.testing.assert_array_equal(callback.history[key], history.history[key])


def test_early_stopping_monitors_the_energy_auroc(digits):
    (x, y), x_in, x_ood = digits
    # Learning rate 0: the AUROC never improves after the first epoch, so
    # EarlyStopping(patience=1) stops after 2 epochs, if it reads the key.
    model = make_model(learning_rate=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(
            x, y, epochs=10, batch_size=100, verbose=0,
            callbacks=[
                OODMonitorCallback(x_in, ood_data=x_ood, scorers=("energy",)),
                keras.callbacks.EarlyStopping(
                    monitor="ood_energy_auroc", mode="max", patience=1
                ),
            ],
        )
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "not available" in m], messages
    values = history.history["ood_energy_auroc"]
    assert len(values) == 2
    assert math.isfinite(values[0]) and values[0] == values[1]


def test_early_stopping_on_a_key_nobody_writes_warns_and_runs_on(digits):
    # The control of the test above: without the key, EarlyStopping warns
    # and never stops.
    (x, y), x_in, x_ood = digits
    model = make_model(learning_rate=0)
    with pytest.warns(UserWarning, match="not available"):
        history = model.fit(
            x, y, epochs=3, batch_size=100, verbose=0,
            callbacks=[
                OODMonitorCallback(x_in, ood_data=x_ood, scorers=("energy",)),
                keras.callbacks.EarlyStopping(
                    monitor="ood_msp_auroc", mode="max", patience=1
                ),
            ],
        )
    assert len(history.history["ood_energy_auroc"]) == 3


def test_every_writes_nan_on_skipped_epochs_and_all_keys_from_epoch_0(digits, tmp_path):
    (x, y), x_in, x_ood = digits
    model = make_model()
    callback = OODMonitorCallback(x_in, ood_data=x_ood, every=2)
    csv_path = tmp_path / "log.csv"
    history = model.fit(
        x, y, epochs=4, batch_size=100, verbose=0,
        callbacks=[callback, keras.callbacks.CSVLogger(str(csv_path))],
    )
    for key in DEFAULT_KEYS:
        values = history.history[key]
        assert [math.isnan(v) for v in values] == [True, False, True, False], key
        np.testing.assert_array_equal(callback.history[key], values)
    with open(csv_path) as file:
        reader = csv.DictReader(file)
        assert set(DEFAULT_KEYS) <= set(reader.fieldnames)
        rows = list(reader)
    assert [math.isnan(float(row["ood_msp_auroc"])) for row in rows] == [
        True, False, True, False
    ]
    expected = direct_metrics(Energy(), model, x_in, x_ood)
    assert last(history, "ood_energy_auroc") == pytest.approx(expected["auroc"], abs=1e-6)


# ----------------------------------------------------------------------------
# OOD sets: synthetic, named, single
# ----------------------------------------------------------------------------


def test_without_ood_data_uses_synthetic_sets_for_images(digits):
    (x, y), x_in, _ = digits
    x_in = as_images(x_in[:100])
    model = make_model(image=True)
    callback = OODMonitorCallback(x_in, seed=3)
    with pytest.warns(UserWarning, match="synthetic OOD sets"):
        history = model.fit(
            as_images(x), y, epochs=1, batch_size=100, verbose=0, callbacks=[callback]
        )
    kinds = ("gaussian_noise", "uniform_noise", "blur", "contrast", "noise")
    assert list(callback.ood_sets) == list(kinds)
    sets = synthetic_ood_sets(x_in, severity=3, seed=3)
    scorer = MaxSoftmax()
    scores_in = scorer.score(model, x_in)
    for kind in kinds:
        for name in ("msp", "energy"):
            key = f"ood_{kind}_{name}_auroc"
            assert key in history.history, key
            assert 0.0 <= last(history, key) <= 1.0, key
        expected = evaluate_ood(scores_in, scorer.score(model, sets[kind]))["auroc"]
        assert last(history, f"ood_{kind}_msp_auroc") == pytest.approx(expected, abs=1e-6)
    pooled = evaluate_ood(
        scores_in, np.concatenate([scorer.score(model, sets[k]) for k in kinds])
    )
    assert last(history, "ood_msp_auroc") == pytest.approx(pooled["auroc"], abs=1e-6)


def test_without_ood_data_skips_blur_for_flat_vectors(digits):
    (x, y), x_in, _ = digits
    model = make_model()
    with pytest.warns(UserWarning, match="synthetic OOD sets"):
        history = model.fit(
            x, y, epochs=1, batch_size=100, verbose=0,
            callbacks=[OODMonitorCallback(x_in[:100], scorers=("msp",), seed=0)],
        )
    for kind in ("gaussian_noise", "uniform_noise", "contrast", "noise"):
        assert f"ood_{kind}_msp_auroc" in history.history, kind
    assert not [key for key in history.history if "blur" in key]


def test_named_ood_sets_get_per_set_keys(digits):
    (x, y), x_in, x_ood = digits
    noise = np.random.default_rng(1).uniform(size=(200, 64)).astype("float32")
    model = make_model()
    callback = OODMonitorCallback(x_in, ood_data={"letters": x_ood, "noise": noise})
    history = model.fit(x, y, epochs=2, batch_size=100, verbose=0, callbacks=[callback])
    for key in callback.log_keys:
        assert len(history.history[key]) == 2, key
    scorer = Energy()
    scores_in = scorer.score(model, x_in)
    scores = {"letters": scorer.score(model, x_ood), "noise": scorer.score(model, noise)}
    for name, scores_out in scores.items():
        assert last(history, f"ood_{name}_energy_auroc") == pytest.approx(
            evaluate_ood(scores_in, scores_out)["auroc"], abs=1e-6
        )
        assert f"ood_{name}_msp_auroc" in history.history
    # The pooled keys score both sets together.
    pooled = evaluate_ood(scores_in, np.concatenate([scores["letters"], scores["noise"]]))
    for metric in METRICS:
        assert last(history, f"ood_energy_{metric}") == pytest.approx(
            pooled[metric], abs=1e-6
        ), metric


# ----------------------------------------------------------------------------
# Scorers that fit, or run their own passes
# ----------------------------------------------------------------------------


class FittedStatistics(keras.callbacks.Callback):
    """Copies what the feature scorers learned, at the end of every epoch."""

    def __init__(self, monitor):
        super().__init__()
        self.monitor = monitor
        self.records = []

    def on_epoch_end(self, epoch, logs=None):
        scorers = self.monitor.scorers

        def copy(scorer, attribute):
            value = getattr(scorer, attribute, None)
            return None if value is None else np.array(value, copy=True)

        self.records.append(
            {
                "mahalanobis": copy(scorers["mahalanobis"], "means"),
                "knn": copy(scorers["knn"], "bank"),
                "vim": copy(scorers["vim"], "residual_basis"),
                "react": copy(scorers["react"], "threshold"),
            }
        )


def test_feature_scorers_are_refitted_at_each_scored_epoch(digits):
    (x, y), x_in, x_ood = digits
    model = make_model()
    names = ("mahalanobis", "knn", "vim", "react")
    callback = OODMonitorCallback(
        x_in, ood_data=x_ood, scorers=names, fit_data=(x, y), every=2
    )
    recorder = FittedStatistics(callback)
    history = model.fit(
        x, y, epochs=4, batch_size=100, verbose=0, callbacks=[callback, recorder]
    )
    first, second, third, fourth = recorder.records
    for name in names:
        # Fitted at train begin (so fitting errors come before the first
        # epoch), unchanged on skipped epochs, refitted (so changed, as the
        # model trained) on scored ones.
        assert first[name] is not None, name
        assert not np.allclose(second[name], first[name]), name
        np.testing.assert_array_equal(third[name], second[name], err_msg=name)
        assert not np.allclose(fourth[name], second[name]), name
        values = history.history[f"ood_{name}_auroc"]
        assert [math.isnan(v) for v in values] == [True, False, True, False], name
    fresh = {
        "mahalanobis": Mahalanobis(),
        "knn": KNN(),
        "vim": ViM(),
        "react": ReAct(),
    }
    for name, scorer in fresh.items():
        scorer.fit(model, x, y)
        expected = direct_metrics(scorer, model, x_in, x_ood)
        for metric in METRICS:
            assert last(history, f"ood_{name}_{metric}") == pytest.approx(
                expected[metric], abs=1e-6
            ), (name, metric)
    # Distances in feature space separate unseen digits well.
    assert last(history, "ood_mahalanobis_auroc") > 0.85


def test_knn_fits_on_inputs_alone(digits):
    (x, y), x_in, x_ood = digits
    model = make_model()
    history = model.fit(
        x, y, epochs=1, batch_size=100, verbose=0,
        callbacks=[
            OODMonitorCallback(x_in, ood_data=x_ood, scorers=[KNN(k=5)], fit_data=x)
        ],
    )
    expected = direct_metrics(KNN(k=5).fit(model, x), model, x_in, x_ood)
    assert last(history, "ood_knn_auroc") == pytest.approx(expected["auroc"], abs=1e-6)


@pytest.mark.parametrize("name", ["mahalanobis", "knn", "vim", "react"])
def test_feature_scorers_need_fit_data(name):
    with pytest.raises(ValueError, match="`fit_data=") as error:
        OODMonitorCallback(np.zeros((4, 64), "float32"), scorers=(name,))
    assert name in str(error.value)


def test_mahalanobis_needs_labels_in_fit_data():
    x = np.zeros((4, 64), "float32")
    with pytest.raises(ValueError, match=r"\['mahalanobis'\] need class labels"):
        OODMonitorCallback(x, scorers=("mahalanobis",), fit_data=x)
    with pytest.raises(ValueError, match="need class labels"):
        OODMonitorCallback(x, scorers=("mahalanobis",), fit_data=(x,))


def test_odin_runs_its_own_passes_and_matches_direct_scoring(digits):
    (x, y), x_in, x_ood = digits
    x_in, x_ood = x_in[:100], x_ood[:100]
    model = make_model()
    odin = ODIN(temperature=100.0, epsilon=0.002)
    history = model.fit(
        x, y, epochs=2, batch_size=100, verbose=0,
        callbacks=[OODMonitorCallback(x_in, ood_data=x_ood, scorers=("msp", odin))],
    )
    expected = direct_metrics(ODIN(temperature=100.0, epsilon=0.002), model, x_in, x_ood)
    for metric in METRICS:
        assert last(history, f"ood_odin_{metric}") == pytest.approx(
            expected[metric], abs=1e-6
        ), metric
    # The perturbation changes the scores: ODIN is not MSP under another name.
    assert last(history, "ood_odin_auroc") != last(history, "ood_msp_auroc")


def test_mutual_information_on_a_monte_carlo_model(digits):
    (x, y), x_in, x_ood = digits
    x_in, x_ood = x_in[:100], x_ood[:100]
    model = make_model(dropout=0.5)
    scorer = MutualInformation(num_samples=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        history = model.fit(
            x, y, epochs=2, batch_size=100, verbose=0,
            callbacks=[OODMonitorCallback(x_in, ood_data=x_ood, scorers=[scorer])],
        )
    values = history.history["ood_mutual_information_auroc"]
    assert all(math.isfinite(v) for v in values)
    # Fresh Monte-Carlo samples: equal up to sampling noise.
    expected = direct_metrics(MutualInformation(num_samples=64), model, x_in, x_ood)
    assert values[-1] == pytest.approx(expected["auroc"], abs=0.06)


def test_constant_scores_log_nan_with_a_warning(digits, tmp_path):
    # A deterministic model has zero mutual information for every input.
    (x, y), x_in, x_ood = digits
    x_in, x_ood = x_in[:100], x_ood[:100]
    model = make_model()
    plotting = importlib.util.find_spec("matplotlib") is not None
    plot_arguments = {"plot_every": 1, "log_dir": str(tmp_path)} if plotting else {}
    with pytest.warns(UserWarning, match="'mutual_information' gave the same score"):
        history = model.fit(
            x, y, epochs=2, batch_size=100, verbose=0,
            callbacks=[
                OODMonitorCallback(
                    x_in, ood_data=x_ood,
                    scorers=("msp", MutualInformation(num_samples=4)),
                    **plot_arguments,
                )
            ],
        )
    for metric in METRICS:
        values = history.history[f"ood_mutual_information_{metric}"]
        assert len(values) == 2 and all(math.isnan(v) for v in values), metric
    assert all(math.isfinite(v) for v in history.history["ood_msp_auroc"])
    if plotting:
        # No histogram of a constant score; the ROC curves are still drawn.
        assert not list(tmp_path.glob("ood_mutual_information_histogram_*.png"))
        assert (tmp_path / "ood_msp_histogram_epoch_0002.png").exists()
        assert (tmp_path / "ood_roc_epoch_0002.png").exists()


# ----------------------------------------------------------------------------
# max_samples, plots
# ----------------------------------------------------------------------------


def test_max_samples_caps_every_data_set(digits):
    (x, y), x_in, x_ood = digits
    model = make_model()
    callback = OODMonitorCallback(
        x_in, ood_data=x_ood, scorers=("energy", "mahalanobis"),
        fit_data=(x, y), max_samples=60,
    )
    assert len(callback.x_in) == 60
    assert len(callback.ood_sets["ood"]) == 60
    assert len(callback.x_fit) == len(callback.y_fit) == 60
    history = model.fit(x, y, epochs=1, batch_size=100, verbose=0, callbacks=[callback])
    expected = direct_metrics(Energy(), model, x_in[:60], x_ood[:60])
    for metric in METRICS:
        assert last(history, f"ood_energy_{metric}") == pytest.approx(
            expected[metric], abs=1e-6
        ), metric
    full = direct_metrics(Energy(), model, x_in, x_ood)
    assert last(history, "ood_energy_aupr_in") != pytest.approx(full["aupr_in"], abs=1e-9)
    mahalanobis = Mahalanobis().fit(model, x[:60], y[:60])
    expected = direct_metrics(mahalanobis, model, x_in[:60], x_ood[:60])
    assert last(history, "ood_mahalanobis_auroc") == pytest.approx(
        expected["auroc"], abs=1e-6
    )


def test_plots_are_written_every_plot_every_epochs(digits, tmp_path):
    pytest.importorskip("matplotlib")
    (x, y), x_in, x_ood = digits
    x_in, x_ood = x_in[:100], x_ood[:100]
    every_epoch, every_other = tmp_path / "every_epoch", tmp_path / "every_other"
    model = make_model()
    model.fit(
        x, y, epochs=2, batch_size=100, verbose=0,
        callbacks=[
            OODMonitorCallback(
                x_in, ood_data=x_ood, plot_every=1, log_dir=str(every_epoch)
            ),
            OODMonitorCallback(
                x_in, ood_data=x_ood, scorers=("energy",), plot_every=2,
                log_dir=str(every_other), prefix="other_",
            ),
        ],
    )
    for epoch in (1, 2):
        for name in (
            f"ood_msp_histogram_epoch_{epoch:04d}.png",
            f"ood_energy_histogram_epoch_{epoch:04d}.png",
            f"ood_roc_epoch_{epoch:04d}.png",
        ):
            png = (every_epoch / name).read_bytes()
            assert png.startswith(b"\x89PNG\r\n\x1a\n"), name
    assert len(list(every_epoch.glob("*.png"))) == 6
    from keras_reliability.callbacks import tensorboard_images

    events = list((every_epoch / "reliability").glob("events.out.tfevents.*"))
    assert bool(events) == tensorboard_images.tensorboard_available()
    assert sorted(p.name for p in every_other.glob("*.png")) == [
        "ood_energy_histogram_epoch_0002.png",
        "ood_roc_epoch_0002.png",
    ]


def test_plot_every_without_log_dir_raises():
    with pytest.raises(ValueError, match="`log_dir` is required"):
        OODMonitorCallback(np.zeros((4, 64), "float32"), plot_every=1)


# ----------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"scorers": ("nope",)},
            r"Unknown ood_scorer 'nope' for argument `scorers\[0\]`\. Available: .*'energy'.*'msp'",
        ),
        ({"scorers": ("msp", "msp")}, "holds 'msp' twice"),
        ({"scorers": ("msp", MaxSoftmax())}, "holds 'msp' twice"),
        ({"scorers": "msp"}, "`scorers` must be a non-empty list or tuple.*'msp'"),
        ({"scorers": ()}, "`scorers` must be a non-empty list or tuple"),
        ({"every": 0}, "`every` must be a positive integer; received 0"),
        ({"plot_every": 0, "log_dir": "x"}, "`plot_every` must be a positive integer"),
        ({"max_samples": 0}, "`max_samples` must be a positive integer"),
        ({"ood_data": {}}, "`ood_data` is an empty dict"),
    ],
)
def test_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OODMonitorCallback(np.zeros((4, 64), "float32"), **kwargs)


def test_ood_set_with_another_example_shape_is_rejected():
    x_in = np.zeros((4, 64), "float32")
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`ood_data['letters']` has examples of shape (8, 8, 1), but `in_data` "
            "has examples of shape (64,)"
        ),
    ):
        OODMonitorCallback(
            x_in, ood_data={"noise": x_in, "letters": np.zeros((4, 8, 8, 1), "float32")}
        )
    with pytest.raises(ValueError, match=r"`ood_data\['ood'\]` has examples of shape \(63,\)"):
        OODMonitorCallback(x_in, ood_data=np.zeros((4, 63), "float32"))


@pytest.mark.parametrize(
    "in_data, ood_data, message",
    [
        (
            np.zeros((0, 64), "float32"), None,
            r"`in_data` must hold at least one example.*\(0, 64\)",
        ),
        ((np.zeros((0, 64), "float32"), np.zeros(0)), None, "`in_data` must hold at least one"),
        ([], None, "`in_data` yields no batch"),
        (
            np.zeros((4, 64), "float32"), np.zeros((0, 64), "float32"),
            "`ood_data` must hold at least one",
        ),
        (
            np.zeros((4, 64), "float32"),
            {"letters": np.zeros((0, 64), "float32")},
            r"`ood_data\['letters'\]` must hold at least one",
        ),
        (np.zeros(4, "float32"), None, "`in_data` must hold at least one example of shape"),
        (None, None, "`in_data` must be an array"),
    ],
)
def test_rejects_empty_or_malformed_data(in_data, ood_data, message):
    with pytest.raises(ValueError, match=message):
        OODMonitorCallback(in_data, ood_data=ood_data)


def fit_expecting_error(model, x, y, callback, message):
    recorder = EpochRecorder()
    with pytest.raises(ValueError, match=message):
        model.fit(x, y, epochs=3, batch_size=100, verbose=0, callbacks=[callback, recorder])
    assert recorder.epochs_begun == 0


def test_in_data_not_matching_the_model_input_fails_before_the_first_epoch(digits):
    (x, y), x_in, x_ood = digits
    fit_expecting_error(
        make_model(image=True), as_images(x), y,
        OODMonitorCallback(x_in, ood_data=x_ood),
        r"`in_data` has examples of shape \(64,\), but model .* expects inputs "
        r"of shape \(8, 8, 1\)",
    )
    fit_expecting_error(
        make_model(), x, y,
        OODMonitorCallback(x_in[:, :60], ood_data=x_ood[:, :60]),
        r"`in_data` has examples of shape \(60,\), but model .* expects inputs "
        r"of shape \(64,\)",
    )


def test_missing_feature_layer_fails_before_the_first_epoch(digits):
    (x, y), x_in, x_ood = digits
    fit_expecting_error(
        make_model(), x, y,
        OODMonitorCallback(
            x_in, ood_data=x_ood, scorers=[Mahalanobis(feature_layer="nope")],
            fit_data=(x, y),
        ),
        "`feature_layer` 'nope' is not a layer of model.*'hidden'",
    )


def test_model_without_class_scores_fails_before_the_first_epoch(digits):
    (x, y), x_in, x_ood = digits
    keras.utils.set_random_seed(0)
    single = keras.Sequential([keras.Input((64,)), keras.layers.Dense(1)])
    single.compile(optimizer="adam", loss="mse")
    fit_expecting_error(
        single, x, y.astype("float32"),
        OODMonitorCallback(x_in, ood_data=x_ood),
        r"regression values, not class scores \(it is compiled with the regression loss 'mse'\)",
    )
    sequence = keras.Sequential(
        [keras.Input((64,)), keras.layers.Reshape((8, 8)), keras.layers.Dense(NUM_CLASSES)]
    )
    sequence.compile(optimizer="adam", loss="mse")
    fit_expecting_error(
        sequence, x, np.zeros((len(x), 8, NUM_CLASSES), "float32"),
        OODMonitorCallback(x_in, ood_data=x_ood),
        r"not class scores \(its output has shape \(None, 8, 5\)\)",
    )


def _with_nan(x):
    x = x.copy()
    x[len(x) // 2, 3] = np.nan
    return x


@pytest.mark.parametrize("argument", ["in_data", "ood_data", "fit_data"])
def test_non_finite_data_fails_before_the_first_epoch(digits, argument):
    (x, y), x_in, x_ood = digits
    data = {"in_data": x_in, "ood_data": x_ood, "fit_data": (x, y)}
    if argument == "fit_data":
        data["fit_data"] = (_with_nan(x), y)
    else:
        data[argument] = _with_nan(data[argument])
    recorder = EpochRecorder()
    with pytest.raises(ValueError, match=f"`{argument}`.*(NaN|finite)"):
        # At construction, or at the latest in on_train_begin.
        callback = OODMonitorCallback(scorers=("energy", "knn"), **data)
        make_model().fit(
            x, y, epochs=2, batch_size=100, verbose=0, callbacks=[callback, recorder]
        )
    assert recorder.epochs_begun == 0


@pytest.mark.parametrize(
    "scorer, fit_data, message",
    [
        ("mahalanobis", "wrong_shape", r"`fit_data` has examples of shape \(60,\)"),
        ("knn", "too_few", r"`k`=50 exceeds the 20 training examples"),
        ("mahalanobis", "one_class", r"hold 1 class"),
    ],
)
def test_fit_data_problems_fail_before_the_first_epoch(digits, scorer, fit_data, message):
    (x, y), x_in, x_ood = digits
    fit_data = {
        "wrong_shape": (x[:, :60], y),
        "too_few": (x[:20], y[:20]),
        "one_class": (x[y == 0], y[y == 0]),
    }[fit_data]
    if fit_data[0].shape[1:] != x_in.shape[1:]:
        # Caught at construction, before any model is involved.
        with pytest.raises(ValueError, match=message):
            OODMonitorCallback(x_in, ood_data=x_ood, scorers=(scorer,), fit_data=fit_data)
        return
    fit_expecting_error(
        make_model(), x, y,
        OODMonitorCallback(x_in, ood_data=x_ood, scorers=(scorer,), fit_data=fit_data),
        message,
    )


# ----------------------------------------------------------------------------
# Serialization
# ----------------------------------------------------------------------------


def test_config_round_trip():
    x_in = np.zeros((4, 64), "float32")
    x_ood = np.ones((4, 64), "float32")
    callback = OODMonitorCallback(
        x_in, ood_data={"a": x_ood, "b": x_ood},
        scorers=("msp", Energy(temperature=2.0, name="energy_t2"), KNN(k=2)),
        fit_data=x_in, every=2, max_samples=3, batch_size=16,
        synthetic_severity=2, seed=5, prefix="shift_",
    )
    config = callback.get_config()
    assert config["every"] == 2 and config["prefix"] == "shift_"
    rebuilt = OODMonitorCallback.from_config(
        config, in_data=x_in, ood_data={"a": x_ood, "b": x_ood}, fit_data=x_in
    )
    assert rebuilt.get_config() == config
    assert rebuilt.log_keys == callback.log_keys
    assert "shift_energy_t2_auroc" in rebuilt.log_keys
    assert "shift_a_knn_auroc" in rebuilt.log_keys
    energy = rebuilt.scorers["energy_t2"]
    assert isinstance(energy, Energy) and energy.temperature == 2.0
    assert rebuilt.scorers["knn"].k == 2
    with pytest.raises(ValueError, match="needs `in_data`"):
        OODMonitorCallback.from_config(config)
    assert (
        keras.saving.get_registered_object("keras_reliability>OODMonitorCallback")
        is OODMonitorCallback
    )
    serialized = keras.saving.serialize_keras_object(callback)
    assert serialized["registered_name"] == "keras_reliability>OODMonitorCallback"


# ----------------------------------------------------------------------------
# Data forms
# ----------------------------------------------------------------------------


def test_accepts_a_tf_data_dataset(digits):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.data as in_data is exercised on the TensorFlow backend")
    import tensorflow as tf

    (x, y), x_in, x_ood = digits
    in_labels = np.zeros(len(x_in), "int32")
    dataset = tf.data.Dataset.from_tensor_slices((x_in, in_labels)).batch(64)
    model = make_model()
    callback = OODMonitorCallback(dataset, ood_data=x_ood, max_samples=120)
    assert callback.x_in.shape == (120, 64)
    history = model.fit(x, y, epochs=1, batch_size=100, verbose=0, callbacks=[callback])
    expected = direct_metrics(Energy(), model, x_in[:120], x_ood[:120])
    assert last(history, "ood_energy_auroc") == pytest.approx(expected["auroc"], abs=1e-6)


def test_accepts_lists_of_batches(digits):
    (x, y), x_in, x_ood = digits
    in_batches = [
        (x_in[i : i + 50], np.zeros(len(x_in[i : i + 50]), "int32"))
        for i in range(0, len(x_in), 50)
    ]
    ood_batches = [x_ood[i : i + 64] for i in range(0, len(x_ood), 64)]
    fit_batches = [(x[i : i + 100], y[i : i + 100]) for i in range(0, len(x), 100)]
    model = make_model()
    callback = OODMonitorCallback(
        in_batches, ood_data=ood_batches, scorers=("energy", "mahalanobis"),
        fit_data=fit_batches,
    )
    np.testing.assert_array_equal(callback.x_in, x_in)
    np.testing.assert_array_equal(callback.ood_sets["ood"], x_ood)
    np.testing.assert_array_equal(callback.y_fit, y)
    array_callback = OODMonitorCallback(
        x_in, ood_data=x_ood, scorers=("energy", "mahalanobis"), fit_data=(x, y),
        prefix="arrays_",
    )
    history = model.fit(
        x, y, epochs=1, batch_size=100, verbose=0, callbacks=[callback, array_callback]
    )
    for name in ("energy", "mahalanobis"):
        for metric in METRICS:
            assert last(history, f"ood_{name}_{metric}") == pytest.approx(
                last(history, f"arrays_{name}_{metric}"), abs=1e-6
            ), (name, metric)
    expected = direct_metrics(Energy(), model, x_in, x_ood)
    assert last(history, "ood_energy_auroc") == pytest.approx(expected["auroc"], abs=1e-6)


def test_softmax_output_gives_the_same_scores_as_linear_output(digits):
    (x, y), x_in, x_ood = digits
    scorers = ("msp", "energy", "maxlogit")
    softmax_model = make_model(output_activation="softmax")
    softmax_history = softmax_model.fit(
        x, y, epochs=2, batch_size=100, verbose=0,
        callbacks=[OODMonitorCallback(x_in, ood_data=x_ood, scorers=scorers)],
    )
    # The same weights, with a linear last layer; learning rate 0 keeps them.
    linear_model = make_model(learning_rate=0)
    linear_model.set_weights(softmax_model.get_weights())
    linear_history = linear_model.fit(
        x, y, epochs=1, batch_size=100, verbose=0,
        callbacks=[OODMonitorCallback(x_in, ood_data=x_ood, scorers=scorers)],
    )
    for name in scorers:
        for metric in METRICS:
            key = f"ood_{name}_{metric}"
            assert last(softmax_history, key) == pytest.approx(
                last(linear_history, key), abs=1e-6
            ), key
    expected = direct_metrics(MaxLogit(), linear_model, x_in, x_ood)
    assert last(softmax_history, "ood_maxlogit_auroc") == pytest.approx(
        expected["auroc"], abs=1e-6
    )
    # Energy on the probabilities would be constant (logsumexp of a
    # distribution is log 1): a real AUROC shows the logits were recovered.
    assert last(softmax_history, "ood_energy_auroc") > 0.6
