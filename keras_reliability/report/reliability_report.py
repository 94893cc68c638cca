"""ReliabilityReport: one HTML page of a run's reliability, rewritten at epoch ends."""

import datetime
import math
import os
import warnings

import keras
import numpy as np

from keras_reliability import files
from keras_reliability.arguments import check_numbers
from keras_reliability.arguments import check_positive_int
from keras_reliability.attacks.robustness import robust_accuracy
from keras_reliability.callbacks import AdversarialTrainingCallback
from keras_reliability.callbacks import CalibrationCallback
from keras_reliability.callbacks import OODMonitorCallback
from keras_reliability.callbacks import tensorboard_images
from keras_reliability.callbacks.log_files import check_log_dir
from keras_reliability.plotting import _matplotlib
from keras_reliability.plotting._history import history_dict
from keras_reliability.report import html
from keras_reliability.report import sections
from keras_reliability.data import check_finite_inputs
from keras_reliability.uncertainty import predict_with_uncertainty

DEFAULT_FILENAME = "reliability_report.html"
# Budgets of the accuracy-vs-epsilon curve, as fractions of the evaluation budget.
ROBUSTNESS_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)

_OWNER = "ReliabilityReport"
_KINDS = {
    CalibrationCallback: "Calibration",
    OODMonitorCallback: "OOD detection",
    AdversarialTrainingCallback: "Adversarial robustness",
}


@keras.saving.register_keras_serializable(package="keras_reliability")
class ReliabilityReport(keras.callbacks.Callback):
    """Writes a self-contained HTML report of the model's reliability.

    One file, `log_dir/reliability_report.html`, with every image embedded,
    rewritten every `every` epochs and at the end of training (through a
    temporary file, so a browser never reads half a page). It holds:

    - a summary table of every logged key (latest value, its epoch, min and
      max) and per-epoch curves of each, grouped by the callback that logs
      them (NaN values of skipped epochs are left out);
    - the latest reliability diagram of each `CalibrationCallback`;
    - ROC curves and score histograms (in-distribution against OOD) of each
      scorer of each `OODMonitorCallback`, at its latest scored epoch;
    - accuracy against the attack budget for each
      `AdversarialTrainingCallback`, computed by the report on the
      callback's `eval_data` with its last evaluation attack (by default
      PGD) at `robustness_epsilons`;
    - with `uncertainty_data`, Monte-Carlo predictions
      (`predict_with_uncertainty`): the most and least certain inputs by
      predictive entropy, each drawn beside its class probabilities and
      their 95% intervals, and a table of the uncertainty statistics.

    Place the report after the callbacks it draws (and any others whose
    keys it should show) in the `callbacks` list of `fit`: it reads their
    keys from the epoch's logs. With TensorFlow and TensorBoard installed,
    each plot of the report (not the curves: the keys already reach
    TensorBoard as scalars) is also written as a TensorBoard image under
    `log_dir/reliability`, tagged `report/...`.

    `log_dir` is created and checked in `on_train_begin`: a directory that
    cannot be written (a file in its place, a read-only or full file system)
    raises a `ValueError` before the first epoch. A write that fails later
    (the disk filled up during training) warns and training goes on; the
    next write tries again.

    The robustness curve runs the attack at every budget each time the page
    is written, and the uncertainty section runs `num_samples` forward passes
    over `uncertainty_data`: raise `every` when they cost too much.

    Args:
        log_dir: directory of the report.
        callbacks: the reliability callbacks whose results the report draws:
            `CalibrationCallback`, `OODMonitorCallback` and
            `AdversarialTrainingCallback` instances (the same objects passed
            to `fit`).
        uncertainty_data: optional inputs for the uncertainty section (e.g.
            held-out inputs, or a mix of them and out-of-distribution ones).
            The model should sample at inference (`MCDropout` or Bayesian
            layers); otherwise every sample is the same.
        num_samples: Monte-Carlo samples per input of `uncertainty_data`.
        num_examples: how many most and how many least certain inputs to
            draw.
        image_shape: shape to draw each uncertainty input as an image, e.g.
            `(8, 8)` for flattened 8x8 digits; inputs of shape (H, W),
            (H, W, 1) or (H, W, 3) are drawn without it, other inputs are not
            drawn.
        class_names: optional names of the classes, for the uncertainty
            plots.
        robustness_epsilons: budgets of the accuracy-vs-epsilon curve; by
            default 0, 1/4, 1/2, 3/4 and 1 times each adversarial callback's
            `eval_epsilon`.
        every: write the report every this many epochs (and at the end).
        filename: name of the HTML file in `log_dir`.
        title: title of the page.

    Example:

    ```python
    calibration = CalibrationCallback((x_val, y_val))
    ood = OODMonitorCallback(x_val, ood_data=x_letters)
    report = ReliabilityReport("logs", callbacks=[calibration, ood],
                               uncertainty_data=x_val[:500])
    model.fit(x_train, y_train, epochs=10, callbacks=[calibration, ood, report])
    # Open logs/reliability_report.html in a browser.
    ```
    """

    def __init__(
        self,
        log_dir,
        callbacks=(),
        uncertainty_data=None,
        num_samples=32,
        num_examples=3,
        image_shape=None,
        class_names=None,
        robustness_epsilons=None,
        every=1,
        filename=DEFAULT_FILENAME,
        title="Reliability report",
    ):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(log_dir):
            raise ValueError(f"{_OWNER}: `log_dir` must be a directory path; received {log_dir!r}.")
        self.log_dir = os.fspath(log_dir)
        if not isinstance(filename, str) or not filename or os.path.basename(filename) != filename:
            raise ValueError(
                f"{_OWNER}: `filename` must be a file name without directories; "
                f"received {filename!r}."
            )
        self.filename = filename
        self.title = str(title)
        self.every = check_positive_int(every, "every", owner=_OWNER)
        self.num_samples = check_positive_int(num_samples, "num_samples", owner=_OWNER)
        self.num_examples = check_positive_int(num_examples, "num_examples", owner=_OWNER)
        self.sources = _check_sources(callbacks)
        self.robustness_epsilons = None if robustness_epsilons is None else check_numbers(
            robustness_epsilons, "robustness_epsilons", positive=False, owner=_OWNER
        )
        self.uncertainty_data = _check_uncertainty_data(uncertainty_data, image_shape)
        self.image_shape = None if image_shape is None else tuple(image_shape)
        self.class_names = None if class_names is None else [str(name) for name in class_names]
        _matplotlib.import_matplotlib(f"`{_OWNER}`")
        self.history = {}
        self._order_checked = False
        self._last_epoch = self._written_epoch = None
        self._sections = None

    @property
    def path(self):
        """Path of the HTML file."""
        return os.path.join(self.log_dir, self.filename)

    # Callback hooks --------------------------------------------------------

    def on_train_begin(self, logs=None):
        check_log_dir(self.log_dir, _OWNER)
        self.history = {}
        self._order_checked = False
        self._last_epoch = self._written_epoch = None
        self._sections = None
        if self.uncertainty_data is not None:
            # A model that cannot take the data fails now, not after an epoch
            # (with `num_samples`, the Monte-Carlo wrapper built here is reused).
            predict_with_uncertainty(
                self.model, self.uncertainty_data[:2], num_samples=self.num_samples
            )

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not self._order_checked:
            self._check_order(logs)
        seen = self._num_epochs()
        for key, value in logs.items():
            try:
                value = float(value)
            except (TypeError, ValueError):
                continue
            self.history.setdefault(key, [math.nan] * seen).append(value)
        # One value per epoch in every curve: NaN where a key was not logged
        # (e.g. validation keys under `validation_freq`).
        for values in self.history.values():
            if len(values) == seen:
                values.append(math.nan)
        self._last_epoch = epoch
        if (epoch + 1) % self.every == 0:
            self._render(epoch, finished=False, tensorboard=True)

    def on_train_end(self, logs=None):
        last = self._last_epoch
        if last is None:
            return
        if self._written_epoch == last:
            # Only the status line changes: no need to rerun the diagnostics.
            page = html.render(self.title, self._meta(last, finished=True), self._sections)
            self._write_page(page)
        else:
            self._render(last, finished=True, tensorboard=True)

    # Writing ---------------------------------------------------------------

    def write(self):
        """Writes the report of the results so far and returns its path.

        Returns:
            The path of the HTML file.

        Raises:
            ValueError: if `log_dir` cannot be created or written (checked
                before the report is computed).
            OSError: if writing the page fails all the same (e.g. the disk
                filled up meanwhile); the message names `log_dir`.
        """
        return self._write(_OWNER)

    def _write(self, owner):
        check_log_dir(self.log_dir, owner)
        epoch = max(self._num_epochs() - 1, 0)
        return self._render(epoch, finished=True, tensorboard=False, owner=owner)

    def _num_epochs(self):
        return max((len(values) for values in self.history.values()), default=0)

    def _render(self, epoch, finished, tensorboard, owner=None):
        """Computes and writes the page; see `_write_page` for `owner`."""
        groups = self._groups()
        page_sections = [
            sections.summary(self.history, groups),
            sections.curves(self.history, groups),
        ]
        kinds = {kind: [c for c in self.sources if isinstance(c, kind)] for kind in _KINDS}
        if kinds[CalibrationCallback]:
            page_sections.append(sections.calibration(kinds[CalibrationCallback]))
        if kinds[OODMonitorCallback]:
            page_sections.append(sections.ood(kinds[OODMonitorCallback]))
        if kinds[AdversarialTrainingCallback]:
            curves = [self._robustness_curve(c) for c in kinds[AdversarialTrainingCallback]]
            page_sections.append(sections.robustness(curves, epoch + 1))
        if self.uncertainty_data is not None:
            result = predict_with_uncertainty(
                self._fitted_model(), self.uncertainty_data, num_samples=self.num_samples
            )
            page_sections.append(
                sections.uncertainty(
                    result,
                    self.uncertainty_data,
                    self.num_examples,
                    self.image_shape,
                    self.class_names,
                    epoch + 1,
                )
            )
        page = html.render(self.title, self._meta(epoch, finished), page_sections)
        # Kept even if the write fails: `on_train_end` writes them again.
        self._sections, self._written_epoch = page_sections, epoch
        written = self._write_page(page, owner)
        if tensorboard:
            for section in page_sections[2:]:
                for image in section.images:
                    tensorboard_images.write_png(
                        self.log_dir, f"report/{image.tag}", image.png, step=epoch, owner=_OWNER
                    )
        return written

    def _write_page(self, page, owner=None):
        """Writes the page atomically and returns its path.

        During `fit` (`owner` None) a failure warns and returns None: the
        report never stops training. Otherwise the failure raises an
        `OSError` naming `owner` and `log_dir`.
        """
        try:
            os.makedirs(self.log_dir, exist_ok=True)
            return files.write_atomically(self.path, page)
        except OSError as error:
            reason = files.os_error_reason(error)
            if owner is not None:
                raise files.os_error_with_message(
                    error,
                    f"{owner}: could not write the report {self.path!r} into `log_dir`: "
                    f"{reason}. Received: log_dir={self.log_dir!r}",
                ) from error
            warnings.warn(
                f"{_OWNER}: could not write the report {self.path!r} into `log_dir` "
                f"({self.log_dir!r}): {reason}. Training goes on; the next write tries again.",
                UserWarning,
                stacklevel=4,
            )
            return None

    def _robustness_curve(self, callback):
        attack = list(callback.eval_attacks.values())[-1]
        epsilons = self.robustness_epsilons or [
            fraction * callback.eval_epsilon for fraction in ROBUSTNESS_FRACTIONS
        ]
        x, y = callback.eval_data
        return callback, attack.name, robust_accuracy(self._fitted_model(), x, y, attack, epsilons)

    def _groups(self):
        """`[(name, keys)]`: each source's keys, then every other logged key."""
        groups, claimed = [], set()
        for source in self.sources:
            kind = _kind(source)
            name = _KINDS[kind]
            if self._count(kind) > 1:
                name += f" ({source.prefix})"
            keys = [key for key in source.log_keys if key in self.history]
            claimed.update(keys)
            groups.append((name, keys))
        groups.append(("Training", [key for key in self.history if key not in claimed]))
        return groups

    def _count(self, kind):
        return sum(isinstance(source, kind) for source in self.sources)

    def _model_or_none(self):
        """The model being fitted, or else the one the callbacks were fitted with."""
        if self.model is not None:
            return self.model
        return next((s.model for s in self.sources if s.model is not None), None)

    def _fitted_model(self):
        model = self._model_or_none()
        if model is None:
            raise ValueError(
                f"{_OWNER}: the robustness and uncertainty sections need the model; "
                "pass `model=`."
            )
        return model

    def _meta(self, epoch, finished):
        lines = []
        model = self._model_or_none()
        if model is not None:
            lines.append(
                f"Model {model.name!r}: {model.count_params():,} parameters. "
                f"Keras {keras.__version__}, {keras.backend.backend()} backend."
            )
        total = (self.params or {}).get("epochs")
        progress = (
            f"Finished after epoch {epoch + 1}"
            if finished
            else (f"Training: results of epoch {epoch + 1}" + (f" of {total}" if total else ""))
        )
        now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
        lines.append(f"{progress}; written {now}.")
        return lines

    def _check_order(self, logs):
        self._order_checked = True
        for source in self.sources:
            missing = [key for key in source.log_keys if key not in logs]
            if missing:
                warnings.warn(
                    f"{_OWNER}: the keys {missing} of {type(source).__name__} are not in "
                    "the logs of the first epoch; place the report after it in the "
                    "`callbacks` of `fit`.",
                    UserWarning,
                    stacklevel=3,
                )

    # Serialization ---------------------------------------------------------

    def get_config(self):
        """Constructor arguments except `callbacks` and `uncertainty_data`."""
        return {
            "log_dir": self.log_dir,
            "num_samples": self.num_samples,
            "num_examples": self.num_examples,
            "image_shape": self.image_shape,
            "class_names": self.class_names,
            "robustness_epsilons": self.robustness_epsilons,
            "every": self.every,
            "filename": self.filename,
            "title": self.title,
        }

    @classmethod
    def from_config(cls, config, callbacks=(), uncertainty_data=None):
        """Rebuilds the report; pass the callbacks and data again."""
        return cls(callbacks=callbacks, uncertainty_data=uncertainty_data, **config)


def write_report(
    log_dir,
    history=None,
    *,
    callbacks=(),
    model=None,
    uncertainty_data=None,
    **options,
):
    """Writes the reliability report of a finished run and returns its path.

    The page is the one `ReliabilityReport` writes during training, drawn
    from the results the reliability callbacks hold after `fit` (their
    latest scored epoch) and from `history`.

    Args:
        log_dir: directory of the report.
        history: the `keras.callbacks.History` returned by `fit`, or a dict
            of per-epoch values; by default the histories of `callbacks`.
        callbacks: the reliability callbacks used in `fit`.
        model: the model; by default the one the callbacks were fitted with.
            Needed for the robustness and uncertainty sections.
        uncertainty_data: optional inputs for the uncertainty section.
        **options: `num_samples`, `num_examples`, `image_shape`,
            `class_names`, `robustness_epsilons`, `filename`, `title` of
            `ReliabilityReport`.

    Returns:
        The path of the HTML file.

    Raises:
        ValueError: if `log_dir` cannot be created or written (checked
            before the report is computed).
        OSError: if writing the page fails all the same (e.g. the disk
            filled up meanwhile); the message names `log_dir`.

    Example:

    ```python
    history = model.fit(x, y, epochs=10, callbacks=[calibration, ood])
    write_report("logs", history, callbacks=[calibration, ood], uncertainty_data=x_val[:500])
    ```
    """
    report = ReliabilityReport(
        log_dir, callbacks=callbacks, uncertainty_data=uncertainty_data, **options
    )
    if model is not None:
        report.set_model(model)
    if history is None:
        history = {}
        for source in report.sources:
            history.update(source.history)
    report.history = {
        key: [float(value) for value in values] for key, values in history_dict(history).items()
    }
    return report._write("write_report")


def _check_sources(callbacks):
    if isinstance(callbacks, keras.callbacks.Callback) or not isinstance(callbacks, (list, tuple)):
        raise ValueError(
            f"{_OWNER}: `callbacks` must be a list of reliability callbacks; received "
            f"{callbacks!r}."
        )
    for callback in callbacks:
        if _kind(callback) is None:
            raise ValueError(
                f"{_OWNER}: `callbacks` may hold CalibrationCallback, OODMonitorCallback and "
                f"AdversarialTrainingCallback instances; received {callback!r}."
            )
        if isinstance(callback, AdversarialTrainingCallback) and callback.eval_data is None:
            raise ValueError(
                f"{_OWNER}: the AdversarialTrainingCallback in `callbacks` has no `eval_data`; "
                "the accuracy-vs-epsilon curve is computed on it."
            )
        if isinstance(callback, AdversarialTrainingCallback) and not callback.eval_attacks:
            raise ValueError(
                f"{_OWNER}: the AdversarialTrainingCallback in `callbacks` has no "
                "`eval_attacks`; the accuracy-vs-epsilon curve runs the last of them."
            )
    return list(callbacks)


def _kind(callback):
    """The reliability callback class `callback` is an instance of, or None."""
    return next((kind for kind in _KINDS if isinstance(callback, kind)), None)


def _check_uncertainty_data(x, image_shape):
    if x is None:
        if image_shape is not None:
            raise ValueError(f"{_OWNER}: `image_shape` is set but `uncertainty_data` is not.")
        return None
    x = np.asarray(keras.ops.convert_to_numpy(x))
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(
            f"{_OWNER}: `uncertainty_data` must be a batch of at least one input; received "
            f"an array of shape {x.shape}."
        )
    check_finite_inputs(x, "uncertainty_data", _OWNER)
    if image_shape is not None and int(np.prod(image_shape)) != int(np.prod(x.shape[1:])):
        raise ValueError(
            f"{_OWNER}: inputs of shape {x.shape[1:]} cannot be drawn as "
            f"`image_shape={tuple(image_shape)}`."
        )
    return x
