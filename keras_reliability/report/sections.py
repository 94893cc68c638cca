"""The sections of the reliability report, built from a run's results."""

import math

import numpy as np

from keras_reliability import plotting
from keras_reliability.callbacks.ood_monitor import pooled_scores
from keras_reliability.plotting.uncertainty_examples import looks_like_images
from keras_reliability.report.html import Image
from keras_reliability.report.html import Section
from keras_reliability.report.html import Table


def _png(tag, caption, figure):
    return Image(tag, caption, plotting.figure_to_png(figure))


def _latest(values):
    """`(value, epoch)` of the last finite value (epoch 1-based), or `(None, None)`."""
    for index in range(len(values) - 1, -1, -1):
        if math.isfinite(values[index]):
            return values[index], index + 1
    return None, None


def _label(callback, callbacks):
    """Caption prefix naming `callback` when several of its kind are drawn."""
    return f"{callback.prefix}: " if len(callbacks) > 1 else ""


def summary(history, groups):
    """One row per logged key: latest value, its epoch, min and max."""
    rows = []
    for _, keys in groups:
        for key in keys:
            values = history[key]
            finite = [value for value in values if math.isfinite(value)]
            latest, epoch = _latest(values)
            rows.append([key, latest, epoch, min(finite, default=None), max(finite, default=None)])
    table = Table(
        "Every logged key; '-' where no value was computed yet.",
        ["key", "latest", "epoch", "min", "max"],
        rows,
        id="summary",
    )
    return Section("Summary", tables=[table])


def curves(history, groups):
    """Per-epoch curves, one grid of panels per group of keys."""
    section = Section("Per-epoch curves")
    for index, (name, keys) in enumerate(groups):
        if keys:
            figure = plotting.metric_history(history, keys, title=name)
            section.images.append(_png(f"curves/{index}", name, figure))
    return section


def calibration(callbacks):
    section = Section("Calibration")
    for callback in callbacks:
        bins = callback.latest_reliability_bins()
        label = _label(callback, callbacks)
        if bins is None:
            section.notes.append(f"{label}no epoch scored yet.")
            continue
        epoch = callback.latest_epoch + 1
        figure = plotting.reliability_diagram(
            bins=bins, title=f"{label}reliability diagram, epoch {epoch}"
        )
        section.images.append(
            _png(
                f"calibration/{callback.prefix}reliability_diagram",
                f"{label}Reliability diagram of the held-out data, epoch {epoch}",
                figure,
            )
        )
    return section


def ood(callbacks):
    section = Section("Out-of-distribution detection")
    for callback in callbacks:
        label = _label(callback, callbacks)
        if not callback.latest_scores:
            section.notes.append(f"{label}no epoch scored yet.")
            continue
        epoch = callback.latest_epoch + 1
        pooled = pooled_scores(callback.latest_scores)
        figure = plotting.ood_roc_curves(pooled, title=f"{label}ROC curves, epoch {epoch}")
        section.images.append(
            _png(
                f"ood/{callback.prefix}roc_curves",
                f"{label}ROC of each scorer, in-distribution against all OOD sets, "
                f"epoch {epoch}",
                figure,
            )
        )
        for name, (scores_in, scores_out) in pooled.items():
            if np.ptp(np.concatenate([scores_in, scores_out])) == 0:
                section.notes.append(f"{label}{name} gave every input the same score.")
                continue
            figure = plotting.ood_score_histogram(
                scores_in, scores_out, name=name, title=f"{label}{name} scores, epoch {epoch}"
            )
            section.images.append(
                _png(
                    f"ood/{callback.prefix}{name}_histogram",
                    f"{label}{name} scores (higher = more OOD), epoch {epoch}",
                    figure,
                )
            )
    return section


def robustness(curves, epoch):
    """`curves`: `[(callback, attack name, {epsilon: accuracy})]`."""
    section = Section("Adversarial robustness")
    callbacks = [callback for callback, _, _ in curves]
    for callback, attack, curve in curves:
        label = _label(callback, callbacks)
        figure = plotting.robustness_curve(
            {attack: curve}, title=f"{label}accuracy under {attack}, epoch {epoch}"
        )
        section.images.append(
            _png(
                f"robustness/{callback.prefix}accuracy_vs_epsilon",
                f"{label}Accuracy against the {attack} budget epsilon, epoch {epoch}",
                figure,
            )
        )
        section.tables.append(
            Table(
                f"{label}Accuracy under {attack} (epsilon 0: clean)",
                ["epsilon", "accuracy"],
                [[epsilon, accuracy] for epsilon, accuracy in curve.items()],
                id=f"robustness/{callback.prefix}{attack}",
            )
        )
    return section


def uncertainty(result, inputs, num_examples, image_shape, class_names, epoch):
    """The most and least certain inputs by predictive entropy, with their bands."""
    order = np.argsort(result.predictive_entropy, kind="stable")
    count = min(num_examples, len(order))
    most, least = order[:count], order[::-1][:count]
    if image_shape is None and not looks_like_images(np.shape(inputs)[1:]):
        inputs = None  # Not images: the bars alone.
    figure = plotting.uncertainty_examples(
        result,
        np.concatenate([most, least]),
        inputs=inputs,
        image_shape=image_shape,
        class_names=class_names,
        title=f"{count} most certain, then {count} least certain inputs, epoch {epoch}",
    )
    table = Table(
        f"Monte-Carlo predictions of {len(result)} inputs, T = {result.num_samples} samples",
        ["statistic", "mean", "min", "max"],
        [
            [name, float(np.mean(values)), float(np.min(values)), float(np.max(values))]
            for name, values in (
                ("confidence", result.confidence),
                ("predictive entropy (nats)", result.predictive_entropy),
                ("epistemic (mutual information, nats)", result.epistemic),
            )
        ],
        id="uncertainty",
    )
    return Section(
        "Uncertainty",
        images=[
            _png(
                "uncertainty/examples",
                "Mean Monte-Carlo probability per class with its 95% interval; orange: the "
                "predicted class",
                figure,
            )
        ],
        tables=[table],
    )
