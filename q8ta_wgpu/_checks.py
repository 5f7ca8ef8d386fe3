"""Argument checks shared by the public API: each raises a ValueError/TypeError that names
the argument and the rule it broke."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def check_scale(name: str, value: Any) -> float:
    """A quantization scale: a finite float32 > 0. Returns it as a Python float (float32-rounded)."""
    if isinstance(value, (str, bytes, bool, np.bool_)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}") from None
    with np.errstate(over="ignore"):
        f32 = float(np.float32(v))
    if not math.isfinite(v) or not math.isfinite(f32):
        raise ValueError(f"{name} must be finite, got {v}")
    if f32 <= 0.0:
        raise ValueError(f"{name} must be > 0 (as float32), got {v}")
    return f32


def check_zero_point(name: str, value: Any) -> int:
    """An int8 zero point: an integer in [-128, 127]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise TypeError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if not -128 <= v <= 127:
        raise ValueError(f"{name} must be in [-128, 127], got {v}")
    return v


def check_int8_array(name: str, x: Any, ndim: int | None = None) -> np.ndarray:
    """A numpy int8 array of the given rank; non-contiguous or read-only arrays are copied."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of dtype int8, got {type(x).__name__}")
    if x.dtype != np.int8:
        raise TypeError(f"{name} must have dtype int8, got {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {x.shape}")
    return np.ascontiguousarray(x)


def real_array(name: str, x: Any, what: str = "real numbers") -> np.ndarray:
    """x as a numpy array of real numbers (float, int or uint dtype; not bool or complex); a
    TypeError "<name> must be an array of <what>" for anything else."""
    try:
        a = np.asarray(x)
    except Exception:  # noqa: BLE001 - anything numpy cannot read is a type error here
        raise TypeError(f"{name} must be an array of {what}") from None
    if a.dtype.kind not in "fiu" or a.dtype == np.bool_:
        raise TypeError(f"{name} must be an array of {what}, got dtype {a.dtype}")
    return a


def check_float_vector(name: str, x: Any, length: int, *, positive: bool = False) -> np.ndarray:
    """A float vector of the given length, finite (and > 0 with positive=True), as float32."""
    a = real_array(name, x, "floats")
    if a.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {a.shape}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    if positive and not np.all(a > 0):
        raise ValueError(f"{name} must be > 0 everywhere")
    return a


def check_scale_product(input_scale: float | np.floating, weight_scales: np.ndarray) -> np.ndarray:
    """input_scale * weight_scales in float32 (the epilogue's per-channel scale): finite and > 0."""
    with np.errstate(over="ignore", under="ignore"):
        prod = np.float32(input_scale) * weight_scales.astype(np.float32)
    if not np.all(np.isfinite(prod)) or not np.all(prod > 0):
        raise ValueError(
            "input_scale * weight_scales must be a finite float32 > 0 for every channel "
            f"(got range [{prod.min()}, {prod.max()}])"
        )
    return prod


def check_keywords(function: str, given: Mapping[str, object], options: Any) -> None:
    """The checks Python makes of declared keyword parameters, for a `**options:
    Unpack[SomeOptions]` parameter (where it makes none): no keyword that the TypedDict
    `options` lacks, none of its required keys missing; TypeErrors worded as Python's."""
    known = options.__required_keys__ | options.__optional_keys__
    for name in given:
        if name not in known:
            raise TypeError(f"{function}() got an unexpected keyword argument {name!r}")
    missing = [repr(k) for k in options.__annotations__ if k in options.__required_keys__ and k not in given]
    if missing:
        if len(missing) < 3:
            names = " and ".join(missing)
        else:
            names = ", ".join(missing[:-1]) + f", and {missing[-1]}"
        plural = "s" if len(missing) > 1 else ""
        raise TypeError(
            f"{function}() missing {len(missing)} required keyword-only argument{plural}: {names}"
        )


# What an op may fuse after itself, applied to the float value before requantizing (relu6 is
# PyTorch's hardtanh(0, 6)).
ACTIVATIONS = ("none", "relu", "relu6")


def check_activation(activation: Any) -> str:
    """`activation` if it is one of ACTIVATIONS: TypeError if not a str, else ValueError."""
    if not isinstance(activation, str):
        raise TypeError(f"activation must be a str, got {type(activation).__name__}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    return activation
