"""Monte-Carlo sample groups: T weight samples in one forward pass.

`predict_with_uncertainty` tiles a batch T times and calls the model once
inside `sample_groups(T)`. Layers that draw one weight sample per call (the
Bayesian layers, flipout included) then draw T samples, one per copy of the
batch, instead of reusing one sample for every copy; layers whose noise is
independent per example (dropout) need nothing. The group count is read when a layer is called, that
is while a compiled function is traced, so it is a Python-level setting.
"""

import contextlib
import numbers
import threading

_state = threading.local()


@contextlib.contextmanager
def sample_groups(num_groups):
    """Makes the Bayesian layers draw `num_groups` independent weight samples.

    Inside the context a layer's input holds `num_groups` copies of the batch
    stacked along the first axis; copy `t` uses weight sample `t`.

    Args:
        num_groups: positive int, the number of stacked copies.
    """
    if isinstance(num_groups, bool) or not isinstance(num_groups, numbers.Integral) or num_groups < 1:
        raise ValueError(f"`num_groups` must be a positive integer; received {num_groups!r}.")
    num_groups = int(num_groups)
    previous = num_sample_groups()
    _state.num_groups = num_groups
    try:
        yield
    finally:
        _state.num_groups = previous


def num_sample_groups():
    """The number of stacked sample groups in the current call (1 outside)."""
    return getattr(_state, "num_groups", 1)
