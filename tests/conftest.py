"""Shared test fixtures: the real reference data and backend facts.

Backend-independent tests run once. scripts/test.sh runs the suite once per
Keras backend, but the tests listed in `BACKEND_INDEPENDENT` below never
reach a backend tensor (pure numpy, scikit-learn, matplotlib, HTML, the
registry: no `keras.ops`, layer, variable, model or tensor conversion on
their path), so every backend would give the same result. scripts/test.sh
sets `KERAS_RELIABILITY_SKIP_BACKEND_INDEPENDENT=1` on every leg but one (the
PyTorch leg when it runs), and there they are deselected (not skipped: they
count nowhere). A plain `pytest` run under any backend runs them all.

The list is measured, not guessed: `scripts/audit_tests.py` counts the
PyTorch calls of every test under `KERAS_BACKEND=torch`, where every backend
operation is one, and a test belongs in the list only with none (and no test
code that branches on the backend). Whenever the listed tests run on
PyTorch, a guard fails any of them that makes a PyTorch call (in the test or
in a fixture set up for it), so the list cannot silently go wrong; a name
that is no longer in its file (a renamed test) gets a warning. A test not
listed runs on every backend: the safe default for new tests.
"""

import collections
import functools
import os
import pathlib
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Distribution tests need two devices. On JAX the host platform is split in
# two before XLA initialises (computations still default to the first).
if os.environ.get("KERAS_BACKEND") == "jax" and "device_count" not in os.environ.get(
    "XLA_FLAGS", ""
):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    ).strip()

import keras  # noqa: E402
import pytest  # noqa: E402

_DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
DATA_DIR = pathlib.Path(os.environ.get("KERAS_RELIABILITY_DATA", _DEFAULT_DATA))

BACKEND = keras.backend.backend()

# On TensorFlow the CPU is split into two logical devices before TensorFlow
# initialises its runtime (one device is still the default, so other tests
# are unaffected).
if BACKEND == "tensorflow":
    import tensorflow as tf

    try:
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0],
            [tf.config.LogicalDeviceConfiguration()] * 2,
        )
    except RuntimeError:  # already initialised (e.g. by a plugin): tests skip
        pass


def data_path(*parts):
    """Path into the shared reference data; skips the test when it is absent."""
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"reference data {path} is absent (set KERAS_RELIABILITY_DATA to "
            "the shared/data folder to run this test)"
        )
    return path


@pytest.fixture(scope="session")
def shuffled_digits():
    """scikit-learn's digits as flat 64-vectors in [0, 1], shuffled (seed 0): `(x, y)`."""
    datasets = pytest.importorskip("sklearn.datasets")
    import numpy as np

    data = datasets.load_digits()
    order = np.random.default_rng(0).permutation(len(data.target))
    return (data.data[order] / 16.0).astype("float32"), data.target[order].astype("int32")


@pytest.fixture
def densenet40_logits():
    """Kull et al.'s DenseNet-40 CIFAR-10 logits: (val, y_val, test, y_test)."""
    import pickle

    path = data_path("markus93_densenet40_c10_logits", "probs_densenet40_c10_logits.p")
    with open(path, "rb") as file:
        (val, y_val), (test, y_test) = pickle.load(file, encoding="latin1")
    return val, y_val.ravel(), test, y_test.ravel()


@functools.lru_cache(maxsize=None)
def _mnist_data():
    """examples/mnist_data.py, the loaders the examples use (one copy of them)."""
    import importlib.util

    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "mnist_data.py"
    spec = importlib.util.spec_from_file_location("mnist_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def idx_images(folder):
    """`(x, y)` of an IDX test set in ../shared/data: x (N, 28, 28, 1) in [0, 1]."""
    return _mnist_data().load_idx(data_path(folder))


@pytest.fixture(scope="session")
def mnist_test_images():
    """The 10,000 MNIST test images, pixels / 255, shape (N, 28, 28, 1)."""
    return idx_images("mnist_test_idx")


@pytest.fixture(scope="session")
def notmnist_test_images():
    """10,000 notMNIST letters (an OOD set for MNIST), pixels / 255."""
    return idx_images("notmnist_test_idx")


@pytest.fixture(scope="session")
def small_mnist_cnn():
    """Builder of the examples' compiled MNIST CNN: `small_mnist_cnn(seed, dropout=None)`."""
    return _mnist_data().small_cnn


@pytest.fixture(scope="session")
def wong2020_mnist_model():
    """Builder of Wong et al. (2020)'s adversarially trained MNIST CNNs."""
    return _wong2020_mnist_model


def _wong2020_mnist_model(name):
    """Wong et al. (2020)'s adversarially trained MNIST CNN as a Keras model.

    `name` is "fgsm" or "pgd_madry"; logits out (see examples/mnist_data.py).
    """
    return _mnist_data().wong2020_model(data_path("wong2020_mnist_models"), name)


# ---------------------------------------------------------------------------
# Backend-independent tests: run once per scripts/test.sh run (see the module
# docstring). Test file -> names of its test functions (every parametrized
# case of each). Measured with scripts/audit_tests.py (no PyTorch call in the
# test, its fixtures or its module) and read: no test here starts a
# subprocess that imports the package under the backend, uses TensorFlow
# directly, builds a Keras layer, model or metric (even only to raise), reads
# a result cached by a backend test, or branches on the backend. New tests
# are not listed, so they run on every backend until measured.
# ---------------------------------------------------------------------------

BACKEND_INDEPENDENT = {
    # Smooth ECE is numpy (kernel smoothing, checked against relplot).
    "tests/metrics/test_smooth_ece.py": (
        "test_smooth_matches_relplot_automatic_bandwidth",
        "test_smooth_matches_relplot_fixed_bandwidth",
        "test_smooth_matches_relplot_edge_cases",
        "test_smooth_automatic_bandwidth_is_fixed_point_bracket",
        "test_smooth_perfectly_calibrated_is_small",
        "test_smooth_large_input_uses_bounded_memory",
        "test_smooth_constant_overconfident_predictor",
        "test_smooth_constant_predictor_with_sampled_outcomes",
        "test_smooth_returns_python_floats_and_accepts_lists",
        "test_smooth_outcome_dtypes_are_equivalent",
        "test_smooth_bandwidth_changes_value",
        "test_smooth_integer_weights_equal_repetition",
        "test_smooth_unit_weights_equal_unweighted",
        "test_smooth_zero_weights_drop_examples",
        "test_smooth_fractional_weights_matter",
        "test_smooth_rejects_bad_scores_and_outcomes",
        "test_smooth_rejects_bad_bandwidth",
        "test_smooth_accepts_numpy_scalar_bandwidth",
        "test_smooth_rejects_bad_sample_weight",
    ),
    # AUROC, AUPR, FPR@TPR, ROC: numpy, checked against scikit-learn on
    # fixed arrays (not test_backend_tensors_are_accepted).
    "tests/metrics/test_ood_metrics.py": (
        "test_scores_have_ties_within_and_across_sets",
        "test_auroc_equals_sklearn",
        "test_aupr_in_equals_sklearn",
        "test_aupr_out_equals_sklearn",
        "test_fpr_at_tpr_equals_sklearn_roc_curve",
        "test_roc_curve_equals_sklearn",
        "test_detection_error_equals_minimum_over_sklearn_roc",
        "test_continuous_scores_equal_sklearn",
        "test_perfectly_separated_scores",
        "test_swapped_scores",
        "test_higher_score_means_more_ood",
        "test_auroc_counts_ties_half",
        "test_detection_error_hand_computed",
        "test_detection_error_hand_computed_with_ties",
        "test_fpr_at_tpr_threshold_and_pessimistic_ties",
        "test_aupr_hand_computed",
        "test_roc_curve_hand_computed",
        "test_sets_constant_but_different_are_not_degenerate",
        "test_constant_scores_give_nan_and_warn",
        "test_constant_scores_evaluate_ood_all_nan_one_warning",
        "test_constant_scores_roc_curve_is_diagonal_with_warning",
        "test_empty_scores_in_raises",
        "test_empty_scores_out_raises",
        "test_wrong_shape_raises_with_shape",
        "test_column_vectors_are_accepted",
        "test_non_finite_scores_raise",
        "test_non_numeric_scores_raise",
        "test_invalid_tpr_raises",
        "test_evaluate_ood_equals_individual_functions",
        "test_evaluate_ood_names_fpr_key_after_tpr",
        "test_evaluate_ood_counts_scores_once",
        "test_lists_are_accepted",
        "test_two_million_scores_are_fast",
    ),
    # Synthetic OOD sets are numpy (not the two tests that pass backend tensors).
    "tests/ood/test_synthetic.py": (
        "test_every_kind_keeps_shape_and_is_float32",
        "test_integer_input_is_accepted_and_matches_float_input",
        "test_input_is_not_modified",
        "test_values_stay_within_explicit_value_range",
        "test_value_range_is_inferred_from_the_data",
        "test_same_seed_gives_identical_arrays",
        "test_different_seeds_give_different_noise",
        "test_no_seed_gives_fresh_noise",
        "test_a_kind_does_not_depend_on_the_other_kinds_requested",
        "test_global_numpy_rng_is_left_alone",
        "test_blur_smooths_real_images_more_with_severity",
        "test_blur_spreads_a_bright_pixel_and_keeps_its_total",
        "test_blur_keeps_channels_apart",
        "test_blur_matches_scipy_gaussian_filter",
        "test_contrast_scales_each_example_std_by_the_factor",
        "test_contrast_uses_each_examples_own_mean",
        "test_noise_std_matches_the_table",
        "test_noise_scales_with_the_range_and_is_added_to_x",
        "test_gaussian_noise_has_the_data_statistics_but_not_its_content",
        "test_gaussian_noise_is_clipped_to_the_range",
        "test_uniform_noise_ignores_x_and_covers_the_range",
        "test_non_image_data_skips_blur_by_default",
        "test_non_image_data_raises_when_blur_is_named",
        "test_channels_first_images_warn_when_blurred",
        "test_kinds_order_and_repeats",
        "test_bad_x_raises",
        "test_bad_severity_raises",
        "test_numpy_integer_severity_is_accepted",
        "test_bad_kinds_raise",
        "test_bad_value_range_raises",
        "test_constant_x_needs_an_explicit_value_range",
        "test_bad_seed_raises",
        "test_description_of_the_default_sets",
        "test_description_follows_the_tables_and_the_sets_built",
    ),
    # matplotlib drawings of numpy bins and histories. Not
    # test_from_labels_and_predictions (computes the bins with keras.ops) nor the
    # subprocesses that import the whole package under the backend
    # (test_import_does_not_load_matplotlib, test_missing_matplotlib_error_message);
    # test_plotting_package_alone_does_not_load_matplotlib's subprocess asserts
    # that Keras stays unimported.
    "tests/plotting/test_plotting.py": (
        "test_accuracy_bars_one_per_filled_bin",
        "test_gap_bars_span_accuracy_to_confidence",
        "test_identity_line_and_axes",
        "test_ece_text_matches_bins",
        "test_histogram_fractions_and_average_lines",
        "test_without_histogram_and_with_title",
        "test_single_filled_bin_renders",
        "test_no_examples_raises",
        "test_inconsistent_bins_raise",
        "test_neither_bins_nor_data_raises",
        "test_missing_y_pred_raises",
        "test_bins_and_data_raises",
        "test_wrong_bins_type_raises",
        "test_forwards_arguments_to_reliability_bins",
        "test_figure_to_png_returns_png_bytes",
        "test_figure_to_png_bad_arguments",
        "test_save_figure",
        "test_history_default_keys_and_data",
        "test_history_calibration_error_suffix",
        "test_history_explicit_keys",
        "test_history_all_nan_key",
        "test_history_keras_history_object",
        "test_history_missing_key_raises",
        "test_history_without_calibration_keys_raises",
        "test_history_empty_keys_raises",
        "test_history_wrong_type_raises",
        "test_plotting_package_alone_does_not_load_matplotlib",
    ),
    # matplotlib drawings of numpy scores (not test_histogram_accepts_backend_tensors).
    "tests/plotting/test_ood_plots.py": (
        "test_histogram_two_sets_of_bars_with_shared_edges",
        "test_histogram_is_density_normalised",
        "test_histogram_legend_holds_labels_and_auroc",
        "test_histogram_title_and_default_labels",
        "test_histogram_draws_into_given_axes",
        "test_histogram_to_png",
        "test_histogram_bad_arguments",
        "test_histogram_constant_scores_warn",
        "test_roc_one_line_per_entry_plus_diagonal",
        "test_roc_lines_are_the_curves_and_labels_hold_auroc",
        "test_roc_axes_labels_limits_and_title",
        "test_roc_draws_into_given_axes",
        "test_roc_to_png",
        "test_roc_bad_arguments",
    ),
    # matplotlib drawings of history dicts.
    "tests/plotting/test_metric_history.py": (
        "test_one_panel_per_key_with_its_finite_values",
        "test_chosen_keys_in_order_and_a_key_never_computed",
        "test_keras_history_object",
        "test_bad_arguments",
        "test_history_must_be_a_dict_or_history",
    ),
    # matplotlib drawings of accuracy-vs-epsilon numbers.
    "tests/plotting/test_robustness_curve.py": (
        "test_single_curve_plots_accuracy_against_sorted_epsilons",
        "test_several_curves_get_one_line_and_a_legend_entry_each",
        "test_draws_into_a_given_axes",
        "test_bad_input_raises_naming_the_argument",
    ),
    # matplotlib drawings of a PredictiveUncertainty built from numpy samples.
    "tests/plotting/test_uncertainty_bands.py": (
        "test_bars_are_mean_probabilities",
        "test_whiskers_span_the_interval",
        "test_whisker_reaches_mean_outside_interval",
        "test_predicted_class_bar_is_highlighted",
        "test_class_names_are_tick_labels",
        "test_default_tick_labels_are_class_indices",
        "test_default_title_reports_entropies",
        "test_custom_title",
        "test_negative_index_counts_from_the_end",
        "test_figsize",
        "test_figure_to_png",
        "test_result_must_be_predictive_uncertainty",
        "test_index_out_of_range",
        "test_index_must_be_int",
        "test_wrong_number_of_class_names",
        "test_bad_level",
    ),
    # matplotlib drawings of a PredictiveUncertainty built from numpy samples.
    "tests/plotting/test_uncertainty_examples.py": (
        "test_one_row_per_example_image_beside_its_bars",
        "test_flat_inputs_are_drawn_with_image_shape",
        "test_without_inputs_only_the_bars",
        "test_bad_arguments",
        "test_bands_draw_into_a_given_axes",
    ),
    # The plugin registry: plain Python objects and entry points (not
    # test_registry_doctest_examples_run, whose examples compute metrics).
    "tests/test_registry.py": (
        "test_registry_register_returns_object_and_get_by_name",
        "test_registry_default_name_is_dunder_name",
        "test_registry_get_object_does_not_instantiate",
        "test_registry_get_config_dict_uses_from_config",
        "test_registry_get_config_dict_without_from_config",
        "test_registry_get_config_dict_for_function",
        "test_registry_get_config_dict_missing_class_name",
        "test_registry_get_class_instance_and_callable_passthrough",
        "test_registry_duplicate_name_raises_unless_override",
        "test_registry_reregistering_reloaded_definition_is_allowed",
        "test_registry_same_name_in_different_kinds_is_independent",
        "test_registry_unknown_kind_error",
        "test_registry_unknown_name_lists_available",
        "test_registry_unknown_name_mentions_failed_plugins",
        "test_registry_available_is_sorted",
        "test_registry_get_rejects_unsupported_identifiers",
        "test_registry_bad_arguments_name_argument_and_value",
        "test_registry_register_checks_the_contract_of_the_kind",
        "test_registry_register_accepts_objects_meeting_the_contract",
        "test_registry_every_registered_entry_meets_its_contract",
        "test_registry_overriding_a_builtin_warns",
        "test_registry_plugin_named_like_the_package_is_not_builtin",
        "test_registry_docstrings_have_examples",
        "test_registry_fenced_examples_run",
        "test_registry_plugins_loaded_from_entry_points",
        "test_registry_plugins_not_loaded_by_register",
        "test_registry_plugins_loaded_once_across_threads",
        "test_registry_failing_plugins_are_isolated_and_rolled_back",
        "test_registry_keyboard_interrupt_in_a_plugin_propagates",
    ),
    # Log-folder checks and atomic file writes (not the two TensorBoard tests:
    # event files are written with TensorFlow, which is kept off the GPU unless
    # it is the backend).
    "tests/faults/test_log_dir.py": (
        "test_check_log_dir_creates_the_directory_and_leaves_nothing_in_it",
        "test_check_log_dir_refuses_a_file_in_place_of_the_folder",
        "test_check_log_dir_refuses_a_path_under_a_file",
        "test_check_log_dir_refuses_what_is_not_a_path",
        "test_check_log_dir_refuses_a_read_only_file_system",
        "test_check_log_dir_refuses_a_full_file_system",
        "test_write_atomically_writes_bytes_and_text",
        "test_write_atomically_failure_keeps_the_old_file_and_no_temporary",
        "test_write_atomically_on_a_full_disk_keeps_the_old_file_and_no_temporary",
        "test_save_png_writes_the_file",
        "test_save_png_warns_when_the_write_fails_and_keeps_the_old_file",
        "test_save_png_on_a_full_disk_warns_and_leaves_no_truncated_file",
        "test_save_png_warns_when_log_dir_is_gone",
        "test_save_figure_infers_the_format_and_leaves_no_temporary",
        "test_save_figure_into_a_missing_directory_names_filepath",
        "test_save_figure_failure_keeps_the_old_file",
        "test_save_figure_on_a_full_disk_raises_and_leaves_no_truncated_file",
        "test_write_report_refuses_an_unwritable_log_dir",
        "test_write_report_raises_when_the_write_fails",
    ),
    # PredictiveUncertainty statistics of numpy samples and their argument checks
    # (not test_not_a_model_raises, which passes a Keras layer).
    "tests/test_uncertainty.py": (
        "test_statistics_match_independent_formulas",
        "test_identical_samples_have_no_epistemic_uncertainty",
        "test_one_hot_samples_entropy_zero_log_zero",
        "test_interval_is_central_quantile",
        "test_interval_rejects_bad_level",
        "test_interval_accepts_numpy_float_level",
        "test_samples_must_be_three_dimensional",
    ),
    # The reference logits themselves, and argument checks that raise before
    # any conversion.
    "tests/metrics/test_calibration_functional.py": (
        "test_functional_densenet40_test_error",
        "test_functional_bad_num_bins_raise",
        "test_functional_bad_binning_raises",
    ),
    # ReliabilityReport's argument checks and config, without a model.
    "tests/report/test_reliability_report.py": (
        "test_bad_arguments_raise_naming_them",
        "test_subclasses_of_the_reliability_callbacks_are_drawn",
        "test_config_round_trip",
    ),
    # Argument checks and configs of callbacks, recipes, scorers and priors:
    # plain objects, no model, layer or tensor (those that build a layer or a
    # model, even to raise, stay on every backend).
    "tests/callbacks/test_calibration_callback.py": (
        "test_callback_rejects_bad_arguments",
        "test_callback_rejects_bad_validation_data",
        "test_callback_config_round_trip",
    ),
    "tests/callbacks/test_ood_monitor.py": (
        "test_feature_scorers_need_fit_data",
        "test_mahalanobis_needs_labels_in_fit_data",
        "test_plot_every_without_log_dir_raises",
        "test_rejects_bad_arguments",
        "test_ood_set_with_another_example_shape_is_rejected",
        "test_config_round_trip",
    ),
    "tests/callbacks/test_adversarial_training.py": (
        "test_unknown_recipe_lists_the_available_ones",
        "test_callback_is_registered_serializable",
        "test_recipe_registry_and_config_round_trip",
        "test_recipe_argument_errors",
    ),
    "tests/ood/test_scorers.py": (
        "test_feature_layer_of_wrong_type",
        "test_invalid_arguments_are_named",
        "test_registry_gives_the_right_class",
        "test_registry_config_dict_keeps_arguments",
        "test_config_round_trip",
        "test_keras_serialization_round_trip",
    ),
    "tests/layers/test_priors.py": (
        "test_scale_mixture_has_no_closed_form_kl",
        "test_scale_mixture_defaults",
        "test_prior_base_log_prob_is_abstract",
        "test_prior_argument_errors",
        "test_priors_accept_numpy_scalars_like_their_other_arguments",
        "test_prior_keras_serialization_round_trip",
        "test_prior_repr_lists_config",
        "test_get_none_is_standard_normal",
        "test_get_returns_instances_unchanged",
    ),
    # A numpy helper and the sample_groups context (not the layers).
    "tests/layers/test_variational_layers.py": (
        "test_untransformed_scale_inverts_the_softplus_parameterisation",
        "test_sample_groups_argument_and_context",
        "test_sample_groups_accepts_numpy_integers",
    ),
    "tests/training/test_recipes.py": (
        "test_mix_weights_the_clean_and_adversarial_losses",
    ),
}

SKIP_BACKEND_INDEPENDENT = os.environ.get("KERAS_RELIABILITY_SKIP_BACKEND_INDEPENDENT") == "1"

# Tests that reach a backend but whose point is not the backend run on one
# leg only: the reproductions of published numbers on real data (each tool's
# backend paths are covered on every backend by its unit tests, the
# conformance matrix and the fault suite), the argument fuzz suite
# (thousands of generated calls), the checks of what a fresh interpreter's
# import loads (subprocesses), and bayesianize on keras.applications graphs
# (a graph rewrite; tested on small graphs on every backend). Each node-id
# prefix names the backend where it runs fastest here; scripts/test.sh lists
# its legs in KERAS_RELIABILITY_LEGS, and a prefix whose backend is not among
# them runs on the first leg. Unset, every leg runs them all.
ONE_BACKEND = {
    "tests/fuzz/": "torch",
    "tests/ood/test_ood_real_data.py": "torch",
    "tests/layers/test_bayesian_real_data.py": "tensorflow",
    "tests/attacks/test_attacks_real_models.py": "jax",
    "tests/layers/test_bayesianize_graphs.py::test_keras_applications_keep_their_predictions": (
        "tensorflow"
    ),
    "tests/plotting/test_plotting.py::test_import_does_not_load_matplotlib": "jax",
    "tests/plotting/test_plotting.py::test_missing_matplotlib_error_message": "jax",
    "tests/metrics/test_calibration_functional.py::test_functional_import_does_not_import_tfp": (
        "jax"
    ),
    "tests/metrics/test_calibration_functional.py::test_functional_works_without_matplotlib": (
        "jax"
    ),
    "plugins/gradnorm/tests/test_gradnorm.py::test_the_registry_finds_it_without_an_import": (
        "jax"
    ),
    "plugins/histogram_binning/tests/test_histogram_binning.py::test_the_registry_finds_it_without": (
        "jax"
    ),
}
_LEGS = os.environ.get("KERAS_RELIABILITY_LEGS", "").split()


def _one_backend_leg(prefix):
    preferred = ONE_BACKEND[prefix]
    return preferred if preferred in _LEGS else _LEGS[0]


def runs_elsewhere(nodeid):
    """Whether `nodeid` is a `ONE_BACKEND` test that another leg runs."""
    if not _LEGS:
        return False
    return any(
        nodeid.startswith(prefix) and _one_backend_leg(prefix) != BACKEND
        for prefix in ONE_BACKEND
    )


_ROOT = pathlib.Path(__file__).resolve().parents[1]


def is_backend_independent(nodeid):
    """Whether `BACKEND_INDEPENDENT` lists the test function of `nodeid`."""
    path, _, name = nodeid.partition("::")
    return name.split("[", 1)[0] in BACKEND_INDEPENDENT.get(path, ())


def _warn_about_stale_entries(items):
    """Warns about `BACKEND_INDEPENDENT` names that are not in their file (renamed?).

    Checked against the test modules themselves, not against the collected
    items, so that running part of a file (`-k`, a node id) raises nothing. A
    stale name costs time only (the renamed test runs on every backend), so
    it is a warning, not an error.
    """
    modules = {}
    for item in items:
        module = getattr(item, "module", None)
        if module is not None:
            modules.setdefault(item.nodeid.split("::", 1)[0], module)
    stale = [f"{path} (file)" for path in BACKEND_INDEPENDENT if not (_ROOT / path).is_file()]
    for path, module in modules.items():
        stale += [
            f"{path}::{name}"
            for name in BACKEND_INDEPENDENT.get(path, ())
            if not hasattr(module, name)
        ]
    if stale:
        warnings.warn(
            pytest.PytestConfigWarning(
                "BACKEND_INDEPENDENT in tests/conftest.py names tests that do not exist "
                f"(renamed or removed?): {', '.join(stale)}"
            )
        )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    # tryfirst: checked on the whole collection, before -k / -m deselection.
    _warn_about_stale_entries(items)
    stale = [path for path in ONE_BACKEND if not (_ROOT / path.split("::")[0]).exists()]
    if stale:
        warnings.warn(
            pytest.PytestConfigWarning(
                f"ONE_BACKEND in tests/conftest.py names missing paths: {', '.join(stale)}"
            )
        )
    kept, deselected = [], []
    for item in items:
        skip = (
            SKIP_BACKEND_INDEPENDENT and is_backend_independent(item.nodeid)
        ) or runs_elsewhere(item.nodeid)
        (deselected if skip else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def _torch_guard():
    """A PyTorch function mode that records every PyTorch call made under it."""
    import torch

    class Guard(torch.overrides.TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.calls = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if len(self.calls) < 5:
                self.calls.append(getattr(func, "__qualname__", repr(func)))
            return func(*args, **(kwargs or {}))

    return Guard()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """On PyTorch, a listed test that makes a PyTorch call fails (see the docstring)."""
    if BACKEND != "torch" or not is_backend_independent(item.nodeid):
        return (yield)
    guard = _torch_guard()
    with guard:
        result = yield
    calls = getattr(item, "_backend_calls", []) + guard.calls
    if calls:
        pytest.fail(
            f"{item.nodeid} is listed in BACKEND_INDEPENDENT (tests/conftest.py) but "
            f"made PyTorch calls ({', '.join(calls[:5])}): it depends on the backend, "
            "so it must run on every backend; remove it from the list.",
            pytrace=False,
        )
    return result


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """Guards the fixtures set up for a listed test too (cached ones were set up before)."""
    item = getattr(request, "_pyfuncitem", None)
    if BACKEND != "torch" or item is None or not is_backend_independent(item.nodeid):
        return (yield)
    guard = _torch_guard()
    with guard:
        result = yield
    if guard.calls:
        item._backend_calls = getattr(item, "_backend_calls", []) + guard.calls
    return result


# Fuzz counts (tests/fuzz): kept on the config so that, under pytest-xdist,
# each worker sends its counts to the controller, which prints one table.
FUZZ_COLUMNS = ("tried", "clear error", "equal to reference", "invariant held", "failed")


def pytest_configure(config):
    config.fuzz_counts = collections.defaultdict(collections.Counter)


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["fuzz_counts"] = {
            entry: dict(counts) for entry, counts in session.config.fuzz_counts.items()
        }


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    for entry, counts in getattr(node, "workeroutput", {}).get("fuzz_counts", {}).items():
        node.config.fuzz_counts[entry].update(counts)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    counts = config.fuzz_counts
    if not counts or hasattr(config, "workeroutput"):
        return
    terminalreporter.section(f"fuzz counts (KERAS_BACKEND={BACKEND})")
    width = max([len("entry point")] + [len(entry) for entry in counts])
    header = f"{'entry point':<{width}} " + " ".join(f"{c:>18}" for c in FUZZ_COLUMNS)
    rows = [header, "-" * len(header)]
    total = collections.Counter()
    for entry in sorted(counts):
        total.update(counts[entry])
        cells = " ".join(f"{counts[entry][c]:>18}" for c in FUZZ_COLUMNS)
        rows.append(f"{entry:<{width}} {cells}")
    rows += ["-" * len(header)]
    rows.append(f"{'total':<{width}} " + " ".join(f"{total[c]:>18}" for c in FUZZ_COLUMNS))
    for row in rows:
        terminalreporter.write_line(row)
    terminalreporter.write_line(
        "failed = examples that gave an internal error, an error not naming the "
        "argument, no error, or a number unlike the reference (expected only "
        "inside xfail'ed tests)."
    )
