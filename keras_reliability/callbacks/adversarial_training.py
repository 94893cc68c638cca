"""AdversarialTrainingCallback: adversarial training inside a plain `model.fit`."""

import math

import keras
import numpy as np
from keras import ops

from keras_reliability import backend
from keras_reliability import distributed
from keras_reliability import registry
from keras_reliability.arguments import check_positive_int
from keras_reliability.attacks.attack import check_input_range
from keras_reliability.callbacks.log_files import warn_on_overwrite
from keras_reliability.ood.features import check_single_input
from keras_reliability.ood.features import feature_extractor

_OWNER = "AdversarialTrainingCallback"
# Model attributes the callback replaces while it trains.
_PATCHED = ("train_step", "compute_loss", "make_train_function")


@keras.saving.register_keras_serializable(package="keras_reliability")
class AdversarialTrainingCallback(keras.callbacks.Callback):
    """Trains adversarially inside `model.fit` and logs robust accuracy.

    At `on_train_begin` the callback wraps the model's own train step: each
    batch is first perturbed by the chosen recipe, with input gradients taken
    at the weights of that step, then the original step runs (loss, optimizer,
    metrics, distribution strategy as compiled). It works on the TensorFlow,
    JAX and PyTorch backends. The model is restored at `on_train_end`, and
    also by the next `fit` if a fit raised or was interrupted, so a model
    never stays patched.

    Recipes (registry kind `"training_recipe"`): `"fgsm"`, `"mix"`
    (Goodfellow et al.'s `0.5 * clean + 0.5 * FGSM` loss), `"fgsm_rs"` (Wong
    et al.'s FGSM from a random start), `"pgd"` (Madry et al.), `"trades"`
    (Zhang et al.), `"free"` (Shafahi et al.: each batch replayed
    `replays` times, one backward pass per replay for the weights and the
    perturbation) and `"noise"` (Gaussian noise of std `epsilon`).

    With `eval_data`, every `eval_every` epochs it writes
    `adv_clean_accuracy` and `adv_<attack>_accuracy` for each of
    `eval_attacks` into `logs` (NaN on skipped epochs; every key from the
    first epoch on), so EarlyStopping can monitor `adv_pgd_accuracy` with
    `mode="max"`.

    Args:
        recipe: a recipe name or instance (`keras_reliability.training`).
        epsilon: L-inf budget of the training perturbation (std for
            `"noise"`).
        input_range: `(lo, hi)` of valid inputs.
        recipe_options: extra constructor arguments of a named recipe, e.g.
            `{"steps": 10}` for `"pgd"` or `{"beta": 6.0}` for `"trades"`.
        eval_data: `(x, y)` arrays for the robust-accuracy evaluation.
        eval_attacks: attack names or instances; names are built with
            `eval_epsilon` and `input_range`.
        eval_epsilon: budget of the evaluation attacks (default `epsilon`).
        eval_every: evaluate every this many epochs.
        max_eval_samples: evaluate on at most this many examples.
        seed: seed of the recipes' randomness.
        prefix: prefix of the log keys.

    Example:

    ```python
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=5, callbacks=[
        AdversarialTrainingCallback("fgsm_rs", epsilon=0.3, input_range=(0, 1),
                                    eval_data=(x_val, y_val)),
        keras.callbacks.EarlyStopping(monitor="adv_pgd_accuracy", mode="max", patience=2),
    ])
    ```

    References:
        Madry et al., "Towards Deep Learning Models Resistant to Adversarial
        Attacks", ICLR 2018.
        Wong, Rice and Kolter, "Fast is better than free: Revisiting
        adversarial training", ICLR 2020.
    """

    def __init__(
        self,
        recipe="pgd",
        epsilon=0.3,
        input_range=(0, 1),
        recipe_options=None,
        eval_data=None,
        eval_attacks=("fgsm", "pgd"),
        eval_epsilon=None,
        eval_every=1,
        max_eval_samples=1000,
        seed=None,
        prefix="adv_",
    ):
        super().__init__()
        self.input_range = check_input_range(input_range, _OWNER)
        if self.input_range is None:
            raise ValueError(f"{_OWNER}: `input_range` is required, e.g. (0, 1).")
        self.epsilon = epsilon
        self.recipe_options = dict(recipe_options or {})
        self.recipe_identifier = recipe
        if isinstance(recipe, str):
            recipe_class = registry.get_object("training_recipe", recipe)
            recipe = recipe_class(
                epsilon=epsilon, input_range=self.input_range, **self.recipe_options
            )
        self.recipe = recipe
        self.eval_epsilon = epsilon if eval_epsilon is None else eval_epsilon
        self.eval_every = check_positive_int(eval_every, "eval_every", owner=_OWNER)
        self.max_eval_samples = check_positive_int(
            max_eval_samples, "max_eval_samples", allow_none=True, owner=_OWNER
        )
        self.seed = seed
        self.prefix = prefix
        self.eval_attack_identifiers = tuple(eval_attacks or ())
        self.eval_attacks = {}
        for identifier in self.eval_attack_identifiers:
            if isinstance(identifier, str):
                attack = registry.get_object("attack", identifier)(
                    epsilon=self.eval_epsilon, input_range=self.input_range, seed=seed
                )
            else:
                attack = registry.get("attack", identifier)
            self.eval_attacks[attack.name] = attack
        self.eval_data = None if eval_data is None else self._check_eval_data(eval_data)
        self._installed = None
        self._warned_keys = set()
        self.history = {}

    @property
    def log_keys(self):
        """The keys this callback writes into `logs`, in order."""
        if self.eval_data is None:
            return []
        return [self.prefix + "clean_accuracy"] + [
            f"{self.prefix}{name}_accuracy" for name in self.eval_attacks
        ]

    # Callback hooks --------------------------------------------------------

    def on_train_begin(self, logs=None):
        model = self.model
        restore(model)
        if getattr(model, "loss", None) is None and not _overrides_compute_loss(model):
            raise ValueError(
                f"{_OWNER}: the model was compiled without a loss; compile it with "
                "one (e.g. `loss=SparseCategoricalCrossentropy(from_logits=True)`)."
            )
        check_single_input(model, _OWNER)
        extractor = feature_extractor(model, (), _OWNER)
        if self.eval_data is not None:
            # Checks the model against the data, and detects a softmax inside.
            extractor.predict(self.eval_data[0][:8])
        self.history = {key: [] for key in self.log_keys}
        # Loss-mixing recipes read the model's outputs as probabilities or logits.
        self.recipe.outputs_probabilities = extractor.outputs_probabilities
        self._install(model, extractor.logits_model())

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not self.log_keys:
            return
        warn_on_overwrite(_OWNER, self.log_keys, logs, self._warned_keys)
        if (epoch + 1) % self.eval_every != 0:
            values = {key: float("nan") for key in self.log_keys}
        else:
            values = self.evaluate()
        logs.update(values)
        for key, value in values.items():
            self.history.setdefault(key, []).append(value)

    def on_train_end(self, logs=None):
        restore(self.model)

    # Evaluation ------------------------------------------------------------

    def evaluate(self):
        """Clean and robust accuracy on `eval_data`, keyed like the logs."""
        x, y = self.eval_data
        values = {self.prefix + "clean_accuracy": _accuracy(self.model, x, y)}
        for name, attack in self.eval_attacks.items():
            x_adv = attack.generate(self.model, x, y)
            values[f"{self.prefix}{name}_accuracy"] = _accuracy(self.model, x_adv, y)
        return values

    # Installation ----------------------------------------------------------

    def _install(self, model, logits_model):
        original_train_step = model.train_step
        original_compute_loss = model.compute_loss
        original_make_train_function = model.make_train_function
        recipe = self.recipe
        installing = [True]

        if recipe.concatenates:

            def compute_loss(x=None, y=None, y_pred=None, sample_weight=None, training=True):
                if not training:
                    # Evaluation batches (validation) are plain batches.
                    return original_compute_loss(
                        x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
                    )
                half = ops.shape(y_pred)[0] // 2

                def part(value, clean):
                    if value is None:
                        return None
                    return value[:half] if clean else value[half:]

                losses = [
                    original_compute_loss(
                        x=part(x, clean),
                        y=part(y, clean),
                        y_pred=part(y_pred, clean),
                        sample_weight=part(sample_weight, clean),
                        training=training,
                    )
                    for clean in (True, False)
                ]
                return recipe.combine_losses(
                    losses[0], losses[1], part(y_pred, True), part(y_pred, False)
                )

            model.compute_loss = compute_loss

        def make_train_function(force=False):
            if not installing[0]:
                # A new fit after one that raised: train normally again.
                restore(model)
                return model.make_train_function(force=force)
            return original_make_train_function(force=force)

        if getattr(recipe, "replays", None):
            model.train_step = backend.free_adversarial_train_step(model, recipe, self.seed)
        else:
            model.train_step = backend.adversarial_train_step(
                model, logits_model, original_train_step, recipe.transform, self.seed
            )
        model.make_train_function = make_train_function
        model._keras_reliability_adversarial = installing
        model.make_train_function(force=True)
        # Later calls come from a new fit: `fit` only builds the function
        # before `on_train_begin`.
        installing[0] = False

    def _check_eval_data(self, eval_data):
        if not isinstance(eval_data, tuple) or len(eval_data) != 2:
            raise ValueError(
                f"{_OWNER}: `eval_data` must be a tuple (x, y) of arrays; received "
                f"{type(eval_data).__name__}."
            )
        x = np.asarray(ops.convert_to_numpy(eval_data[0]))
        y = np.asarray(ops.convert_to_numpy(eval_data[1]))
        if len(x) == 0 or len(x) != len(y):
            raise ValueError(
                f"{_OWNER}: `eval_data` must hold as many labels as inputs (at least "
                f"one); received {len(x)} inputs and {len(y)} labels."
            )
        if x.dtype.kind in "iub":
            raise ValueError(
                f"{_OWNER}: `eval_data` inputs have the integer dtype {x.dtype}; pass "
                "float inputs on the model's scale (e.g. pixels / 255)."
            )
        if self.max_eval_samples is not None:
            x, y = x[: self.max_eval_samples], y[: self.max_eval_samples]
        return x.astype(np.float32), y

    def get_config(self):
        """Constructor arguments except `eval_data` (data is not saved)."""
        recipe = self.recipe_identifier
        attacks = self.eval_attack_identifiers
        return {
            "recipe": (
                recipe if isinstance(recipe, str) else keras.saving.serialize_keras_object(recipe)
            ),
            "epsilon": self.epsilon,
            "input_range": self.input_range,
            "recipe_options": self.recipe_options,
            "eval_attacks": [
                a if isinstance(a, str) else keras.saving.serialize_keras_object(a) for a in attacks
            ],
            "eval_epsilon": self.eval_epsilon,
            "eval_every": self.eval_every,
            "max_eval_samples": self.max_eval_samples,
            "seed": self.seed,
            "prefix": self.prefix,
        }

    @classmethod
    def from_config(cls, config, eval_data=None):
        config = dict(config)
        if isinstance(config.get("recipe"), dict):
            config["recipe"] = keras.saving.deserialize_keras_object(config["recipe"])
        config["eval_attacks"] = [
            a if isinstance(a, str) else keras.saving.deserialize_keras_object(a)
            for a in config.get("eval_attacks", ())
        ]
        return cls(eval_data=eval_data, **config)


def restore(model):
    """Removes an adversarial train step from `model`, if one is installed."""
    if getattr(model, "_keras_reliability_adversarial", None) is None:
        return
    for name in _PATCHED:
        model.__dict__.pop(name, None)
    del model._keras_reliability_adversarial
    # Functions compiled while patched (fit's validation too) are rebuilt.
    model.train_function = None
    model.test_function = None


def _overrides_compute_loss(model):
    return type(model).compute_loss is not keras.Model.compute_loss


def _accuracy(model, x, y):
    predictions = distributed.predict(model, x, batch_size=256)
    labels = y.argmax(axis=1) if y.ndim == 2 and y.shape[1] > 1 else y.reshape(-1)
    accuracy = float(np.mean(np.argmax(predictions, axis=1) == labels))
    return accuracy if math.isfinite(accuracy) else float("nan")
