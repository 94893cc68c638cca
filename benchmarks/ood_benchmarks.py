"""OOD benchmarks: each measurement is ours vs a reference, in one run.

- `OODMonitorCallback.on_epoch_end` with logit-based scorers against the
  forward passes it needs (`model.predict` over the ID and the OOD inputs),
  with one and with four scorers (they share one forward pass);
- `Mahalanobis.fit` against one forward pass over the fit data plus the
  class means and shared covariance computed directly with numpy.
"""

import keras
import numpy as np
from calibration_benchmarks import _cnn
from calibration_benchmarks import _cnn_data
from timing import row
from timing import times

import keras_reliability as kr

LOGIT_SCORERS = ("msp", "energy", "maxlogit", "entropy")


def ood_callback_epoch_cost(num_examples=50_000, batch_size=256, repeats=7):
    """OODMonitorCallback epoch end vs model.predict over ID + OOD inputs."""
    model = _cnn()
    x_in, _ = _cnn_data(num_examples, seed=0)
    x_out, _ = _cnn_data(num_examples, seed=1)
    callbacks = {}
    for scorers in (LOGIT_SCORERS[:1], LOGIT_SCORERS):
        callback = kr.callbacks.OODMonitorCallback(
            x_in, ood_data=x_out, scorers=scorers, batch_size=batch_size
        )
        callback.set_model(model)
        callback.on_train_begin()
        callback.on_epoch_end(0, {})  # compiles the forward pass
        callbacks[len(scorers)] = callback
    model.predict(x_in, batch_size=batch_size, verbose=0)

    def forward_passes():
        model.predict(x_in, batch_size=batch_size, verbose=0)
        model.predict(x_out, batch_size=batch_size, verbose=0)

    reference, one, four = times(
        [
            forward_passes,
            lambda: callbacks[1].on_epoch_end(0, {}),
            lambda: callbacks[len(LOGIT_SCORERS)].on_epoch_end(0, {}),
        ],
        repeats,
    )
    shape = f"{num_examples} ID + {num_examples} OOD x 32x32x3, batch {batch_size}"
    return [
        row(
            "OODMonitorCallback epoch cost, 1 logit scorer",
            shape,
            "model.predict over ID and OOD",
            one,
            reference,
            "<= 1.15",
            lambda ratio: ratio <= 1.15,
        ),
        row(
            f"OODMonitorCallback epoch cost, {len(LOGIT_SCORERS)} logit scorers",
            shape,
            "model.predict over ID and OOD",
            four,
            reference,
            "<= 1.15",
            lambda ratio: ratio <= 1.15,
            notes=[
                f"{len(LOGIT_SCORERS)} scorers ({', '.join(LOGIT_SCORERS)}) take "
                f"{np.min(four) / np.min(one):.3f}x the time of 1: one shared forward pass"
            ],
        ),
    ]


def mahalanobis_fit_cost(num_examples=50_000, batch_size=256, repeats=5):
    """Mahalanobis.fit vs one forward pass plus a direct numpy covariance."""
    model = _cnn()
    x, y = _cnn_data(num_examples)
    features_model = keras.Model(model.inputs, model.layers[-1].input)
    scorer = kr.ood.Mahalanobis()
    scorer.fit(model, x, y, batch_size=batch_size)  # compiles the forward pass
    features_model.predict(x, batch_size=batch_size, verbose=0)

    def reference():
        features = features_model.predict(x, batch_size=batch_size, verbose=0).astype(np.float64)
        means = np.stack([features[y == c].mean(axis=0) for c in range(10)])
        centred = features - means[y]
        np.linalg.pinv(centred.T @ centred / len(features), hermitian=True)

    ref, ours = times([reference, lambda: scorer.fit(model, x, y, batch_size=batch_size)], repeats)
    return row(
        "Mahalanobis.fit",
        f"{num_examples}x32x32x3, batch {batch_size}, 64 features",
        "one forward pass + numpy means/covariance",
        ours,
        ref,
        "<= 1.15",
        lambda ratio: ratio <= 1.15,
    )


BENCHMARKS = [ood_callback_epoch_cost, mahalanobis_fit_cost]
