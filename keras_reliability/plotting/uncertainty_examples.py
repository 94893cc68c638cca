"""A grid of examples, each input beside its Monte-Carlo probabilities."""

import math
import numbers

import numpy as np

from keras_reliability.plotting import _matplotlib
from keras_reliability.plotting.uncertainty_bands import uncertainty_bands


def uncertainty_examples(
    result,
    indices,
    *,
    inputs=None,
    image_shape=None,
    level=0.95,
    class_names=None,
    title=None,
    row_height=2.2,
):
    """Draws several examples' predictive probabilities with their intervals.

    One row per example: the input drawn as an image (when `inputs` are
    images, or `image_shape` says how to view them as one) beside
    `uncertainty_bands` of the example, titled with its predictive entropy
    and epistemic part (mutual information).

    Args:
        result: a `keras_reliability.uncertainty.PredictiveUncertainty`.
        indices: ints, the examples to draw, in order (e.g. the most and the
            least certain).
        inputs: optional inputs `result` was computed on, to draw beside the
            bars. Arrays of shape `(N, H, W)` or `(N, H, W, C)` with C in
            {1, 3} are drawn as images; other shapes need `image_shape`.
        image_shape: optional shape to view each input as an image, e.g.
            `(8, 8)` for flattened 8x8 digits.
        level: probability mass of the intervals, in (0, 1).
        class_names: optional names of the classes for the x axes.
        title: optional title above the grid.
        row_height: height of one row in inches.

    Returns:
        A `matplotlib.figure.Figure` with one bar axes per example (and one
        image axes per example when the inputs are drawn).

    Raises:
        TypeError: if `result` is not a `PredictiveUncertainty`.
        IndexError: if an index is out of range.
        ValueError: if `indices` is empty, `inputs` does not hold one input
            per example, or an input cannot be viewed as `image_shape` or as
            an image.
        ImportError: if matplotlib is not installed.

    Example:

    >>> result = predict_with_uncertainty(model, x_test)
    >>> order = np.argsort(result.predictive_entropy)
    >>> uncertainty_examples(result, [order[0], order[-1]], inputs=x_test).savefig("examples.png")
    """
    from keras_reliability.uncertainty import PredictiveUncertainty

    if not isinstance(result, PredictiveUncertainty):
        raise TypeError(
            "`result` must be a PredictiveUncertainty (from predict_with_uncertainty); "
            f"received {type(result).__name__}."
        )
    indices = _check_indices(indices, len(result))
    if (
        isinstance(row_height, bool)
        or not isinstance(row_height, numbers.Real)
        or not math.isfinite(row_height)
        or row_height <= 0
    ):
        raise ValueError(
            f"`row_height` must be a positive number of inches; received {row_height!r}."
        )
    images = None if inputs is None else _images(inputs, len(result), image_shape)

    columns = 1 if images is None else 2
    figure = _matplotlib.new_figure(
        (7.5 if images is not None else 6.0, row_height * len(indices) + (0.4 if title else 0.0)),
        what="`uncertainty_examples`",
    )
    grid = figure.subplots(
        len(indices),
        columns,
        squeeze=False,
        gridspec_kw={"width_ratios": [1, 4]} if images is not None else None,
    )
    for position, (row, index) in enumerate(zip(grid, indices)):
        bars = row[-1]
        uncertainty_bands(result, index, level=level, class_names=class_names, ax=bars)
        bars.set_title(
            f"#{index}: entropy {result.predictive_entropy[index]:.3f}, "
            f"epistemic {result.epistemic[index]:.3f}",
            fontsize=9,
        )
        if position:
            bars.get_legend().remove()  # One legend, on the first row.
        if images is not None:
            _draw_image(row[0], images[index])
    if title:
        figure.suptitle(title)
    return figure


def looks_like_images(example_shape):
    """Whether examples of this shape draw as images: (H, W), (H, W, 1) or (H, W, 3)."""
    example_shape = tuple(example_shape)
    return len(example_shape) == 2 or (len(example_shape) == 3 and example_shape[-1] in (1, 3))


def _check_indices(indices, count):
    """`indices` as a list of ints in [-count, count), or an error naming it."""
    if isinstance(indices, (str, bytes)) or indices is None:
        raise TypeError(
            f"`indices` must be ints naming examples of `result`; received {indices!r}."
        )
    values = np.atleast_1d(np.asarray(indices, dtype=object)).ravel().tolist()
    if not values:
        raise ValueError("`indices` must name at least one example; received none.")
    for index in values:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(
                f"`indices` must hold ints; received {index!r} (of type "
                f"{type(index).__name__}) in indices={indices!r}."
            )
        if not -count <= index < count:
            raise IndexError(
                f"`indices` names an example `result` does not have: `index` must be "
                f"an int in [0, {count}); received {index!r}."
            )
    return [int(index) for index in values]


def _images(inputs, count, image_shape):
    try:
        inputs = np.asarray(inputs)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"`inputs` must be an array of inputs; could not read it ({error})."
        ) from None
    if inputs.ndim == 0 or inputs.dtype.kind not in "fiub":
        raise ValueError(
            "`inputs` must be an array of numeric inputs, one per example; received "
            f"shape {inputs.shape} and dtype {inputs.dtype}."
        )
    if len(inputs) != count:
        raise ValueError(
            f"`inputs` must hold one input per example of `result` ({count}); "
            f"received {len(inputs)}."
        )
    if image_shape is not None:
        valid = (
            isinstance(image_shape, (tuple, list))
            and 2 <= len(image_shape) <= 3
            and all(
                isinstance(size, (int, np.integer)) and not isinstance(size, bool) and size > 0
                for size in image_shape
            )
        )
        if not valid:
            raise ValueError(
                "`image_shape` must be a shape (H, W) or (H, W, C) of positive ints; "
                f"received image_shape={image_shape!r}."
            )
        image_shape = tuple(int(size) for size in image_shape)
        if int(np.prod(image_shape)) != int(np.prod(inputs.shape[1:])):
            raise ValueError(
                f"Inputs of shape {inputs.shape[1:]} cannot be viewed as "
                f"`image_shape={image_shape}`."
            )
        inputs = inputs.reshape((count,) + image_shape)
    if looks_like_images(inputs.shape[1:]):
        return inputs[..., 0] if inputs.shape[-1] == 1 and inputs.ndim == 4 else inputs
    raise ValueError(
        f"Inputs of shape {inputs.shape[1:]} are not images; pass `image_shape` to view "
        "them as one, or no `inputs`."
    )


def _draw_image(ax, image):
    image = np.asarray(image, dtype=np.float64)
    low, high = np.nanmin(image), np.nanmax(image)
    # Each image on its own scale: inputs may be standardised, not in [0, 1].
    scaled = (image - low) / (high - low) if high > low else np.zeros_like(image)
    ax.imshow(scaled, cmap="gray" if scaled.ndim == 2 else None, vmin=0.0, vmax=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
