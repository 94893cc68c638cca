"""AdversarialTrainingCallback: adversarial training inside a plain `model.fit`."""

import contextlib
import types
import warnings

import keras
import numpy as np
from keras import ops

from keras_reliability import backend
from keras_reliability import registry
from keras_reliability.arguments import check_keyword_options
from keras_reliability.arguments import check_number
from keras_reliability.arguments import check_positive_int
from keras_reliability.arguments import check_seed
from keras_reliability.arguments import check_str
from keras_reliability.attacks.attack import check_input_range
from keras_reliability.attacks.attack import float_inputs
from keras_reliability.callbacks.log_files import warn_on_overwrite
from keras_reliability.data import check_input_shapes
from keras_reliability.models import check_single_input
from keras_reliability.models import class_labels
from keras_reliability.models import feature_extractor

_OWNER = "AdversarialTrainingCallback"


@keras.saving.register_keras_serializable(package="keras_reliability")
class AdversarialTrainingCallback(keras.callbacks.Callback):
    """Trains adversarially inside `model.fit` and logs robust accuracy.

    At `on_train_begin` the callback wraps the model's own train step: each
    batch is first perturbed by the chosen recipe, with input gradients taken
    at the weights of that step, then the original step runs (loss, optimizer,
    metrics, distribution strategy as compiled). It works on the TensorFlow,
    JAX and PyTorch backends. The wrapped step (and, for `"mix"` and
    `"trades"`, the split loss) is set on the model only while its train
    function runs, so an exception or KeyboardInterrupt inside a step
    leaves no attribute of the callback on the model; on JAX the weights
    that the failed step had taken from the variables are put back. Keras
    calls no hook when another callback raises: then one instance
    attribute, `make_train_function`, remains (and `train_function` is the
    adversarial function) until the model's next `fit` or `train_on_batch`
    removes both before training (`compile` drops the function).
    `evaluate`, `predict`, saving and `compute_loss` read neither. The
    model is restored at `on_train_end`.

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
            `{"steps": 10}` for `"pgd"` or `{"beta": 6.0}` for `"trades"`;
            checked against the recipe's constructor. None with a recipe
            instance.
        eval_data: `(x, y)` arrays for the robust-accuracy evaluation.
        eval_attacks: attack names or instances; names are built with
            `eval_epsilon` and `input_range`.
        eval_epsilon: budget of the evaluation attacks (default `epsilon`).
        eval_every: evaluate every this many epochs.
        max_eval_samples: evaluate on at most this many examples.
        seed: seed of the recipes' and the evaluation attacks' randomness,
            None or an integer in 0..2**32 - 1.
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
        # Plain arguments first: the recipe and the attacks built below would
        # report a bad value as their own argument (e.g. FGSM's `epsilon`).
        self.input_range = check_input_range(input_range, _OWNER)
        if self.input_range is None:
            raise ValueError(f"{_OWNER}: `input_range` is required, e.g. (0, 1).")
        self.epsilon = check_number(epsilon, "epsilon", positive=False, owner=_OWNER)
        self.eval_epsilon = (
            self.epsilon
            if eval_epsilon is None
            else check_number(eval_epsilon, "eval_epsilon", positive=False, owner=_OWNER)
        )
        self.eval_every = check_positive_int(eval_every, "eval_every", owner=_OWNER)
        self.max_eval_samples = check_positive_int(
            max_eval_samples, "max_eval_samples", allow_none=True, owner=_OWNER
        )
        self.seed = check_seed(seed, owner=_OWNER)
        self.prefix = check_str(prefix, "prefix", owner=_OWNER)
        self.recipe_identifier = recipe
        self.recipe, self.recipe_options = self._build_recipe(recipe, recipe_options)
        self.eval_attack_identifiers = _check_eval_attacks(eval_attacks)
        self.eval_attacks = {}
        for index, identifier in enumerate(self.eval_attack_identifiers):
            attack = self._build_attack(identifier, f"eval_attacks[{index}]")
            self.eval_attacks[attack.name] = attack
        self.eval_data = None if eval_data is None else self._check_eval_data(eval_data)
        self._installed = None
        self._eval_labels = None
        self._warned_keys = set()
        self.history = {}

    def _build_recipe(self, recipe, recipe_options):
        """`(recipe, options)`: the recipe instance and the options it was built with."""
        if recipe is None or not (isinstance(recipe, str) or hasattr(recipe, "transform")):
            raise ValueError(
                f"{_OWNER}: `recipe` must be a recipe name (e.g. 'pgd', 'fgsm_rs') or a "
                f"recipe instance; received {recipe!r}."
            )
        if not isinstance(recipe, str):
            if recipe_options:
                raise ValueError(
                    f"{_OWNER}: `recipe_options` only applies to a recipe name; with a "
                    f"recipe instance, pass the options to its constructor. Received "
                    f"recipe_options={recipe_options!r}."
                )
            return recipe, {}
        recipe_class = registry.get_object(
            "training_recipe", recipe, argument="recipe", owner=_OWNER
        )
        # The callback passes `epsilon` and `input_range` itself.
        options = check_keyword_options(
            recipe_options,
            "recipe_options",
            recipe_class,
            supplied=("epsilon", "input_range"),
            owner=_OWNER,
        )
        return recipe_class(epsilon=self.epsilon, input_range=self.input_range, **options), options

    def _build_attack(self, identifier, argument):
        """An evaluation attack; a name is built with `eval_epsilon` and `input_range`."""
        if not isinstance(identifier, str):
            return registry.get("attack", identifier, argument=argument, owner=_OWNER)
        attack_class = registry.get_object("attack", identifier, argument=argument, owner=_OWNER)
        return attack_class(
            epsilon=self.eval_epsilon, input_range=self.input_range, seed=self.seed
        )

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
        state = _installed_state(model)
        if state is not None and state["owner"] is not self and (
            model.train_function is state["train_function"]
        ):
            restore(model)
            raise ValueError(
                f"{_OWNER}: two AdversarialTrainingCallbacks are in this fit; only one "
                "can own the training step. Combine their settings in one callback."
            )
        restore(model)
        if getattr(model, "loss", None) is None and not _overrides_compute_loss(model):
            raise ValueError(
                f"{_OWNER}: the model was compiled without a loss; compile it with "
                "one (e.g. `loss=SparseCategoricalCrossentropy(from_logits=True)`)."
            )
        check_single_input(model, _OWNER)
        extractor = feature_extractor(model, (), _OWNER)
        self._eval_labels = None
        if self.eval_data is not None:
            x, y = self.eval_data
            check_input_shapes(model, x, "eval_data", _OWNER)
            # Checks the model against the data, and reads its kind.
            with backend.keep_variables(model):
                probe = extractor.predict(x[:8])
            self._eval_labels = class_labels(
                y, len(x), probe.logits.shape[1], name="eval_data labels", owner=_OWNER
            )
        self.history = {key: [] for key in self.log_keys}
        # Loss-mixing recipes read the model's outputs through the same reading.
        self.recipe.outputs_reading = extractor.reading
        self._install(model, extractor.logits_model())

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not self.log_keys:
            return
        warn_on_overwrite(_OWNER, self.log_keys, logs, self._warned_keys)
        if (epoch + 1) % self.eval_every != 0:
            values = {key: float("nan") for key in self.log_keys}
        else:
            try:
                # JAX: an interrupted predict would leave the variables empty.
                with backend.keep_variables(self.model):
                    values = self.evaluate()
            except Exception as error:  # a diagnostic never ends a fit
                warnings.warn(
                    f"{_OWNER}: epoch {epoch + 1}: the robustness evaluation failed "
                    f"({type(error).__name__}: {error}); logged as NaN.",
                    UserWarning,
                    stacklevel=2,
                )
                values = {key: float("nan") for key in self.log_keys}
        logs.update(values)
        for key, value in values.items():
            self.history.setdefault(key, []).append(value)

    def on_train_end(self, logs=None):
        restore(self.model)

    # Evaluation ------------------------------------------------------------

    def evaluate(self):
        """Clean and robust accuracy on `eval_data`, keyed like the logs."""
        x, _ = self.eval_data
        labels = self._eval_labels
        extractor = feature_extractor(self.model, (), _OWNER)
        values = {self.prefix + "clean_accuracy": _accuracy(extractor, x, labels)}
        for name, attack in self.eval_attacks.items():
            x_adv = attack.generate(self.model, x, labels)
            values[f"{self.prefix}{name}_accuracy"] = _accuracy(extractor, x_adv, labels)
        return values

    # Installation ----------------------------------------------------------

    def _install(self, model, logits_model):
        original_train_step = model.train_step
        original_compute_loss = model.compute_loss
        recipe = self.recipe

        if getattr(recipe, "replays", None):
            step = backend.free_adversarial_train_step(model, recipe, self.seed)
        else:
            step = backend.adversarial_train_step(
                model, logits_model, original_train_step, recipe.transform, self.seed
            )
        # Set on the model only while the adversarial train function runs
        # (and while it is built: JAX captures `train_step` then); from
        # `on_train_begin` to `restore` the model holds the adversarial
        # `train_function` and an instance `make_train_function` only.
        patches = {"train_step": step}

        if recipe.concatenates:

            def compute_loss(x=None, y=None, y_pred=None, sample_weight=None, training=True):
                if not training:
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

            patches["compute_loss"] = compute_loss

        with _patched(model, patches):
            model.make_train_function(force=True)
        adversarial_function = model.train_function

        def train_function(*args, **kwargs):
            try:
                with _patched(model, patches):
                    return adversarial_function(*args, **kwargs)
            except BaseException as error:
                # JAX: weights the failed step took from the variables go back.
                backend.recover_train_state(model, args)
                if not backend.is_end_of_data(error):
                    # The error ends `fit`, which then skips `on_train_end`.
                    restore(model)
                raise

        def make_train_function(trained_model, force=False):
            # Only a later `fit` or `train_on_batch` calls it (`fit` builds
            # its function before `on_train_begin`): after a fit that
            # another callback interrupted, the model trains normally again.
            # (Bound to the model, so that a copy restores itself.)
            restore(trained_model)
            return trained_model.make_train_function(force=force)

        make_train_function._keras_reliability_adversarial = {
            "owner": self,
            "train_function": train_function,
            "saved": model.__dict__.get("make_train_function"),
        }
        model.train_function = train_function
        model.__dict__["make_train_function"] = types.MethodType(make_train_function, model)

    def _check_eval_data(self, eval_data):
        if not isinstance(eval_data, tuple) or len(eval_data) != 2:
            raise ValueError(
                f"{_OWNER}: `eval_data` must be a tuple (x, y) of arrays; received "
                f"{type(eval_data).__name__}."
            )
        if keras.tree.is_nested(eval_data[0]):
            raise ValueError(
                f"{_OWNER}: `eval_data` inputs must be one array; attacks perturb models "
                "with one input."
            )
        x, y = eval_data
        y = np.asarray(ops.convert_to_numpy(y)) if y is not None else None
        if y is None or y.ndim == 0 or (hasattr(x, "__len__") and len(x) != len(y)):
            raise ValueError(
                f"{_OWNER}: `eval_data` must hold as many labels as inputs; received "
                f"{_count(x)} inputs and {_count(y)} labels."
            )
        if self.max_eval_samples is not None:
            x, y = x[: self.max_eval_samples], y[: self.max_eval_samples]
        # The attacks' own check of the rows used: one non-empty batch of
        # finite floats (integer, string or complex inputs refused, not cast).
        return float_inputs(x, _OWNER, "eval_data"), y

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


def _count(values):
    return len(values) if hasattr(values, "__len__") and np.ndim(values) > 0 else repr(values)


def _check_eval_attacks(eval_attacks):
    """`eval_attacks` as a tuple of attack names or objects."""
    if isinstance(eval_attacks, str) or not isinstance(eval_attacks, (list, tuple, type(None))):
        raise ValueError(
            f"{_OWNER}: `eval_attacks` must be a list or tuple of attack names or "
            f"objects; received {eval_attacks!r}"
            + (f" (write ({eval_attacks!r},))." if isinstance(eval_attacks, str) else ".")
        )
    return tuple(eval_attacks or ())


def restore(model):
    """Removes an adversarial train step from `model`, if one is installed.

    Puts back the model's own `make_train_function` and drops the
    adversarial train function (the next `fit` builds the plain one).
    Compiled test and predict functions never saw the patch and are kept.
    """
    state = _installed_state(model)
    if state is None:
        return
    if state["saved"] is None:
        del model.__dict__["make_train_function"]
    else:
        model.__dict__["make_train_function"] = state["saved"]
    if model.__dict__.get("train_function") is state["train_function"]:
        model.train_function = None


def _installed_state(model):
    installed = getattr(model, "__dict__", {}).get("make_train_function")
    return getattr(installed, "_keras_reliability_adversarial", None)


@contextlib.contextmanager
def _patched(model, patches):
    """Sets instance attributes of `model` for the duration of the block."""
    saved = {name: model.__dict__[name] for name in patches if name in model.__dict__}
    model.__dict__.update(patches)
    try:
        yield
    finally:
        for name in patches:
            if name in saved:
                model.__dict__[name] = saved[name]
            else:
                model.__dict__.pop(name, None)


def _overrides_compute_loss(model):
    return type(model).compute_loss is not keras.Model.compute_loss


def _accuracy(extractor, x, labels):
    logits = extractor.predict(x, batch_size=256).logits
    return float(np.mean(np.argmax(logits, axis=1) == labels))
