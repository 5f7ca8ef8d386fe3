"""Host-side int8 quantization helpers (spec section 1).

Activations are per-tensor affine int8; weights are symmetric int8 with one scale per output
channel. Everything is computed in float32, as the GPU epilogue is, with round-half-to-even.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import check_scale, check_zero_point, real_array


def _float_array(name: str, x: Any) -> np.ndarray:
    """x as a float32 array; a TypeError naming x for anything that is not real numbers."""
    a = real_array(name, x)
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32 becomes inf: callers check
        return a.astype(np.float32, copy=False)


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Quantize real values to per-tensor affine int8.

    q = clamp(round_half_even(x / scale) + zero_point, -128, 127), in float32.

    Args:
        x: real values, any shape (cast to float32). NaN is rejected; +-inf saturate.
        scale: real units per int8 step; finite, > 0 as float32.
        zero_point: the int8 value that represents 0.0, in [-128, 127].

    Returns:
        int8 array with the shape of x.
    """
    s = np.float32(check_scale("scale", scale))
    zp = check_zero_point("zero_point", zero_point)
    x32 = _float_array("x", x)
    if np.isnan(x32).any():
        raise ValueError("x must not contain NaN")
    with np.errstate(over="ignore"):  # x/scale may overflow to inf; clipping saturates it
        q = np.rint(x32 / s) + np.float32(zp)
    return np.clip(q, -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Map int8 values back to real units: (q - zero_point) * scale, as float32.

    Args:
        q: int8 array, any shape (TypeError for any other dtype).
        scale: real units per step; finite, > 0 as float32.
        zero_point: in [-128, 127].

    Returns:
        float32 array with the shape of q.
    """
    s = np.float32(check_scale("scale", scale))
    zp = check_zero_point("zero_point", zero_point)
    if not isinstance(q, np.ndarray):
        raise TypeError(f"q must be a numpy.ndarray of dtype int8, got {type(q).__name__}")
    if q.dtype != np.int8:
        raise TypeError(f"q must have dtype int8, got {q.dtype}")
    # q - zp lies in [-255, 255]: exact in float32, so only the final multiply rounds.
    return (q.astype(np.int32) - zp).astype(np.float32) * s


def quantize_weights(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel int8 quantization of conv weights.

    scale[oc] = max|w[oc]| / 127 (float32); q = clamp(round_half_even(w / scale[oc]), -127, 127).
    A channel that is all zeros (or whose scale underflows float32) gets scale 1.0 and q = 0.

    Args:
        w: real weights [C_out, ...] (typically [C_out, C_in/groups, KH, KW]); axis 0 is the
           output channel. Must be finite in float32.

    Returns:
        (q, scale): q int8 with the shape of w; scale float32 [C_out], every entry > 0.
    """
    w32 = _float_array("w", w)
    if w32.ndim < 1 or w32.shape[0] < 1:
        raise ValueError(f"w must have at least one output channel on axis 0, got {w32.shape}")
    if not np.all(np.isfinite(w32)):
        raise ValueError("w must be finite (found NaN or inf, or a value beyond float32)")
    flat = w32.reshape(w32.shape[0], -1)
    amax = np.abs(flat).max(axis=1) if flat.shape[1] else np.zeros(flat.shape[0], np.float32)
    scale = (amax / np.float32(127)).astype(np.float32)
    # scale must stay a valid (> 0) quantization scale; such a channel quantizes to all zeros.
    scale[scale == 0] = np.float32(1.0)
    q = np.clip(np.rint(flat / scale[:, None]), -127, 127).astype(np.int8)
    return q.reshape(w32.shape), scale


def activation_bounds(activation: str, inv_s_out: float, output_zero_point: int) -> tuple[int, int]:
    """The int8 bounds an activation clamps a quantized output to: relu's 0 and relu6's 6
    quantized as a kernel quantizes (float32 value * float32 inv_s_out, rounded half to even,
    + zp, clamped); (-128, 127) for "none". Rounding is monotonic, so clamping q to them gives
    the bytes of clamping the float value before quantizing."""
    lo = -128 if activation == "none" else output_zero_point
    hi = 127
    if activation == "relu6":
        hi = int(np.clip(np.rint(np.float32(6.0) * np.float32(inv_s_out)) + output_zero_point, -128, 127))
    return lo, hi
