"""Fixtures of the report tests: a finished run with every reliability callback, a browser."""

import os
import shutil
import tempfile
import warnings

import keras
import numpy as np
import pytest

pytest.importorskip("matplotlib")

import keras_reliability as kr  # noqa: E402

# Set by scripts/test.sh where it installed Chromium: the browser tests must
# then run, not skip.
REQUIRE_BROWSER = os.environ.get("KERAS_RELIABILITY_REQUIRE_BROWSER") == "1"
CHROMIUM = os.environ.get("KERAS_RELIABILITY_CHROMIUM") or shutil.which("chromium") or "chromium"
CHROMEDRIVER = (
    os.environ.get("KERAS_RELIABILITY_CHROMEDRIVER")
    or shutil.which("chromedriver")
    or "chromedriver"
)


def digits_model(mc_dropout=False, seed=0):
    """A small MLP on flattened 8x8 digits outputting logits; stochastic with `mc_dropout`."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(64, activation="relu")]
        + ([kr.layers.MCDropout(0.3)] if mc_dropout else [])
        + [keras.layers.Dense(10)]
    )
    model.compile(
        "adam",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


@pytest.fixture
def make_digits_model():
    return digits_model


@pytest.fixture(scope="session")
def finished_run(shuffled_digits, tmp_path_factory):
    """Two epochs with all three reliability callbacks and the report after them.

    The model is deterministic, so the report's numbers can be recomputed
    exactly (its uncertainty section then shows zero epistemic uncertainty).
    """
    x, y = shuffled_digits
    x_train, y_train, x_val, y_val = x[:1200], y[:1200], x[1200:], y[1200:]
    noise = np.random.default_rng(1).uniform(size=(200, 64)).astype("float32")
    log_dir = tmp_path_factory.mktemp("report")
    calibration = kr.callbacks.CalibrationCallback((x_val, y_val), fit_temperature=True)
    ood = kr.callbacks.OODMonitorCallback(x_val, ood_data=noise, scorers=("msp", "energy"))
    adversarial = kr.callbacks.AdversarialTrainingCallback(
        "fgsm", epsilon=0.1, eval_data=(x_val[:100], y_val[:100]), eval_attacks=("fgsm",)
    )
    uncertainty_data = np.concatenate([x_val[:40], noise[:10]])
    report = kr.report.ReliabilityReport(
        str(log_dir),
        callbacks=[calibration, ood, adversarial],
        uncertainty_data=uncertainty_data,
        num_samples=8,
        num_examples=2,
        image_shape=(8, 8),
    )
    model = digits_model()
    with warnings.catch_warnings():
        # predict_with_uncertainty: "the same output in all samples" of a deterministic model.
        warnings.simplefilter("ignore", UserWarning)
        history = model.fit(
            x_train,
            y_train,
            epochs=2,
            batch_size=64,
            validation_data=(x_val, y_val),
            verbose=0,
            callbacks=[calibration, ood, adversarial, report],
        )
    return {
        "model": model,
        "history": history.history,
        "report": report,
        "callbacks": [calibration, ood, adversarial],
        "log_dir": log_dir,
        "uncertainty_data": uncertainty_data,
    }


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium driven through chromedriver (selenium)."""
    reason = None
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        reason = "selenium is not installed (pip install .[test])"
    if reason is None and not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        reason = f"Chromium ({CHROMIUM}) or chromedriver ({CHROMEDRIVER}) is not installed"
    if reason is not None:
        if REQUIRE_BROWSER:
            pytest.fail(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # Without the background-networking flags Chromium keeps dialling out,
    # which a closed network refuses.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
