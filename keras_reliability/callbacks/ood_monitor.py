"""OODMonitorCallback: how well the model separates ID from OOD data, every epoch."""

import math
import warnings

import keras
import numpy as np

from keras_reliability import distributed
from keras_reliability import registry
from keras_reliability.arguments import check_int_in_range
from keras_reliability.arguments import check_positive_int
from keras_reliability.arguments import check_seed
from keras_reliability.arguments import check_str
from keras_reliability.callbacks.log_files import check_log_dir
from keras_reliability.callbacks.log_files import save_png
from keras_reliability.callbacks.log_files import warn_on_overwrite
from keras_reliability.data import check_input_shapes
from keras_reliability.data import input_arrays
from keras_reliability.metrics.ood import evaluate_ood
from keras_reliability.models import ModelOutputs
from keras_reliability.models import class_labels
from keras_reliability.models import feature_extractor
from keras_reliability.ood.synthetic import BLUR_SIGMAS
from keras_reliability.ood.synthetic import describe_synthetic_sets
from keras_reliability.ood.synthetic import synthetic_ood_sets

DEFAULT_SCORERS = ("msp", "energy")
# The metrics logged per scorer, as keys of `evaluate_ood`.
METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95")

_OWNER = "OODMonitorCallback"
# Examples of the in-distribution data run through the model at train begin.
_PROBE_SIZE = 8


@keras.saving.register_keras_serializable(package="keras_reliability")
class OODMonitorCallback(keras.callbacks.Callback):
    """Logs how well OOD scorers separate in- from out-of-distribution data.

    At the end of every `every`-th epoch the callback scores the
    in-distribution inputs and the OOD inputs with each scorer (higher score =
    more OOD) and writes, per scorer `s`, `ood_<s>_auroc`, `ood_<s>_aupr_in`,
    `ood_<s>_aupr_out` and `ood_<s>_fpr95` into `logs`, over all OOD sets
    together; with several OOD sets it also writes `ood_<set>_<s>_auroc` per
    set. Every key is written from the first epoch on (NaN on skipped epochs),
    so History, CSVLogger, TensorBoard and `EarlyStopping(monitor=
    "ood_energy_auroc", mode="max")` see them like compiled metrics; place the
    callback before those in the list. EarlyStopping counts a skipped epoch
    as one without improvement: use `patience >= every`.

    Scorers that read only logits and features share one forward pass over
    the ID and OOD inputs; feature-based scorers (Mahalanobis, KNN, ViM,
    ReAct) are refitted on `fit_data` at each scored epoch, with one more
    forward pass. ODIN and Monte-Carlo scorers run their own passes.

    Without `ood_data`, the callback builds synthetic OOD sets from the ID
    inputs and says so in a warning: Gaussian and uniform noise, and blurred,
    low-contrast and noisy copies of the ID inputs (see
    `keras_reliability.ood.synthetic_ood_sets`). The corrupted copies are
    dataset shift, not semantic novelty: expect lower AUROC there.

    Data is checked in `on_train_begin`: mismatched shapes, a missing feature
    layer or a model that does not output class scores raise before the
    first epoch.

    After a scored epoch, `latest_scores` holds `{scorer: (scores_in,
    {set: scores_out})}` of that epoch and `latest_epoch` its 0-based index
    (what `keras_reliability.report.ReliabilityReport` draws).

    Args:
        in_data: in-distribution inputs the model does not train on: an
            array, a tuple whose first item holds the inputs (e.g. `(x, y)`),
            or an iterable of such batches (read once, into memory, up to
            `max_samples` examples).
        ood_data: OOD inputs in the same forms, or a dict name -> inputs for
            several OOD sets; None builds synthetic sets.
        scorers: names or instances of OOD scorers (the `"ood_scorer"`
            registry: `msp`, `maxlogit`, `energy`, `entropy`, `odin`,
            `mahalanobis`, `knn`, `vim`, `react`, `mutual_information`, and
            installed plugins). Log keys use the scorer's name.
        every: score every this many epochs.
        fit_data: training inputs, `(x, y)` or `x`, for scorers that need
            fitting (labels are needed by Mahalanobis). Use a sample of the
            training set.
        plot_every: every this many epochs, draw ID-vs-OOD score histograms
            per scorer and the ROC curves into `log_dir` (PNG files, and
            TensorBoard images when TensorBoard is installed). None draws
            nothing.
        log_dir: directory for the plots; required with `plot_every`.
        max_samples: use at most this many examples of `in_data`, of every
            OOD set and of `fit_data` (the first ones).
        batch_size: batch size of the forward passes.
        synthetic_severity: severity, an integer 1 to 5, of the synthetic
            corruptions.
        seed: seed of the synthetic sets, None or an integer >= 0.
        prefix: prefix of the log keys.

    Example:

    ```python
    model.fit(
        x_train, y_train, epochs=10,
        callbacks=[
            OODMonitorCallback(
                x_val, ood_data=x_letters,
                scorers=("msp", "energy", "mahalanobis"),
                fit_data=(x_train[:5000], y_train[:5000]),
            ),
            keras.callbacks.EarlyStopping(monitor="ood_energy_auroc", mode="max"),
        ],
    )
    ```

    References:
        Hendrycks and Gimpel, "A Baseline for Detecting Misclassified and
        Out-of-Distribution Examples in Neural Networks", ICLR 2017.
    """

    def __init__(
        self,
        in_data,
        ood_data=None,
        scorers=DEFAULT_SCORERS,
        every=1,
        fit_data=None,
        plot_every=None,
        log_dir=None,
        max_samples=None,
        batch_size=None,
        synthetic_severity=3,
        seed=None,
        prefix="ood_",
    ):
        super().__init__()
        self.every = check_positive_int(every, "every", owner=_OWNER)
        self.plot_every = check_positive_int(
            plot_every, "plot_every", allow_none=True, owner=_OWNER
        )
        if self.plot_every is not None and not log_dir:
            raise ValueError(
                f"{_OWNER}: `log_dir` is required when `plot_every` is set; "
                f"received log_dir={log_dir!r}."
            )
        self.log_dir = log_dir
        self.max_samples = check_positive_int(
            max_samples, "max_samples", allow_none=True, owner=_OWNER
        )
        self.batch_size = check_positive_int(
            batch_size, "batch_size", allow_none=True, owner=_OWNER
        )
        # Checked now although only used without `ood_data`, at train begin:
        # a wrong value would otherwise fail after `fit` has started.
        self.synthetic_severity = check_int_in_range(
            synthetic_severity,
            "synthetic_severity",
            1,
            len(BLUR_SIGMAS),  # the severity tables have one entry per severity
            owner=_OWNER,
        )
        self.seed = check_seed(seed, bounded=False, owner=_OWNER)
        self.prefix = check_str(prefix, "prefix", owner=_OWNER)
        self.scorer_identifiers = _check_scorer_list(scorers)
        self.scorers = {}
        for index, identifier in enumerate(self.scorer_identifiers):
            scorer = registry.get(
                "ood_scorer", identifier, argument=f"scorers[{index}]", owner=_OWNER
            )
            key = _scorer_key(identifier, scorer)
            if key in self.scorers:
                raise ValueError(
                    f"{_OWNER}: `scorers` holds {key!r} twice; give the scorers distinct names."
                )
            self.scorers[key] = scorer

        self.x_in, _ = input_arrays(in_data, "in_data", self.max_samples, _OWNER)
        if ood_data is None:
            self.ood_sets = None
        elif isinstance(ood_data, dict):
            if not ood_data:
                raise ValueError(f"{_OWNER}: `ood_data` is an empty dict.")
            self.ood_sets = {
                str(name): input_arrays(data, f"ood_data[{name!r}]", self.max_samples, _OWNER)[0]
                for name, data in ood_data.items()
            }
        else:
            self.ood_sets = {"ood": input_arrays(ood_data, "ood_data", self.max_samples, _OWNER)[0]}
        needs_fit = [
            key for key, scorer in self.scorers.items() if getattr(scorer, "requires_fit", False)
        ]
        if needs_fit and fit_data is None:
            raise ValueError(
                f"{_OWNER}: the scorers {needs_fit} learn from training data; pass "
                "`fit_data=(x_train, y_train)` (a sample of the training set)."
            )
        self.x_fit = self.y_fit = None
        if fit_data is not None:
            self.x_fit, self.y_fit = input_arrays(fit_data, "fit_data", self.max_samples, _OWNER)
            needs_labels = [
                key for key in needs_fit if getattr(self.scorers[key], "requires_labels", False)
            ]
            if needs_labels and self.y_fit is None:
                raise ValueError(
                    f"{_OWNER}: the scorers {needs_labels} need class labels: pass "
                    "`fit_data=(x_train, y_train)`, not inputs alone."
                )
        self._check_example_shapes()

        self._warned_keys = set()
        self.history = {}
        self.latest_scores = {}
        self.latest_epoch = None

    # Keys ------------------------------------------------------------------

    @property
    def log_keys(self):
        """The keys this callback writes into `logs`, in order."""
        keys = [f"{self.prefix}{s}_{metric}" for s in self.scorers for metric in METRICS]
        sets = self.ood_sets or {}
        if len(sets) > 1:
            keys += [f"{self.prefix}{name}_{s}_auroc" for name in sets for s in self.scorers]
        return keys

    # Callback hooks --------------------------------------------------------

    def on_train_begin(self, logs=None):
        if self.plot_every is not None:
            check_log_dir(self.log_dir, _OWNER)
        if self.ood_sets is None:
            self.ood_sets = synthetic_ood_sets(
                self.x_in, severity=self.synthetic_severity, seed=self.seed
            )
            warnings.warn(
                f"{_OWNER}: no `ood_data` given; scoring against synthetic OOD "
                f"sets built from `in_data`: "
                f"{describe_synthetic_sets(list(self.ood_sets), self.synthetic_severity)}.",
                UserWarning,
                stacklevel=2,
            )
        self._check_model_input_shape()
        distributed.check_batch_size(self.batch_size, _OWNER)
        self.history = {key: [] for key in self.log_keys}
        self.latest_scores = {}
        self.latest_epoch = None
        probe = self._shared_extractor().predict(
            self.x_in[:_PROBE_SIZE], batch_size=self.batch_size
        )
        for scorer in self._shared_scorers().values():
            # Refuses log-probabilities for scorers that need exact logits.
            scorer.logits(probe)
        if self.y_fit is not None:
            # Checked here, against the model's classes, so that a bad label
            # is reported as `fit_data`'s rather than by the scorer's `fit`.
            self.y_fit = class_labels(
                self.y_fit,
                len(self.x_fit),
                probe.logits.shape[1],
                name="fit_data labels",
                owner=_OWNER,
            )
        # Fitting errors (too few examples, one class) surface now, not
        # after the first epoch.
        self._fit_scorers()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        warn_on_overwrite(_OWNER, self.log_keys, logs, self._warned_keys)
        if (epoch + 1) % self.every != 0:
            values = {key: float("nan") for key in self.log_keys}
        else:
            try:
                self._fit_scorers()
                scores = self._scores()
            except Exception as error:  # a diagnostic never ends a fit
                warnings.warn(
                    f"{_OWNER}: epoch {epoch + 1}: {error}; its OOD metrics are "
                    "logged as NaN.",
                    UserWarning,
                    stacklevel=2,
                )
                scores = None
                values = {key: float("nan") for key in self.log_keys}
            if scores is not None:
                self.latest_scores = scores
                self.latest_epoch = epoch
                values = self._metrics(scores)
                if self.plot_every is not None and (epoch + 1) % self.plot_every == 0:
                    self._plot(epoch, scores)
        logs.update(values)
        for key, value in values.items():
            self.history.setdefault(key, []).append(value)

    # Scoring ---------------------------------------------------------------

    def _shared_scorers(self):
        return {
            key: scorer
            for key, scorer in self.scorers.items()
            if getattr(scorer, "shares_forward_pass", False)
        }

    def _shared_extractor(self, scorers=None):
        scorers = self._shared_scorers() if scorers is None else scorers
        layers = [layer for scorer in scorers.values() for layer in scorer.feature_layers()]
        return feature_extractor(self.model, layers, _OWNER)

    def _fit_scorers(self):
        fitting = {
            key: scorer
            for key, scorer in self.scorers.items()
            if getattr(scorer, "requires_fit", False)
        }
        if not fitting:
            return
        shared = {key: scorer for key, scorer in fitting.items() if hasattr(scorer, "fit_outputs")}
        if shared:
            outputs = self._shared_extractor(shared).predict(self.x_fit, batch_size=self.batch_size)
            for scorer in shared.values():
                scorer.fit_outputs(outputs, self.y_fit)
        for key, scorer in fitting.items():
            if key not in shared:
                scorer.fit(self.model, self.x_fit, self.y_fit, batch_size=self.batch_size)

    def _scores(self):
        """`{scorer: (scores_in, {set: scores_out})}` for every scorer."""
        names = list(self.ood_sets)
        parts = [self.x_in] + [self.ood_sets[name] for name in names]
        bounds = np.cumsum([0] + [len(part) for part in parts])
        scores = {}
        shared = self._shared_scorers()
        if shared:
            # One forward pass over ID and every OOD set for all of them (set
            # by set: concatenating the inputs would copy them all).
            extractor = self._shared_extractor(shared)
            outputs = ModelOutputs.concatenate(
                [extractor.predict(part, batch_size=self.batch_size) for part in parts]
            )
            for key, scorer in shared.items():
                scores[key] = _split(np.asarray(scorer.score_outputs(outputs)), bounds, names)
        for key, scorer in self.scorers.items():
            if key not in shared:
                per_part = [
                    np.asarray(scorer.score(self.model, part, batch_size=self.batch_size))
                    for part in parts
                ]
                scores[key] = (per_part[0], dict(zip(names, per_part[1:])))
        return {key: scores[key] for key in self.scorers}

    def _metrics(self, scores):
        values = {}
        pooled_sets = pooled_scores(scores)
        for key, (scores_in, per_set) in scores.items():
            with warnings.catch_warnings():
                # Constant scores: evaluate_ood's warning is replaced by one
                # that names the scorer.
                warnings.simplefilter("ignore", UserWarning)
                pooled = evaluate_ood(*pooled_sets[key])
                per_set_auroc = (
                    {name: evaluate_ood(scores_in, out)["auroc"] for name, out in per_set.items()}
                    if len(per_set) > 1
                    else {}
                )
            if math.isnan(pooled["auroc"]):
                warnings.warn(
                    f"{_OWNER}: scorer {key!r} gave the same score to every "
                    "input, so its OOD metrics are undefined and logged as NaN.",
                    UserWarning,
                    stacklevel=3,
                )
            for metric in METRICS:
                values[f"{self.prefix}{key}_{metric}"] = pooled[metric]
            for name, auroc in per_set_auroc.items():
                values[f"{self.prefix}{name}_{key}_auroc"] = auroc
        return values

    def _plot(self, epoch, scores):
        from keras_reliability import plotting

        curves = pooled_scores(scores)
        for key, (scores_in, scores_out) in curves.items():
            if np.ptp(np.concatenate([scores_in, scores_out])) == 0:
                continue
            figure = plotting.ood_score_histogram(
                scores_in, scores_out, name=key, title=f"{key} scores, epoch {epoch + 1}"
            )
            save_png(
                self.log_dir,
                f"ood_{key}_histogram_epoch_{epoch + 1:04d}.png",
                plotting.figure_to_png(figure),
                tag=f"ood/{key}_histogram",
                step=epoch,
                owner=_OWNER,
            )
        figure = plotting.ood_roc_curves(curves, title=f"OOD ROC curves, epoch {epoch + 1}")
        save_png(
            self.log_dir,
            f"ood_roc_epoch_{epoch + 1:04d}.png",
            plotting.figure_to_png(figure),
            tag="ood/roc_curves",
            step=epoch,
            owner=_OWNER,
        )

    # Checks ----------------------------------------------------------------

    def _other_inputs(self):
        """`(description, x)` of every input set besides `in_data`."""
        sets = [(f"ood_data[{name!r}]", x) for name, x in (self.ood_sets or {}).items()]
        if self.x_fit is not None:
            sets.append(("fit_data", self.x_fit))
        return sets

    def _check_example_shapes(self):
        expected = self.x_in.shape[1:]
        for name, x in self._other_inputs():
            if x.shape[1:] != expected:
                raise ValueError(
                    f"{_OWNER}: `{name}` has examples of shape {x.shape[1:]}, "
                    f"but `in_data` has examples of shape {expected}."
                )

    def _check_model_input_shape(self):
        for name, x in [("in_data", self.x_in)] + self._other_inputs():
            check_input_shapes(self.model, x, name, _OWNER)

    # Serialization ---------------------------------------------------------

    def get_config(self):
        """Constructor arguments except the data (data is not saved)."""
        return {
            "scorers": [
                (
                    identifier
                    if isinstance(identifier, str)
                    else keras.saving.serialize_keras_object(identifier)
                )
                for identifier in self.scorer_identifiers
            ],
            "every": self.every,
            "plot_every": self.plot_every,
            "log_dir": self.log_dir,
            "max_samples": self.max_samples,
            "batch_size": self.batch_size,
            "synthetic_severity": self.synthetic_severity,
            "seed": self.seed,
            "prefix": self.prefix,
        }

    @classmethod
    def from_config(cls, config, in_data=None, ood_data=None, fit_data=None):
        """Rebuilds the callback; the data must be passed again."""
        if in_data is None:
            raise ValueError(
                f"{_OWNER}.from_config needs `in_data`: data is not part of the config."
            )
        config = dict(config)
        config["scorers"] = [
            (
                identifier
                if isinstance(identifier, str)
                else keras.saving.deserialize_keras_object(identifier)
            )
            for identifier in config.get("scorers", DEFAULT_SCORERS)
        ]
        return cls(in_data, ood_data=ood_data, fit_data=fit_data, **config)


def pooled_scores(scores):
    """`{scorer: (scores_in, scores_out)}`, every OOD set's scores in one array.

    Args:
        scores: `{scorer: (scores_in, {set: scores_out})}`, as in
            `OODMonitorCallback.latest_scores`.
    """
    return {
        key: (scores_in, np.concatenate(list(per_set.values())))
        for key, (scores_in, per_set) in scores.items()
    }


def _check_scorer_list(scorers):
    if isinstance(scorers, str) or not isinstance(scorers, (list, tuple)) or not scorers:
        raise ValueError(
            f"{_OWNER}: `scorers` must be a non-empty list or tuple of scorer "
            f"names or objects; received {scorers!r}."
        )
    return tuple(scorers)


def _scorer_key(identifier, scorer):
    if isinstance(identifier, str):
        return identifier.lower()
    name = getattr(scorer, "name", None)
    if not name:
        raise ValueError(
            f"{_OWNER}: a scorer object in `scorers` needs a `name`; received {scorer!r}."
        )
    return name


def _split(scores, bounds, names):
    parts = [scores[start:stop] for start, stop in zip(bounds[:-1], bounds[1:])]
    return parts[0], dict(zip(names, parts[1:]))
