"""Host-side int8 quantization helpers (spec section 1).

Activations are per-tensor affine int8; weights are symmetric int8 with one scale per output
channel. quantize/dequantize/quantize_weights compute in float32 with round-half-to-even; the
requantization of int32 sums (every kernel's) is exact, through the fixed-point forms below.
"""

from __future__ import annotations

from dataclasses import dataclass
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


def activation_bounds(activation: str, output_scale: float, output_zero_point: int) -> tuple[int, int]:
    """The int8 bounds an activation clamps a quantized output to: relu's 0 (the zero point) and
    relu6's 6 quantized exactly (rint(6 / output_scale) + zp, in float64, clamped); (-128, 127)
    for "none". Rounding is monotonic, so clamping the rounded value to them gives the bytes of
    clamping the real value before requantizing."""
    lo = -128 if activation == "none" else output_zero_point
    hi = 127
    if activation == "relu6":
        hi = int(np.clip(np.rint(6.0 / float(output_scale)) + output_zero_point, -128, 127))
    return lo, hi


# ---- exact requantization (kernels/exact_round.wgsl) ------------------------------------------
# Every requantization (conv epilogue, add, average pools) rounds the exact value it stands for,
# v = the int32 sum * M + B in output steps (M, B: the float64 ratios of the scales and bias, as
# the Q/DQ graph evaluated in float64 has them), through a fixed-point form of M and B: the GPU
# computes v in float32 and, where v lies too near a half-integer for float32 to decide, decides
# with 64-bit integer arithmetic. The bytes are then the same on every adapter and equal the numpy
# reference. Bounds: M < 2^16 and |B| < 2^16 output steps (the host checks; a conv channel's
# larger B saturates it for every input and is clipped to 2^16, which saturates it alike).
MULTIPLIER_BITS = 30  # m in [2^29, 2^30]: M to 2^-30 relative
MAX_SHIFT = 60  # so that |x*m| + bf < 2^62 for |x| < 2^31
MAX_MULTIPLIER = 2.0**16
MAX_OFFSET = 2.0**16


def fixed_multipliers(
    name: str, multipliers: Any, shift: Any = None, max_shift: int = MAX_SHIFT
) -> tuple[np.ndarray, np.ndarray]:
    """Positive float64 multipliers M as (m, e), int64 arrays, M ~ m * 2^-e: e puts m = rint(M *
    2^e) in [2^29, 2^30] (at most max_shift: a tiny M then keeps fewer bits), or is `shift` where
    given (one shift shared by an add's two multipliers). A ValueError naming `name` for an M
    that is not finite, not > 0, or >= 2^16 (one accumulator step worth 2^16 output steps)."""
    mult = np.asarray(multipliers, np.float64)
    if not np.all(np.isfinite(mult)) or not np.all(mult > 0) or np.any(mult >= MAX_MULTIPLIER):
        raise ValueError(
            f"{name} must be finite, > 0 and < 2^16 for every channel (got range [{mult.min()}, {mult.max()}])"
        )
    if shift is None:
        _, exponent = np.frexp(mult)  # mult = f * 2^exponent, f in [0.5, 1)
        shift = np.minimum(MULTIPLIER_BITS - exponent, max_shift)
    e = np.broadcast_to(np.asarray(shift, np.int64), mult.shape)
    return np.rint(np.ldexp(mult, e.astype(np.int32))).astype(np.int64), e.astype(np.int64)


def fixed_offsets(name: str, offsets: Any, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 offsets B (output steps) as (bi, bf), int64: B ~ bi + bf * 2^-e, bi = floor(B),
    0 <= bf < 2^e, bf a multiple of 2^(e - 32) where e > 32 (its 32 high bits are what a record
    holds: B to 2^-33). A ValueError naming `name` where |B| >= 2^16."""
    b = np.broadcast_to(np.asarray(offsets, np.float64), e.shape)
    if not np.all(np.isfinite(b)) or np.any(np.abs(b) >= MAX_OFFSET):
        raise ValueError(
            f"{name} / output_scale must be finite and below 2^16 in magnitude (got range [{b.min()}, {b.max()}])"
        )
    bi = np.floor(b)
    bits = np.minimum(e, 32)
    bf = np.rint(np.ldexp(b - bi, bits.astype(np.int32))).astype(np.int64)  # b - floor(b): exact
    carry = bf >> bits  # the fraction rounded up to 1
    return bi.astype(np.int64) + carry, (bf - (carry << bits)) << (e - bits)


def round_shifted(n: np.ndarray, e: np.ndarray, bi: Any = 0) -> np.ndarray:
    """rint(bi + n * 2^-e) exactly, half to even (int64 n, 1 <= e <= 62): the fixed-point
    requantization every kernel's exact path computes."""
    n = np.asarray(n, np.int64)
    e = np.asarray(e, np.int64)
    t = n >> e  # floor
    r = n - (t << e)
    half = np.int64(1) << (e - 1)
    q = t + np.asarray(bi, np.int64)
    return q + ((r > half) | ((r == half) & (q % 2 == 1)))


def round_ratio(n: np.ndarray, d: np.ndarray) -> np.ndarray:
    """rint(n / d) exactly, half to even (int64 n, 0 < d < 2^62): an average pool's exact path."""
    n, d = np.asarray(n, np.int64), np.asarray(d, np.int64)
    t = n // d  # floor
    r2 = 2 * (n - t * d)
    return t + ((r2 > d) | ((r2 == d) & (t % 2 == 1)))


def _ratio(numerator: Any, output_scale: float | np.floating) -> np.ndarray:
    """numerator / output_scale in float64 (the float64 graph's division)."""
    return np.asarray(numerator, np.float64) / np.float64(output_scale)


@dataclass(frozen=True)
class ConvRequant:
    """A conv's exact requantization, per output channel: v = adj * M + B output steps (adj: the
    int32 sum of (x - zp_in) * w; M = s_in * s_w / s_out and B = bias / s_out in float64), rounded
    exactly (kernels/epilogue.wgsl; the record uniforms.CHAN)."""

    m: np.ndarray  # float64 [C]
    b: np.ndarray  # float64 [C]
    fix_m: np.ndarray  # int64 [C]: M ~ fix_m * 2^-fix_e
    fix_e: np.ndarray
    fix_bi: np.ndarray  # B ~ fix_bi + fix_bf * 2^-fix_e
    fix_bf: np.ndarray

    @classmethod
    def of(
        cls,
        input_scale: float | np.floating,
        weight_scales: np.ndarray,
        bias: np.ndarray | None,
        output_scale: float | np.floating,
        k_per_group: int,
    ) -> ConvRequant:
        """k_per_group: the products in one sum (|sum| <= k_per_group * 255 * 128)."""
        m = _ratio(np.float64(input_scale) * np.asarray(weight_scales, np.float64), output_scale)
        b = _ratio(np.zeros(m.shape) if bias is None else bias, output_scale)
        # A channel whose |B| exceeds every |sum * M| by 1024 steps saturates for every input; so
        # does it with B clipped to +-2^16 if that exceeds them too. Other large B are refused.
        reach = k_per_group * 255 * 128 * m + 1024
        clip = (np.abs(b) >= MAX_OFFSET / 2) & (reach < MAX_OFFSET / 2) & (reach < np.abs(b))
        b = np.where(clip, np.sign(b) * MAX_OFFSET / 2, b)
        fix_m, fix_e = fixed_multipliers("input_scale * weight_scales / output_scale", m)
        fix_bi, fix_bf = fixed_offsets("bias", b, fix_e)
        return cls(m, b, fix_m, fix_e, fix_bi, fix_bf)

    @property
    def margin(self) -> np.ndarray:
        """Per channel, the bound on float32's error in v less its |adj * M| part (the epilogue
        adds |adj * M| * 2^-21): (|B| + 1) * 2^-21, twice B's fixed-point error
        (2^-(min(e, 32) + 1): above 2^-21 only for M > 2^10) included."""
        return (np.abs(self.b) + 1) * 2.0**-21 + 2.0 ** -np.minimum(self.fix_e, 32).astype(np.float64)

    def rint(self, adj: np.ndarray) -> np.ndarray:
        """rint(adj * M + B) exactly (int64), channels on the last axis."""
        return round_shifted(adj.astype(np.int64) * self.fix_m + self.fix_bf, self.fix_e, self.fix_bi)


@dataclass(frozen=True)
class AddRequant:
    """An add's exact requantization: v = a * M_a + b * M_b output steps (a, b: the operands less
    their zero points; M_a = s_a / s_out, M_b = s_b / s_out in float64), one fixed-point shift for
    both (kernels/add_requant.wgsl)."""

    m_a: float
    m_b: float
    fix_a: int
    fix_b: int
    fix_e: int

    @classmethod
    def of(cls, a_scale: float, b_scale: float, output_scale: float) -> AddRequant:
        m = _ratio([a_scale, b_scale], output_scale)
        _, e = fixed_multipliers("a_scale / output_scale and b_scale / output_scale", m.max())
        (fa, fb), _ = fixed_multipliers("a_scale / output_scale and b_scale / output_scale", m, shift=e)
        return cls(float(m[0]), float(m[1]), int(fa), int(fb), int(e))

    def rint(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """rint(a * M_a + b * M_b) exactly (int64)."""
        n = a.astype(np.int64) * self.fix_a + b.astype(np.int64) * self.fix_b
        return round_shifted(n, np.full(n.shape, self.fix_e, np.int64))


# An average pool's exact path compares 2 * sum * fix_m with (2f + 1) * divisor * 2^fix_e, |2f + 1|
# < 2^14: divisor * 2^fix_e stays below 2^48 so that this cannot wrap.
_POOL_COMPARE_BITS = 48


@dataclass(frozen=True)
class PoolRequant:
    """An average pool's exact requantization: v = sum * M / divisor output steps (sum: the int32
    sum of (x - zp_in) over a window; M = s_in / s_out in float64) (kernels/avgpool.wgsl)."""

    m: float
    fix_m: int
    fix_e: int
    margin_rel: float  # float32's and the fixed-point form's relative error of v, bounded

    @classmethod
    def of(cls, input_scale: float, output_scale: float, max_divisor: int) -> PoolRequant:
        name = "input_scale / output_scale"
        m = _ratio(input_scale, output_scale)
        max_shift = _POOL_COMPARE_BITS - int(max_divisor).bit_length()
        fix_m, fix_e = fixed_multipliers(name, m, max_shift=max_shift)
        # float32: 4 roundings and a division of up to 2.5 ULP (< 2^-21 of |v|); the fixed form:
        # |fix_m * 2^-fix_e - M| / M relative, which a capped shift makes larger than 2^-30.
        fix_rel = abs(float(fix_m) * 2.0 ** -int(fix_e) - float(m)) / float(m)
        margin_rel = 2.0**-20 + 2 * fix_rel
        if fix_e < 1 or margin_rel >= 2.0**-14:
            raise ValueError(
                f"{name} = {float(m)} is too small for exact rounding over windows of up to {max_divisor} taps"
            )
        return cls(float(m), int(fix_m), int(fix_e), margin_rel)

    def rint(self, sums: np.ndarray, divisor: np.ndarray) -> np.ndarray:
        """rint(sum * M / divisor) exactly (int64; divisor != 0, negative: divisor_override's)."""
        div = np.asarray(divisor, np.int64)
        return round_ratio(
            sums.astype(np.int64) * np.sign(div) * self.fix_m, np.abs(div) << np.int64(self.fix_e)
        )
