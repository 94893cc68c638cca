"""Reading a user's array argument as a real numpy array, or refusing it."""

import keras
import numpy as np
from keras import ops


def _dtype_name(dtype):
    """Keras' name of a numpy or backend dtype; None for strings and objects."""
    try:
        return keras.backend.standardize_dtype(dtype)
    except ValueError:
        return None


def is_float_dtype(dtype):
    """Whether a numpy or backend dtype is floating, bfloat16 and float8 included."""
    name = _dtype_name(dtype)
    return name is not None and name.startswith(("float", "bfloat"))


def is_real_dtype(dtype):
    """Whether a numpy or backend dtype holds real numbers: bool, integers, floats."""
    name = _dtype_name(dtype)
    return name is not None and (name == "bool" or name.startswith(("int", "uint"))
                                 or is_float_dtype(dtype))


def real_array(value, name, owner=None):
    """`value` (an array, a backend tensor or nested lists) as a real numpy array.

    Raises:
        ValueError: naming `name` for None, strings, dicts, ragged lists,
            objects and complex numbers (whose imaginary part a cast to
            float would drop silently).
    """
    prefix = f"{owner}: " if owner else ""
    if value is None:
        raise ValueError(f"{prefix}`{name}` is required; received None.")
    if isinstance(value, (str, bytes, dict)):
        raise ValueError(f"{prefix}`{name}` must be an array of numbers; received {value!r}.")
    try:
        array = value if isinstance(value, np.ndarray) else np.asarray(ops.convert_to_numpy(value))
    except Exception as error:  # ragged lists, objects the backend cannot read
        raise ValueError(
            f"{prefix}`{name}` must be an array of numbers; could not read it "
            f"({type(error).__name__}: {error})."
        ) from None
    if not is_real_dtype(array.dtype):
        raise ValueError(
            f"{prefix}`{name}` must hold real numbers; received dtype {array.dtype}."
        )
    return array
