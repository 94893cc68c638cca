"""CalibrationCallback: calibration diagnostics in the logs of every epoch."""

import inspect
import math
import warnings

import keras
import numpy as np

from keras_reliability import registry
from keras_reliability.calibration import TemperatureScaling
from keras_reliability.arguments import check_positive_int
from keras_reliability.arguments import check_str
from keras_reliability.callbacks.log_files import check_log_dir
from keras_reliability.callbacks.log_files import save_png
from keras_reliability.callbacks.log_files import warn_on_overwrite
from keras_reliability.metrics import expected_calibration_error
from keras_reliability.metrics import reliability_bins
from keras_reliability.data import HeldOutData
from keras_reliability.metrics.calibration import check_num_bins
from keras_reliability.models import check_output
from keras_reliability.models import read_model

DEFAULT_METRICS = ("ece", "mce", "adaptive_ece", "nll", "brier", "classwise_ece")
_OWNER = "CalibrationCallback"


@keras.saving.register_keras_serializable(package="keras_reliability")
class CalibrationCallback(keras.callbacks.Callback):
    """Logs calibration metrics of held-out data at the end of every epoch.

    At each epoch end the callback runs one batched forward pass
    (`training=False`) over `validation_data`, computes the chosen metrics
    and writes them into `logs` as `val_ece`, `val_mce`, ... . Place it
    *before* `CSVLogger`, `EarlyStopping` or `TensorBoard` in the callback
    list and they see the keys like compiled metrics (History and the
    progress bar always do). Every key is written from the first epoch on
    (NaN on epochs skipped by `every`), so CSV columns stay fixed.
    EarlyStopping counts a skipped epoch as one without improvement: use
    `patience >= every`.

    Misconfigured data (wrong shapes, labels out of range, a model that
    cannot run on it) raises in `on_train_begin`, before the first epoch.

    `latest_reliability_bins()` gives the reliability bins of the last
    scored epoch (`latest_epoch`, 0-based), drawn by
    `keras_reliability.report.ReliabilityReport`.

    Args:
        validation_data: `(x, y)` or `(x, y, sample_weight)` arrays, or an
            iterable of such batches (e.g. a `tf.data.Dataset`). Use data the
            model does not train on.
        num_bins: number of bins of the binned metrics.
        metrics: names (or callables / `keras.metrics.Metric` instances) of
            calibration metrics; names come from the `"calibration_metric"`
            registry: `ece`, `mce`, `rmsce`, `adaptive_ece`, `classwise_ece`,
            `nll`, `brier`, `smooth_ece`, and any installed plugin.
        fit_temperature: also fit a `TemperatureScaling` on the data and log
            `val_temperature` and `val_ece_after_ts` (in-sample: the same data
            is used to fit and evaluate the temperature).
        plot_every: draw a reliability diagram every this many epochs into
            `log_dir` (`reliability_epoch_NNNN.png`, and a TensorBoard image
            when TensorBoard is installed), and the ECE curves at the end of
            training (`calibration_history.png`). None draws nothing.
        log_dir: directory for the plots; required with `plot_every`.
        max_samples: use at most this many examples of `validation_data`.
        from_logits: whether the model outputs logits; None reads it from the
            model's graph (its final activation) or, failing that, its
            outputs. A value that contradicts the model is refused.
        batch_size: batch size of the forward pass over array data.
        every: compute the metrics every this many epochs.
        prefix: prefix of the log keys.
        output: for a model with several outputs, the name or index of its
            classification output; the labels of `validation_data` are
            then that output's labels (an array, not a dict).

    Example:

    ```python
    model.fit(
        x_train, y_train, epochs=20,
        callbacks=[
            CalibrationCallback((x_val, y_val), fit_temperature=True),
            keras.callbacks.EarlyStopping(monitor="val_ece", mode="min"),
        ],
    )
    ```

    References:
        - Guo et al., "On Calibration of Modern Neural Networks", ICML 2017.
    """

    def __init__(
        self,
        validation_data,
        num_bins=15,
        metrics=DEFAULT_METRICS,
        fit_temperature=False,
        plot_every=None,
        log_dir=None,
        max_samples=None,
        from_logits=None,
        batch_size=None,
        every=1,
        prefix="val_",
        output=None,
    ):
        super().__init__()
        self.num_bins = check_num_bins(num_bins)
        if isinstance(metrics, str) or not isinstance(metrics, (list, tuple)):
            raise ValueError(
                "`metrics` must be a list or tuple of metric names or objects; "
                f"received {metrics!r}."
            )
        self.metric_identifiers = tuple(metrics)
        self._metrics = [
            self._metric(index, identifier) for index, identifier in enumerate(metrics)
        ]
        self.fit_temperature = bool(fit_temperature)
        self.plot_every = check_positive_int(plot_every, "plot_every", allow_none=True)
        if self.plot_every is not None and not log_dir:
            raise ValueError(
                "`log_dir` is required when `plot_every` is set; received "
                f"log_dir={log_dir!r}."
            )
        self.log_dir = log_dir
        if from_logits is not None and not isinstance(from_logits, bool):
            raise ValueError(
                f"`from_logits` must be True, False or None; received {from_logits!r}."
            )
        self.from_logits = from_logits
        self.every = check_positive_int(every, "every")
        self.prefix = check_str(prefix, "prefix", owner=_OWNER)
        self.output = check_output(output, owner=_OWNER)
        self.data = HeldOutData(
            validation_data,
            max_samples=max_samples,
            batch_size=batch_size,
            owner="CalibrationCallback",
        )
        self.max_samples = max_samples
        self.batch_size = batch_size
        self._reading = None
        self._from_logits = None
        self._warned_keys = set()
        self.history = {}
        self.latest_epoch = None
        self._latest_outputs = None

    @classmethod
    def _metric(cls, index, identifier):
        """`(log key, metric)` of one entry of `metrics`."""
        # Errors name the entry (`metrics[1]`), not the registry's own
        # `identifier` argument.
        metric = registry.get(
            "calibration_metric", identifier, argument=f"metrics[{index}]", owner=_OWNER
        )
        return cls._metric_key(identifier), metric

    @staticmethod
    def _metric_key(identifier):
        if isinstance(identifier, str):
            return identifier.lower()
        name = getattr(identifier, "name", None) or getattr(identifier, "__name__", None)
        if not name:
            raise ValueError(
                "A metric object in `metrics` needs a `name` or `__name__` for "
                f"its log key; received {identifier!r}."
            )
        return name

    @property
    def log_keys(self):
        """The keys this callback writes into `logs`, in order."""
        keys = [self.prefix + key for key, _ in self._metrics]
        if self.fit_temperature:
            keys += [self.prefix + "temperature", self.prefix + "ece_after_ts"]
        return keys

    def on_train_begin(self, logs=None):
        if self.plot_every is not None:
            check_log_dir(self.log_dir, _OWNER)
        self.history = {key: [] for key in self.log_keys}
        self.latest_epoch = None
        self._latest_outputs = None
        reading = read_model(
            self.model, output=self.output, from_logits=self.from_logits, owner=_OWNER
        )
        reading.require_class_scores()
        outputs, labels = self.data.probe(self.model, reading.output_index)
        if not np.all(np.isfinite(outputs)):
            raise ValueError(
                f"{_OWNER}: model {self.model.name!r} returns NaN or infinite outputs "
                "on `validation_data` before training."
            )
        reading.resolve(outputs)
        self.data.check_labels(labels, reading.num_classes)
        self._reading = reading

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        warn_on_overwrite("CalibrationCallback", self.log_keys, logs, self._warned_keys)
        if (epoch + 1) % self.every != 0:
            values = {key: float("nan") for key in self.log_keys}
        else:
            values = self._evaluate(epoch)
        logs.update(values)
        for key, value in values.items():
            self.history.setdefault(key, []).append(value)

    def on_train_end(self, logs=None):
        if self.plot_every is None or not self.history:
            return
        from keras_reliability import plotting

        keys = [key for key in self.log_keys if key.endswith("ece")]
        if not keys or all(math.isnan(v) for key in keys for v in self.history[key]):
            return
        figure = plotting.calibration_history(self.history, keys=keys)
        save_png(
            self.log_dir,
            "calibration_history.png",
            plotting.figure_to_png(figure),
            owner=_OWNER,
        )

    def _evaluate(self, epoch):
        """The metrics of this epoch; NaN with a warning when they cannot be had."""
        try:
            outputs, labels, weights = self.data.collect(self.model, self._reading.output_index)
            if not np.all(np.isfinite(outputs)):
                raise ValueError(
                    f"model {self.model.name!r} returned NaN or infinite outputs"
                )
            y_pred, self._from_logits = self._reading.metric_inputs(outputs)
            values = {
                self.prefix + key: self._compute(metric, labels, y_pred, weights)
                for key, metric in self._metrics
            }
            if self.fit_temperature:
                values.update(self._temperature_scaling(y_pred, labels, weights))
        except Exception as error:  # a diagnostic never ends a fit
            warnings.warn(
                f"{_OWNER}: epoch {epoch + 1}: {error}; its metrics are logged as NaN.",
                UserWarning,
                stacklevel=3,
            )
            return {key: float("nan") for key in self.log_keys}
        self.latest_epoch = epoch
        self._latest_outputs = (labels, y_pred, weights)
        if self.plot_every is not None and (epoch + 1) % self.plot_every == 0:
            self._plot(epoch)
        return values

    def _compute(self, metric, labels, outputs, weights):
        if isinstance(metric, keras.metrics.Metric):
            metric.reset_state()
            metric.update_state(labels, outputs, sample_weight=weights)
            return float(keras.ops.convert_to_numpy(metric.result()))
        kwargs = {"from_logits": self._from_logits, "sample_weight": weights}
        if "num_bins" in inspect.signature(metric).parameters:
            kwargs["num_bins"] = self.num_bins
        return float(metric(labels, outputs, **kwargs))

    def _temperature_scaling(self, outputs, labels, weights):
        scaler = TemperatureScaling(from_logits=self._from_logits)
        scaler.fit(outputs, labels, sample_weight=weights)
        scaled = keras.ops.convert_to_numpy(scaler(outputs))
        return {
            self.prefix + "temperature": scaler.temperature,
            self.prefix + "ece_after_ts": expected_calibration_error(
                labels,
                scaled,
                num_bins=self.num_bins,
                from_logits=self._from_logits,
                sample_weight=weights,
            ),
        }

    def latest_reliability_bins(self):
        """Reliability bins of the last scored epoch (`latest_epoch`, 0-based).

        Computed on demand, with this callback's `num_bins`, from the outputs
        of that epoch's forward pass, which the callback keeps until the next
        one. None before the first scored epoch.

        Returns:
            A `keras_reliability.metrics.ReliabilityBins`, or None.
        """
        if self._latest_outputs is None:
            return None
        labels, outputs, weights = self._latest_outputs
        return reliability_bins(
            labels,
            outputs,
            num_bins=self.num_bins,
            from_logits=self._from_logits,
            sample_weight=weights,
        )

    def _plot(self, epoch):
        from keras_reliability import plotting

        figure = plotting.reliability_diagram(
            bins=self.latest_reliability_bins(), title=f"Reliability diagram, epoch {epoch + 1}"
        )
        save_png(
            self.log_dir,
            f"reliability_epoch_{epoch + 1:04d}.png",
            plotting.figure_to_png(figure),
            tag="calibration/reliability_diagram",
            step=epoch,
            owner=_OWNER,
        )

    def get_config(self):
        """Constructor arguments except `validation_data` (data is not saved)."""
        return {
            "num_bins": self.num_bins,
            "metrics": [
                identifier
                if isinstance(identifier, str)
                else keras.saving.serialize_keras_object(identifier)
                for identifier in self.metric_identifiers
            ],
            "fit_temperature": self.fit_temperature,
            "plot_every": self.plot_every,
            "log_dir": self.log_dir,
            "max_samples": self.max_samples,
            "from_logits": self.from_logits,
            "batch_size": self.batch_size,
            "every": self.every,
            "prefix": self.prefix,
            "output": self.output,
        }

    @classmethod
    def from_config(cls, config, validation_data=None):
        """Rebuilds the callback; the data must be passed again."""
        if validation_data is None:
            raise ValueError(
                "CalibrationCallback.from_config needs `validation_data`: data "
                "is not part of the config."
            )
        config = dict(config)
        config["metrics"] = [
            identifier
            if isinstance(identifier, str)
            else keras.saving.deserialize_keras_object(identifier)
            for identifier in config.get("metrics", DEFAULT_METRICS)
        ]
        return cls(validation_data, **config)
