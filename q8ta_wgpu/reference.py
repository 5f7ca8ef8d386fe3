"""Pure-numpy reference of the q8ta ops (spec section 2 for the conv: im2col + int32 GEMM + the
exact requantization of q8ta_wgpu.quant), bit for bit what the GPU kernels compute."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

import numpy as np

from ._checks import (
    check_activation,
    check_float_vector,
    check_int8_array,
    check_keywords,
    check_scale,
    check_scale_product,
    check_zero_point,
    real_array,
)
from .geometry import MAX_PARAM, ConvGeometry, pair
from .planner import CONV_DEFAULTS, ConvOptions
from .pooling import (
    AvgPoolOptions,
    PoolWindow,
    Requantization,
    adaptive_output_hw,
    adaptive_windows,
    avg_windows,
    check_bool,
    check_divisor_override,
    check_window_taps,
    checked_activation,
    checked_requantization,
    input_shape4,
)
from .quant import AddRequant, ConvRequant, PoolRequant, activation_bounds

# Rows of A per int32 matmul chunk: bounds the int32 copies of A (rows * K_per_group * 4 bytes).
_CHUNK_BYTES = 32 * 1024 * 1024


def _geometry(
    x_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: Any,
) -> ConvGeometry:
    return ConvGeometry.make(
        x_shape, weight_shape, stride=stride, padding=padding, dilation=dilation, groups=groups
    )


def _im2col(x: np.ndarray, geo: ConvGeometry, zp: int) -> np.ndarray:
    """A as [N, H_out, W_pad, groups, K_per_group] int8 (reshape to [M, K] is free)."""
    N, C, _, _ = x.shape
    G, Cpg = geo.groups, geo.C_in_per_group
    (SH, SW), (PH, PW), (DH, DW) = geo.stride, geo.padding, geo.dilation
    H_out, W_out = geo.H_out, geo.W_out
    # NHWC with zp borders: each tap is then one strided slice, channels already fastest.
    xp = np.full((N, geo.H + 2 * PH, geo.W + 2 * PW, C), zp, dtype=np.int8)
    xp[:, PH : PH + geo.H, PW : PW + geo.W, :] = x.transpose(0, 2, 3, 1)
    xp = xp.reshape(N, xp.shape[1], xp.shape[2], G, Cpg)
    a = np.full((N, H_out, geo.W_pad, G, geo.K_per_group), zp, dtype=np.int8)
    for kh in range(geo.KH):
        h0 = kh * DH
        rows = slice(h0, h0 + SH * (H_out - 1) + 1, SH)
        for kw in range(geo.KW):
            w0 = kw * DW
            cols = slice(w0, w0 + SW * (W_out - 1) + 1, SW)
            k0 = (kh * geo.KW + kw) * Cpg
            a[:, :, :W_out, :, k0 : k0 + Cpg] = xp[:, rows, cols]
    return a


def im2col(
    x: np.ndarray,
    kernel_size: int | tuple[int, int],
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    input_zero_point: int = 0,
) -> np.ndarray:
    """The int8 im2col matrix A of a conv2d, [M, K].

    Args:
        x: int8 input [N, C_in, H, W].
        kernel_size: KH = KW, or (KH, KW).
        stride, padding, dilation: int or (h, w) pair.
        groups: must divide C_in.
        input_zero_point: int8 zero point of x; fills padding taps, padded K columns and
            padded rows.

    Returns:
        int8 [M, K] with M = N*H_out*W_pad, row m = (n*H_out + h_out)*W_pad + w_out (rows with
        w_out >= W_out hold only the zero point), and K = groups*K_per_group, column
        g*K_per_group + (kh*KW + kw)*C_in_per_group + ic.
    """
    x = check_int8_array("x", x, ndim=4)
    zp = check_zero_point("input_zero_point", input_zero_point)
    KH, KW = pair("kernel_size", kernel_size, minimum=1)
    C = x.shape[1]
    # A stand-in weight shape lets ConvGeometry do all the checks; a bad groups value is passed
    # through unchanged so that make() reports it.
    g = groups if not isinstance(groups, bool) and hasattr(groups, "__index__") else 1
    g = int(g) if int(g) >= 1 else 1
    geo = _geometry(x.shape, (g, max(C // g, 1), KH, KW), stride, padding, dilation, groups)
    return _im2col(x, geo, zp).reshape(geo.M, geo.K)


def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    weight_scales: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    input_scale: float,
    input_zero_point: int,
    **options: Unpack[ConvOptions],
) -> np.ndarray:
    """Quantized conv2d as spec section 2 (im2col, int32 GEMM), with the exact requantization
    (quant.ConvRequant: rint(sum * s_in * s_w / s_out + bias / s_out), half to even, exactly).

    Args:
        x: int8 input [N, C_in, H, W], per-tensor affine (input_scale, input_zero_point).
        weight: int8 symmetric weights [C_out, C_in/groups, KH, KW].
        weight_scales: per-output-channel weight scales [C_out], finite, > 0 (as float32).
        bias: optional float bias [C_out], in real output units, added after scaling.
        input_scale, input_zero_point: quantization of x.
        **options: `q8ta_wgpu.planner.ConvOptions`, as the GPU path takes them (the activation
            applied in float before requantization; method, output_layout and device ignored).

    Returns:
        int8 [N, C_out, H_out, W_out].
    """
    check_keywords("conv2d", options, ConvOptions)
    opts: ConvOptions = {**CONV_DEFAULTS, **options}
    x = check_int8_array("x", x, ndim=4)
    weight = check_int8_array("weight", weight, ndim=4)
    geo = _geometry(x.shape, weight.shape, opts["stride"], opts["padding"], opts["dilation"], opts["groups"])
    s_in = np.float32(check_scale("input_scale", input_scale))
    zp_in = check_zero_point("input_zero_point", input_zero_point)
    s_out = np.float32(check_scale("output_scale", opts["output_scale"]))
    zp_out = check_zero_point("output_zero_point", opts["output_zero_point"])
    w_scales = check_float_vector("weight_scales", weight_scales, geo.C_out, positive=True)
    if bias is None:
        b = np.zeros(geo.C_out, np.float32)
    else:
        b = check_float_vector("bias", bias, geo.C_out)
    activation = check_activation(opts["activation"])

    G, Kpg, Cop = geo.groups, geo.K_per_group, geo.C_out_per_group
    taps = geo.KH * geo.KW * geo.C_in_per_group
    a = _im2col(x, geo, zp_in).reshape(geo.M, G, Kpg)

    # Weights as [G, Kpg, Cop] in (kh, kw, ic) order; padded K rows are 0.
    wq = np.zeros((G, Kpg, Cop), np.int32)
    wq[:, :taps, :] = weight.transpose(0, 2, 3, 1).reshape(G, Cop, taps).transpose(0, 2, 1).astype(np.int32)
    wsum = wq.sum(axis=1, dtype=np.int32)  # [G, Cop]
    zp_wsum = (np.int32(zp_in) * wsum).astype(np.int32)

    check_scale_product(s_in, w_scales)
    requant = [
        ConvRequant.of(s_in, w_scales[g * Cop : (g + 1) * Cop], b[g * Cop : (g + 1) * Cop], s_out, taps)
        for g in range(G)
    ]

    out = np.empty((geo.M, G, Cop), np.int8)
    chunk = max(1, _CHUNK_BYTES // (4 * Kpg))
    # int32 arithmetic wraps like the GPU's; with K_per_group <= 2^16 nothing can overflow.
    with np.errstate(over="ignore", invalid="ignore"):
        for m0 in range(0, geo.M, chunk):
            m1 = min(m0 + chunk, geo.M)
            for g in range(G):
                acc = a[m0:m1, g, :].astype(np.int32) @ wq[g]
                out[m0:m1, g, :] = _conv_epilogue(
                    acc - zp_wsum[g], requant[g], activation, float(s_out), zp_out
                )

    out = out.reshape(geo.N, geo.H_out, geo.W_pad, geo.C_out)[:, :, : geo.W_out, :]
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def _conv_epilogue(
    adj: np.ndarray, requant: ConvRequant, activation: str, output_scale: float, output_zero_point: int
) -> np.ndarray:
    """The requantization of int32 sums adj of (x - zp_in) * w, channels last (conv2d's and
    conv_transpose2d's): q = rint(adj * M + B) exactly (quant.ConvRequant), activated, + zp_out,
    clamped to int8."""
    return _exactly_requantized(requant.rint(adj), activation, output_scale, output_zero_point)


def _exactly_requantized(
    r: np.ndarray, activation: str, output_scale: float, output_zero_point: int
) -> np.ndarray:
    """int8 of exactly rounded values r (output steps): + zp, clamped to the activation's bounds
    (quant.activation_bounds: relu's and relu6's clamps of the real value, as rounding is
    monotonic) and to int8."""
    lo, hi = activation_bounds(activation, output_scale, output_zero_point)
    return np.clip(r + output_zero_point, lo, hi).astype(np.int8)


# ---- the non-conv ops of a quantized CNN (PT2E float path: dequantize, op, quantize, rounded exactly) --
def inv_scale(name: str, scale: Any) -> float:
    """float32(1.0 / scale) of a checked quantization scale, as torch's quantize_per_tensor takes
    it: 1.0 / scale divided in double precision from the scale as given (a Python float, not
    rounded to float32 first), then rounded once to float32 when it multiplies a float32 tensor.
    A ValueError naming `name` when it is not a finite float32."""
    check_scale(name, scale)
    with np.errstate(over="ignore"):
        inv = np.float32(1.0 / float(scale))
    if not np.isfinite(inv):
        raise ValueError(f"1 / {name} must be a finite float32, got {name} = {float(scale)}")
    return float(inv)


def _quantize_f32(y: np.ndarray, inv: float, output_zero_point: int) -> np.ndarray:
    """torch's quantize_per_tensor of float32 y: clamp(rint(y * inv) + zp), inv = inv_scale(...)."""
    with np.errstate(over="ignore", invalid="ignore"):  # huge y saturates through inf
        q = np.rint(y.astype(np.float32, copy=False) * np.float32(inv)) + np.float32(output_zero_point)
    return np.clip(q, -128, 127).astype(np.int8)


def quantize_per_tensor(x: Any, scale: float, zero_point: int) -> np.ndarray:
    """torch.ops.quantized_decomposed.quantize_per_tensor(x, scale, zero_point, -128, 127, int8)
    in numpy: q = clamp(rint(x * inv_scale) + zero_point, -128, 127), inv_scale = float32(1.0 /
    scale) (`inv_scale`), x as float32. (q8ta_wgpu.quantize divides by the float32 scale instead,
    which can round a value next to a .5 tie the other way.) x: real values, any shape, no NaN."""
    inv = inv_scale("scale", scale)
    zp = check_zero_point("zero_point", zero_point)
    return _quantize_f32(_float32_input(x), inv, zp)


def _float32_input(x: Any) -> np.ndarray:
    """x (real values, any shape) as float32 (beyond float32: +-inf); NaN raises."""
    a = real_array("x", x)
    with np.errstate(over="ignore"):
        x32 = a.astype(np.float32)
    if np.isnan(x32).any():
        raise ValueError("x must not contain NaN")
    return x32


def quantize_exact(x: Any, scale: float, zero_point: int) -> np.ndarray:
    """quantize_per_tensor with the rounding exact: q = clamp(rint(x / scale) + zero_point, -128,
    127) of the exact quotient of float32 x and the float32 scale (what `ops.quantize_pass`, a
    network's input quantize, computes). numpy's float64 division gives it: a quotient of two
    float32s that is not a half-integer lies at least 2^-48 of itself from every half-integer
    below 2^23, far beyond float64's rounding (larger quotients saturate int8 either way)."""
    s = np.float64(np.float32(check_scale("scale", scale)))
    zp = check_zero_point("zero_point", zero_point)
    x32 = _float32_input(x)
    with np.errstate(over="ignore", invalid="ignore"):
        q = np.rint(x32.astype(np.float64) / s) + zp
    return np.clip(q, -128, 127).astype(np.int8)


def _dequantize_f32(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """(q - zp) * scale in float32 (q - zp is exact), as torch's dequantize_per_tensor."""
    return (q.astype(np.int32) - zero_point).astype(np.float32) * np.float32(scale)


def add(
    a: np.ndarray,
    b: np.ndarray,
    *,
    a_scale: float,
    a_zero_point: int,
    b_scale: float,
    b_zero_point: int,
    output_scale: float,
    output_zero_point: int,
    activation: str = "none",
) -> np.ndarray:
    """Quantized add: quantize(dequantize(a) + dequantize(b)), exactly: q = rint((a - zp_a) *
    M_a + (b - zp_b) * M_b) + zp_out (M = the scale / output_scale in float64; rint half to
    even, exact: quant.AddRequant), clamped to [-128, 127] and the activation's bounds.

    Args:
        a, b: int8 arrays of one shape (any rank), each with its own scale and zero point.
        activation: "none", "relu" or "relu6" (max(y, 0), then min(y, 6), before quantizing).

    Returns:
        int8 with the shape of a.
    """
    a = check_int8_array("a", a)
    b = check_int8_array("b", b)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    sa, zpa = check_scale("a_scale", a_scale), check_zero_point("a_zero_point", a_zero_point)
    sb, zpb = check_scale("b_scale", b_scale), check_zero_point("b_zero_point", b_zero_point)
    s_out = check_scale("output_scale", output_scale)
    zp_out = check_zero_point("output_zero_point", output_zero_point)
    act = check_activation(activation)
    r = AddRequant.of(sa, sb, s_out).rint(a.astype(np.int64) - zpa, b.astype(np.int64) - zpb)
    return _exactly_requantized(r, act, s_out, zp_out)


def _activate(y: np.ndarray, activation: str) -> np.ndarray:
    """relu / relu6 of float32 y, in float, before quantizing (as the PT2E graph does)."""
    if activation in ("relu", "relu6"):
        y = np.maximum(y, np.float32(0))
    if activation == "relu6":
        y = np.minimum(y, np.float32(6))
    return y


def max_pool2d(
    x: np.ndarray,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    ceil_mode: bool = False,
) -> np.ndarray:
    """max_pool2d of int8 x [N, C, H, W] with torch.nn.functional.max_pool2d's arguments: the max
    of the int8 values in each window (the max of the dequantized values, quantized with the
    same scale and zero point, is exactly that). Padded positions never win (they are -128,
    the smallest int8). Returns int8 [N, C, H_out, W_out]."""
    x = check_int8_array("x", x, ndim=4)
    win = PoolWindow.checked(kernel_size, stride, padding, dilation, ceil_mode)
    n, c, h, w = input_shape4("x", x.shape)
    ho, wo = win.output_hw(h, w)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = win.kernel_size, win.stride, win.padding, win.dilation
    # -128 borders wide enough for every window (ceil_mode's last one may pass H + pad).
    hp = max(h + 2 * ph, (ho - 1) * sh + dh * (kh - 1) + 1)
    wp = max(w + 2 * pw, (wo - 1) * sw + dw * (kw - 1) + 1)
    xp = np.full((n, c, hp, wp), -128, np.int8)
    xp[:, :, ph : ph + h, pw : pw + w] = x
    out = np.full((n, c, ho, wo), -128, np.int8)
    for i in range(kh):
        for j in range(kw):
            tap = xp[:, :, i * dh : i * dh + sh * (ho - 1) + 1 : sh, j * dw : j * dw + sw * (wo - 1) + 1 : sw]
            np.maximum(out, tap, out=out)
    return out


def _window_sums(
    x: np.ndarray, zp: int, hs: tuple[np.ndarray, np.ndarray], ws: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """int64 [N, C, H_out, W_out] sums of (x - zp) over windows rows [h0, h1) x columns [w0, w1)
    (clipped to the input), from an integral image; empty windows sum to 0."""
    n, c, h, w = x.shape
    integral = np.zeros((n, c, h + 1, w + 1), np.int64)
    integral[:, :, 1:, 1:] = (x.astype(np.int64) - zp).cumsum(axis=2).cumsum(axis=3)
    (h0, h1), (w0, w1) = hs, ws
    h1 = np.maximum(h1, h0)  # empty windows: [h0, h0)
    w1 = np.maximum(w1, w0)

    def corner(r: np.ndarray, s: np.ndarray) -> np.ndarray:
        return integral[:, :, r[:, None], s[None, :]]

    return corner(h1, w1) - corner(h0, w1) - corner(h1, w0) + corner(h0, w0)


def _average(
    sums: np.ndarray,
    divisor: np.ndarray,
    empty: np.ndarray,
    requant: PoolRequant,
    output_scale: float,
    output_zero_point: int,
    activation: str = "none",
) -> np.ndarray:
    """q = rint(sum * M / divisor) exactly (quant.PoolRequant), activated, + zp_out, clamped;
    empty windows give 0 (q = zp_out)."""
    d = np.where(empty, 1, divisor)
    r = np.where(empty, 0, requant.rint(sums, d))
    return _exactly_requantized(r, activation, output_scale, output_zero_point)


def avg_pool2d(
    x: np.ndarray,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    **options: Unpack[AvgPoolOptions],
) -> np.ndarray:
    """avg_pool2d of int8 x [N, C, H, W] (torch.nn.functional.avg_pool2d's arguments), PT2E float
    path with integer sums: sum = sum over the window of (x - input_zero_point) (padded
    positions add 0), divisor as PyTorch's CPU kernel takes it (divisor_override; else with
    count_include_pad the window clipped to the padded input, else its taps inside the input),
    sum * input_scale / divisor quantized to (output_scale, output_zero_point) with the rounding
    exact (quant.PoolRequant); `activation` ("relu", "relu6") applied before
    (`pooling.AvgPoolOptions`). Returns int8 [N, C, H_out, W_out]."""
    check_keywords("avg_pool2d", options, AvgPoolOptions)
    x = check_int8_array("x", x, ndim=4)
    win = PoolWindow.checked(kernel_size, stride, padding, 1, ceil_mode)
    include_pad = check_bool("count_include_pad", count_include_pad)
    override = check_divisor_override(divisor_override)
    s_in, zp_in, s_out, zp_out = checked_requantization(options)
    _, _, h, w = input_shape4("x", x.shape)
    ho, wo = win.output_hw(h, w)
    (kh, kw), (sh, sw), (ph, pw) = win.kernel_size, win.stride, win.padding
    h0, h1, pool_h = avg_windows(h, ho, kh, sh, ph)
    w0, w1, pool_w = avg_windows(w, wo, kw, sw, pw)
    taps = np.outer(np.maximum(h1 - h0, 0), np.maximum(w1 - w0, 0))
    check_window_taps(int(taps.max()))
    sums = _window_sums(x, zp_in, (h0, h1), (w0, w1))
    if override is not None:
        divisor = np.full(taps.shape, override, np.int64)
    elif include_pad:
        divisor = np.outer(pool_h, pool_w)
    else:
        divisor = taps
    requant = PoolRequant.of(s_in, s_out, abs(override or kh * kw))  # a window's divisor <= its taps
    return _average(sums, divisor, taps == 0, requant, s_out, zp_out, checked_activation(options))


def adaptive_avg_pool2d(
    x: np.ndarray,
    output_size: int | None | tuple[int | None, int | None],
    **options: Unpack[AvgPoolOptions],
) -> np.ndarray:
    """adaptive_avg_pool2d of int8 x [N, C, H, W] (torch's windows: row i of H_out covers
    [floor(i*H/H_out), ceil((i+1)*H/H_out)), columns alike; output_size entries None = the
    input's size), computed as `avg_pool2d` does with divisor = the window's taps. Output size 1
    is the mean over H and W (`pooling.AvgPoolOptions`: the options). Returns int8
    [N, C, H_out, W_out]."""
    check_keywords("adaptive_avg_pool2d", options, AvgPoolOptions)
    x = check_int8_array("x", x, ndim=4)
    s_in, zp_in, s_out, zp_out = checked_requantization(options)
    _, _, h, w = input_shape4("x", x.shape)
    ho, wo = adaptive_output_hw(output_size, h, w)
    h0, h1 = adaptive_windows(h, ho)
    w0, w1 = adaptive_windows(w, wo)
    taps = np.outer(h1 - h0, w1 - w0)
    check_window_taps(int(taps.max()))
    sums = _window_sums(x, zp_in, (h0, h1), (w0, w1))
    requant = PoolRequant.of(s_in, s_out, int(taps.max()))
    return _average(sums, taps, taps == 0, requant, s_out, zp_out, checked_activation(options))


# ---- elementwise functions by table, and the channel concatenation (PT2E float path) ---------
# The elementwise functions a lookup table computes (q8ta_wgpu.elementwise.QLookup): "identity"
# is a requantization; relu6 is hardtanh(0, 6).
LOOKUP_FUNCTIONS = ("identity", "relu", "relu6", "hardtanh", "hardswish", "hardsigmoid", "sigmoid", "tanh")
# Every int8 value in order: `lookup(INT8_VALUES, ...)` is the function's table (entry i is the
# output for the input value i - 128), what QLookup and QCat apply on the GPU.
INT8_VALUES = np.arange(-128, 128, dtype=np.int8)
INT8_VALUES.flags.writeable = False


def check_lookup_function(function: Any, min_val: Any = -1.0, max_val: Any = 1.0) -> tuple[str, float, float]:
    """(function, min_val, max_val) checked: a name of LOOKUP_FUNCTIONS, and hardtanh's bounds
    (finite float32, min_val <= max_val; torch's defaults -1 and 1; ignored by the others)."""
    if not isinstance(function, str):
        raise TypeError(f"function must be a str, got {type(function).__name__}")
    if function not in LOOKUP_FUNCTIONS:
        raise ValueError(f"function must be one of {', '.join(LOOKUP_FUNCTIONS)}, got {function!r}")
    bounds = []
    for name, v in (("min_val", min_val), ("max_val", max_val)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a real number, got {v!r}")
        with np.errstate(over="ignore"):
            f = np.float32(v)
        if not np.isfinite(f):
            raise ValueError(f"{name} must be a finite float32, got {v}")
        bounds.append(float(f))
    if bounds[0] > bounds[1]:
        raise ValueError(f"min_val must be <= max_val, got min_val={min_val}, max_val={max_val}")
    return function, bounds[0], bounds[1]


def _elementwise_f32(x: np.ndarray, function: str, lo: float, hi: float) -> np.ndarray:
    """The function of float32 x in float32, in the order of PyTorch's CPU kernels (hardswish:
    x * min(max(x + 3, 0), 6) / 6; hardsigmoid: min(max(x + 3, 0), 6) / 6; sigmoid: 1 / (1 + e)
    with e = exp(-x) rounded once to float32; tanh rounded once from float64). hardswish,
    hardsigmoid, relu and hardtanh are bit for bit torch's; sigmoid and tanh use SLEEF there,
    whose last bit can differ (checked: the quantized tables agree; tests/test_elementwise.py)."""
    f32 = np.float32
    if function in ("relu", "relu6"):
        return _activate(x, function)
    if function == "hardtanh":
        return np.minimum(np.maximum(x, f32(lo)), f32(hi))
    if function in ("hardswish", "hardsigmoid"):
        gate = np.minimum(np.maximum(x + f32(3), f32(0)), f32(6))
        return (x * gate if function == "hardswish" else gate) / f32(6)
    with np.errstate(over="ignore"):  # exp(-x) beyond float32: inf, and 1 / inf = 0 as in torch
        if function == "sigmoid":
            return f32(1) / (f32(1) + np.exp(-x.astype(np.float64)).astype(f32))
        if function == "tanh":
            return np.tanh(x.astype(np.float64)).astype(f32)
    return x  # identity


class LookupOptions(Requantization, total=False):
    """The keyword options of an elementwise lookup, defined once: `elementwise.QLookup` and
    `reference.lookup` take them as `**options`.

    input_scale, input_zero_point: x's quantization (required; scale > 0, zp in [-128, 127]).
    output_scale, output_zero_point: the output's (required).
    min_val, max_val: hardtanh's bounds (default `LOOKUP_DEFAULTS`: torch's -1 and 1); ignored by
        the other functions.
    torch_kernel: None (default): the PT2E graph's float path, evaluated exactly (`_lookup_exact`:
        rational arithmetic; sigmoid and tanh in float64), as every other op's requantization.
        Else as torch.ao eager's quantized
        CPU kernel of hardswish / hardsigmoid / sigmoid / tanh does it (`TORCH_KERNELS`; each can
        round a value next to a .5 tie the other way): "x86_quint8" / "x86_qint8" (x86, fbgemm,
        onednn engines, vectorized): dequantized by fma(x + k, scale, float32(scale * -(zp + k)))
        of the stored values (k = 128 for quint8, 0 for qint8; `_dequantize_fma_f32`);
        "qnnpack" (its quint8 lookup tables): quantized as rint(float32(y * float32(1 /
        scale) + zp + 128)) - 128, the zero point added before rounding.
    """

    min_val: float
    max_val: float
    torch_kernel: str | None


LOOKUP_DEFAULTS = {"min_val": -1.0, "max_val": 1.0, "torch_kernel": None}
TORCH_KERNELS = (None, "x86_quint8", "x86_qint8", "qnnpack")


def lookup(x: np.ndarray, function: str, **options: Unpack[LookupOptions]) -> np.ndarray:
    """An elementwise function of int8 x (any shape), PT2E float path: quantize(function(
    dequantize(x))), the rounding exact (torch_kernel None), or as a torch.ao quantized CPU
    kernel computes it in float32. function: one of LOOKUP_FUNCTIONS; options: `LookupOptions`.
    Returns int8 with the shape of x; with x = INT8_VALUES, the function's table."""
    check_keywords("lookup", options, LookupOptions)
    opts = {**LOOKUP_DEFAULTS, **options}
    x = check_int8_array("x", x)
    name, lo, hi = check_lookup_function(function, opts["min_val"], opts["max_val"])
    s_in, zp_in, s_out, zp_out = checked_requantization(opts)
    inv = inv_scale("output_scale", opts["output_scale"])
    kernel = opts["torch_kernel"]
    if kernel not in TORCH_KERNELS:
        raise ValueError(f"torch_kernel must be one of {TORCH_KERNELS}, got {kernel!r}")
    if kernel is None:
        table = _lookup_exact(name, lo, hi, s_in, zp_in, s_out, zp_out)
        return table[x.astype(np.int16) + 128]
    if kernel in ("x86_quint8", "x86_qint8"):
        xf = _dequantize_fma_f32(x, s_in, zp_in, 128 if kernel == "x86_quint8" else 0)
    else:
        xf = _dequantize_f32(x, s_in, zp_in)
    with np.errstate(over="ignore"):
        y = _elementwise_f32(xf, name, lo, hi)
        if kernel == "qnnpack":
            s32 = np.float32(s_out)
            t = np.float32(1) / s32 * y + np.float32(zp_out + 128)  # float32 1 / scale, as QNNPACK
            return (np.clip(np.rint(t), 0, 255) - 128).astype(np.int8)
    return _quantize_f32(y, inv, zp_out)


def _lookup_exact(
    function: str, lo: float, hi: float, s_in: float, zp_in: int, s_out: float, zp_out: int
) -> np.ndarray:
    """The table (int8 [256], entry i for the input value i - 128) of quantize(function(
    dequantize(x))) evaluated exactly: Fraction arithmetic on the float32 scales and bounds (every
    function but sigmoid and tanh is rational; those two are float64), rint half to even of the
    exact quotient, + zp, clamped. The float64 evaluation of a PT2E graph gives the same bytes
    but where a value lies within float64's rounding of a half-integer."""
    from fractions import Fraction

    def f(y: Fraction) -> Fraction:
        if function in ("relu", "relu6", "hardtanh"):
            low, high = {"relu": (0, None), "relu6": (0, 6)}.get(function, (Fraction(lo), Fraction(hi)))
            y = max(y, Fraction(low))
            return y if high is None else min(y, Fraction(high))
        if function in ("hardswish", "hardsigmoid"):
            gate = min(max(y + 3, Fraction(0)), Fraction(6)) / 6
            return y * gate if function == "hardswish" else gate
        if function == "sigmoid":
            return Fraction(1.0 / (1.0 + math.exp(-float(y)))) if float(y) > -700 else Fraction(0)
        if function == "tanh":
            return Fraction(math.tanh(float(y)))
        return y  # identity

    sin, sout = Fraction(float(np.float32(s_in))), Fraction(float(np.float32(s_out)))
    table = [round(f((v - zp_in) * sin) / sout) + zp_out for v in range(-128, 128)]
    return np.clip(np.array(table, np.int64), -128, 127).astype(np.int8)


def _dequantize_fma_f32(q: np.ndarray, scale: float, zero_point: int, shift: int) -> np.ndarray:
    """torch's vectorized x86 dequantize of the stored values q + shift (Vectorized<quint8 /
    qint8>::dequantize): fma(q + k, scale, float32(scale * -(zp + k))) in float32. float64 holds
    the product (8-bit by 24-bit) and the sum (within 2^10 * scale, down to ulp(scale)) exactly,
    so rounding it to float32 once is the fma's single rounding."""
    s = np.float32(scale)
    premul = np.float64(s * np.float32(-(zero_point + shift)))
    return ((q.astype(np.float64) + shift) * np.float64(s) + premul).astype(np.float32)


def cat(
    tensors: Any,
    *,
    input_scales: Any,
    input_zero_points: Any,
    output_scale: float,
    output_zero_point: int,
    activation: str = "none",
) -> np.ndarray:
    """Channel concatenation (torch.cat(dim=1)) of int8 tensors [N, C_k, ...], each with its own
    scale and zero point, PT2E float path: quantize(cat(dequantize(x_k))) with the rounding exact
    (each input through `lookup`'s exact table), `activation` ("relu", "relu6") applied to the
    float values before quantizing. Equal parameters: a copy.

    Args:
        tensors: a sequence of int8 arrays of one rank >= 2, equal except in dimension 1.
        input_scales, input_zero_points: one per tensor.

    Returns:
        int8 [N, sum C_k, ...].
    """
    if isinstance(tensors, np.ndarray) or not isinstance(tensors, (list, tuple)) or not tensors:
        raise TypeError("tensors must be a non-empty list or tuple of int8 arrays")
    xs = [check_int8_array(f"tensors[{i}]", t) for i, t in enumerate(tensors)]
    scales, zps = _cat_quant(len(xs), input_scales, input_zero_points)
    inv_scale("output_scale", output_scale)  # the scale's checks
    zp_out = check_zero_point("output_zero_point", output_zero_point)
    act = check_activation(activation)
    first = xs[0].shape
    for i, t in enumerate(xs):
        if t.ndim < 2 or t.ndim != len(first) or t.shape[:1] + t.shape[2:] != first[:1] + first[2:]:
            raise ValueError(
                f"tensors[{i}] has shape {t.shape}; every tensor must have the shape of tensors[0] "
                f"{first} except in dimension 1 (rank >= 2)"
            )
    fn = "identity" if act == "none" else act
    parts = [
        lookup(t, fn, input_scale=s, input_zero_point=z, output_scale=output_scale, output_zero_point=zp_out)
        for t, s, z in zip(xs, scales, zps, strict=True)
    ]
    return np.concatenate(parts, axis=1)


def _cat_quant(count: int, input_scales: Any, input_zero_points: Any) -> tuple[list[float], list[int]]:
    """The inputs' scales and zero points of a cat of `count` tensors, checked (one each)."""
    out: list[list[Any]] = []
    for name, vals in (("input_scales", input_scales), ("input_zero_points", input_zero_points)):
        if isinstance(vals, (str, bytes)) or not hasattr(vals, "__len__"):
            raise TypeError(f"{name} must be a sequence (one per input), got {type(vals).__name__}")
        if len(vals) != count:
            raise ValueError(f"{name} must have one entry per input ({count}), got {len(vals)}")
        out.append(list(vals))
    scales = [check_scale(f"input_scales[{i}]", s) for i, s in enumerate(out[0])]
    zps = [check_zero_point(f"input_zero_points[{i}]", z) for i, z in enumerate(out[1])]
    return scales, zps


# ---- index maps (nearest upsampling, pixel shuffle) and the transposed conv (PT2E float path) --
class IndexMapOptions(Requantization, total=False):
    """The keyword options of the index-map ops, defined once: `resample.QUpsampleNearest2d`,
    `resample.QPixelShuffle`, `reference.upsample_nearest2d` and `reference.pixel_shuffle` take
    them as `**options`.

    input_scale, input_zero_point, output_scale, output_zero_point: the quantization (required);
        equal in and out (what PT2E quantizers share) with no activation: the bytes are copied.
    activation: "none" (default), "relu" or "relu6", applied to the float values before quantizing.
    """

    activation: str


def _requantized(x: np.ndarray, options: IndexMapOptions) -> np.ndarray:
    """Int8 values an index map moved, quantized as the op's output: quantize(act(dequantize(x)))
    by `lookup` (the identity where the parameters are equal and there is no activation)."""
    act = check_activation(options.get("activation", "none"))
    return lookup(
        x, "identity" if act == "none" else act, input_scale=options["input_scale"],
        input_zero_point=options["input_zero_point"], output_scale=options["output_scale"],
        output_zero_point=options["output_zero_point"],
    )  # fmt: skip


# Output sizes of a nearest upsampling stay below 2^24: float32 holds every index exactly, as
# torch's float32 product index * scale needs.
MAX_NEAREST_SIZE = 2**24


def _scale_pair(value: Any) -> tuple[float, float]:
    """scale_factor: a real number > 0 or an (h, w) pair of them (finite)."""
    vals = list(value) if isinstance(value, (tuple, list)) else [value, value]
    if len(vals) != 2:
        raise ValueError(f"scale_factor must be a number or an (h, w) pair, got {value!r}")
    out = []
    for v in vals:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"scale_factor must be a real number or an (h, w) pair of them, got {value!r}")
        if not np.isfinite(float(v)) or float(v) <= 0:
            raise ValueError(f"scale_factor must be finite and > 0, got {value!r}")
        out.append(float(v))
    return out[0], out[1]


class NearestResize:
    """A nearest upsampling's size arguments, checked as torch checks F.interpolate's: `size`
    (an int or an (h, w) pair, each >= 1) or `scale_factor` (a number > 0 or a pair): the output
    size is floor(H * scale_factor) in double precision, and the source index of output index i
    is torch's nearest_idx: i where H_out == H, i >> 1 where H_out == 2*H, else
    min(floor(float32(i) * scale), H - 1) with scale = float32(1.0 / scale_factor), or
    float32(H) / H_out without a scale factor or with recompute_scale_factor=True. Both size and
    scale_factor: aten.upsample_nearest2d.default's output_size with its scales_h / scales_w."""

    def __init__(self, size: Any, scale_factor: Any, recompute_scale_factor: Any = None) -> None:
        if size is None and scale_factor is None:
            raise ValueError("either size or scale_factor must be given")
        self.size = None if size is None else pair("size", size, minimum=1)
        self.scale_factor = None if scale_factor is None else _scale_pair(scale_factor)
        rec = recompute_scale_factor
        self.recompute = False if rec is None else check_bool("recompute_scale_factor", rec)
        if self.recompute and self.size is not None:
            raise ValueError("recompute_scale_factor=True needs scale_factor and no size (as torch)")

    def __repr__(self) -> str:
        rec = ", recompute_scale_factor=True" if self.recompute else ""
        return f"size={self.size}, scale_factor={self.scale_factor}{rec}"

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        if self.size is not None:
            out = self.size
        else:
            assert self.scale_factor is not None
            out = (int(np.floor(h * self.scale_factor[0])), int(np.floor(w * self.scale_factor[1])))
        for axis, o in zip("HW", out, strict=True):
            if not 1 <= o < MAX_NEAREST_SIZE:
                raise ValueError(f"the upsampled {axis} must be in [1, 2**24), got {o} (input {h} x {w})")
        return out

    def scales(self, h: int, w: int) -> tuple[float, float]:
        """torch's float32 source-index scales for an input of h x w."""
        out = self.output_hw(h, w)
        if self.scale_factor is not None and not self.recompute:  # 1 / scale in double, then float32
            sh, sw = (np.float32(1.0 / s) for s in self.scale_factor)
        else:  # float32(H) / H_out in float32
            sh, sw = np.float32(h) / np.float32(out[0]), np.float32(w) / np.float32(out[1])
        return float(sh), float(sw)


def nearest_indices(size_in: int, size_out: int, scale: float) -> np.ndarray:
    """int64 [size_out] source indices of a nearest upsampling along one axis (NearestResize)."""
    i = np.arange(size_out, dtype=np.int64)
    if size_out == size_in:
        return i
    if size_out == 2 * size_in:
        return i >> 1
    src = np.floor(i.astype(np.float32) * np.float32(scale)).astype(np.int64)
    return np.minimum(src, size_in - 1)


def upsample_nearest2d(
    x: np.ndarray,
    size: int | tuple[int, int] | None = None,
    scale_factor: float | tuple[float, float] | None = None,
    recompute_scale_factor: bool | None = None,
    **options: Unpack[IndexMapOptions],
) -> np.ndarray:
    """torch.nn.functional.interpolate(x, size, scale_factor, mode="nearest",
    recompute_scale_factor) of int8 x [N, C, H, W] (`NearestResize`: sizes and indices), PT2E
    float path: the moved values requantized (`IndexMapOptions`). Returns int8 [N, C, H_out, W_out]."""
    check_keywords("upsample_nearest2d", options, IndexMapOptions)
    x = check_int8_array("x", x, ndim=4)
    resize = NearestResize(size, scale_factor, recompute_scale_factor)
    _, _, h, w = input_shape4("x", x.shape)
    (oh, ow), (sh, sw) = resize.output_hw(h, w), resize.scales(h, w)
    rows, cols = nearest_indices(h, oh, sh), nearest_indices(w, ow, sw)
    return _requantized(x[:, :, rows[:, None], cols[None, :]], options)


def check_factor(name: str, value: Any) -> int:
    """A pixel shuffle's factor: an int >= 1."""
    if isinstance(value, (tuple, list)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    return pair(name, value, minimum=1)[0]


def pixel_shuffle_shape(shape: Any, factor: int, unshuffle: bool) -> tuple[int, int, int, int]:
    """The output shape of pixel_shuffle (C divisible by r^2: [N, C/r^2, H*r, W*r]) or of
    pixel_unshuffle (H and W divisible by r: [N, C*r^2, H/r, W/r]) of an NCHW `shape`."""
    n, c, h, w = input_shape4("x", shape)
    r = factor
    if unshuffle:
        if h % r or w % r:
            raise ValueError(
                f"pixel_unshuffle needs H and W divisible by downscale_factor {r}, got H = {h}, W = {w}"
            )
        out = (n, c * r * r, h // r, w // r)
    else:
        if c % (r * r):
            raise ValueError(f"pixel_shuffle needs C divisible by upscale_factor^2 = {r * r}, got C = {c}")
        out = (n, c // (r * r), h * r, w * r)
    return input_shape4("the output", out)


def pixel_shuffle(
    x: np.ndarray, upscale_factor: int, *, unshuffle: bool = False, **options: Unpack[IndexMapOptions]
) -> np.ndarray:
    """torch.nn.functional.pixel_shuffle(x, upscale_factor) of int8 x [N, C, H, W] (or, with
    unshuffle=True, pixel_unshuffle(x, downscale_factor=upscale_factor)), PT2E float path: the
    moved values requantized (`IndexMapOptions`)."""
    check_keywords("pixel_shuffle", options, IndexMapOptions)
    x = check_int8_array("x", x, ndim=4)
    r = check_factor("upscale_factor", upscale_factor)
    unshuffle = check_bool("unshuffle", unshuffle)
    n, c, h, w = pixel_shuffle_shape(x.shape, r, unshuffle)
    if unshuffle:  # [N, C, H/r, r, W/r, r] -> [N, C, r, r, H/r, W/r]
        y = x.reshape(x.shape[0], x.shape[1], h, r, w, r).transpose(0, 1, 3, 5, 2, 4)
    else:  # [N, C/r^2, r, r, H, W] -> [N, C/r^2, H, r, W, r]
        y = x.reshape(n, c, r, r, x.shape[2], x.shape[3]).transpose(0, 1, 4, 2, 5, 3)
    return _requantized(np.ascontiguousarray(y).reshape(n, c, h, w), options)


class _OutputQuantization(TypedDict):
    """An op's output quantization, required (the base of ConvTransposeOptions)."""

    output_scale: float
    output_zero_point: int


class ConvTransposeOptions(_OutputQuantization, total=False):
    """The keyword options of a quantized conv_transpose2d, defined once:
    `resample.QConvTranspose2d` and `reference.conv_transpose2d` take them as `**options`.

    output_scale, output_zero_point: the output's quantization (required).
    stride, padding, output_padding, dilation: int or (h, w) (defaults 1, 0, 0, 1), as torch's:
        output_padding (extra rows / columns at the bottom / right) smaller than stride or dilation.
    groups: int dividing C_in (default 1).
    activation: "none" (default), "relu" or "relu6", before requantization.
    """

    stride: int | tuple[int, int]
    padding: int | tuple[int, int]
    output_padding: int | tuple[int, int]
    dilation: int | tuple[int, int]
    groups: int
    activation: str


CONV_TRANSPOSE_DEFAULTS: dict[str, Any] = {
    "stride": 1, "padding": 0, "output_padding": 0, "dilation": 1, "groups": 1, "activation": "none",
}  # fmt: skip


@dataclass(frozen=True)
class ConvTransposeArgs:
    """A conv_transpose2d's weight shape [C_in, C_out/groups, KH, KW] and window, checked as
    torch checks them. Output H_out = (H - 1)*stride - 2*padding + dilation*(KH - 1) +
    output_padding + 1 (W alike). As a stride-1 conv: the input with stride - 1 rows of zero
    points between its rows and `border` = dilation*(KH - 1) - padding rows before (negative:
    rows cropped), H_out + dilation*(KH - 1) rows in all (`scratch_hw`), read by the weights
    transposed per group and flipped (`conv_weight`) with the dilation."""

    weight_shape: tuple[int, int, int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    output_padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    @classmethod
    def checked(cls, weight_shape: tuple[int, ...], opts: dict[str, Any]) -> ConvTransposeArgs:
        c_in, cop, kh, kw = (int(v) for v in weight_shape)
        if min(c_in, cop, kh, kw) < 1:
            raise ValueError(f"weight must have no empty dimension, got shape {tuple(weight_shape)}")
        s = pair("stride", opts["stride"], minimum=1)
        p = pair("padding", opts["padding"], minimum=0)
        op = pair("output_padding", opts["output_padding"], minimum=0)
        d = pair("dilation", opts["dilation"], minimum=1)
        g = opts["groups"]
        if isinstance(g, (bool, np.bool_)) or not isinstance(g, (int, np.integer)):
            raise TypeError(f"groups must be an int, got {g!r}")
        if int(g) < 1 or c_in % int(g):
            raise ValueError(f"groups must be >= 1 and divide C_in = weight.shape[0] ({c_in}), got {g}")
        for axis in range(2):
            if op[axis] >= max(s[axis], d[axis]):
                raise ValueError(
                    f"output_padding must be smaller than stride or dilation (as torch requires), got "
                    f"output_padding={op}, stride={s}, dilation={d}"
                )
        return cls((c_in, cop, kh, kw), s, p, op, d, int(g))

    @property
    def c_out(self) -> int:
        return self.weight_shape[1] * self.groups

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        out = []
        for axis, size in enumerate((h, w)):
            s, p = self.stride[axis], self.padding[axis]
            o = (size - 1) * s - 2 * p + self._extent(axis) + self.output_padding[axis] + 1
            if o < 1:
                raise ValueError(
                    f"conv_transpose2d of an input of {h} x {w} gives an output size of {o} < 1: "
                    f"padding {self.padding} is too large"
                )
            if o + self._extent(axis) > MAX_PARAM:
                raise ValueError(f"conv_transpose2d output size {o} exceeds the kernels' 32-bit arithmetic")
            out.append(o)
        return out[0], out[1]

    def check_input(self, shape: Any) -> tuple[int, int, int, int]:
        """An NCHW input shape whose C is the weight's C_in."""
        n, c, h, w = input_shape4("x", shape)
        if c != self.weight_shape[0]:
            raise ValueError(
                f"x has {c} channels; the weight [C_in, C_out/groups, KH, KW] takes C_in = {self.weight_shape[0]}"
            )
        return n, c, h, w

    def _extent(self, axis: int) -> int:
        """dilation*(K - 1) along axis 0 (H) or 1 (W)."""
        return self.dilation[axis] * (self.weight_shape[2 + axis] - 1)

    def border(self) -> tuple[int, int]:
        """Rows and columns of zero points before the input's first (negative: cropped)."""
        return self._extent(0) - self.padding[0], self._extent(1) - self.padding[1]

    def scratch_hw(self, h: int, w: int) -> tuple[int, int]:
        """The zero-inserted, padded input's H and W for an input of h x w."""
        oh, ow = self.output_hw(h, w)
        return oh + self._extent(0), ow + self._extent(1)

    def conv_weight(self, weight: np.ndarray) -> np.ndarray:
        """The stride-1 conv's weight [C_out, C_in/groups, KH, KW]: w'[g*C_out/g + o, i, a, b] =
        w[g*C_in/g + i, o, KH-1-a, KW-1-b]."""
        c_in, cop, kh, kw = self.weight_shape
        g = self.groups
        wt = weight.reshape(g, c_in // g, cop, kh, kw).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
        return np.ascontiguousarray(wt.reshape(g * cop, c_in // g, kh, kw))


def conv_transpose2d(
    x: np.ndarray,
    weight: np.ndarray,
    weight_scales: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    input_scale: float,
    input_zero_point: int,
    **options: Unpack[ConvTransposeOptions],
) -> np.ndarray:
    """Quantized conv_transpose2d computed directly: every input pixel's (x - zp_in) times each
    tap of the weight scattered into the output in int32 (output row ih*stride - padding +
    kh*dilation), then conv2d's requantization (`_conv_epilogue`).

    Args:
        x: int8 [N, C_in, H, W], per-tensor affine (input_scale, input_zero_point).
        weight: int8 symmetric [C_in, C_out/groups, KH, KW] (torch's transposed layout).
        weight_scales: float32 [C_out], > 0: output channel g*C_out/groups + o's weights are
            weight[g*C_in/groups:(g+1)*C_in/groups, o] * weight_scales[g*C_out/groups + o].
        bias: optional float [C_out], real units.
        **options: `ConvTransposeOptions`.

    Returns:
        int8 [N, C_out, H_out, W_out].
    """
    check_keywords("conv_transpose2d", options, ConvTransposeOptions)
    opts = {**CONV_TRANSPOSE_DEFAULTS, **options}
    x = check_int8_array("x", x, ndim=4)
    weight = check_int8_array("weight", weight, ndim=4)
    args = ConvTransposeArgs.checked(weight.shape, opts)
    n, c_in, h, w = args.check_input(x.shape)
    oh, ow = args.output_hw(h, w)
    s_in = np.float32(check_scale("input_scale", input_scale))
    zp_in = check_zero_point("input_zero_point", input_zero_point)
    s_out = np.float32(check_scale("output_scale", opts["output_scale"]))
    zp_out = check_zero_point("output_zero_point", opts["output_zero_point"])
    c_out = args.c_out
    w_scales = check_float_vector("weight_scales", weight_scales, c_out, positive=True)
    b = np.zeros(c_out, np.float32) if bias is None else check_float_vector("bias", bias, c_out)
    activation = check_activation(opts["activation"])
    g, (_, cop, kh, kw) = args.groups, args.weight_shape
    (sh, sw), (ph, pw), (dh, dw) = args.stride, args.padding, args.dilation
    xg = (x.astype(np.int32) - zp_in).transpose(0, 2, 3, 1).reshape(n, h, w, g, c_in // g)
    wg = weight.astype(np.int32).reshape(g, c_in // g, cop, kh, kw)
    # Every tap's products land on a canvas of the uncropped output; padding crops it.
    acc = np.zeros((n, oh + 2 * ph, ow + 2 * pw, g, cop), np.int32)
    with np.errstate(over="ignore"):  # int32 wraps like the GPU's (the conv's K bound keeps it exact)
        for i in range(kh):
            for j in range(kw):
                rows = slice(i * dh, i * dh + sh * (h - 1) + 1, sh)
                cols = slice(j * dw, j * dw + sw * (w - 1) + 1, sw)
                acc[:, rows, cols] += np.einsum("nhwgc,gco->nhwgo", xg, wg[..., i, j])
    sums = acc[:, ph : ph + oh, pw : pw + ow].reshape(n, oh, ow, c_out)  # padding crops the canvas
    check_scale_product(s_in, w_scales)
    requant = ConvRequant.of(s_in, w_scales, b, s_out, c_in // g * kh * kw)
    out = _conv_epilogue(sums, requant, activation, float(s_out), zp_out)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))
