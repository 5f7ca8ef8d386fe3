"""Pure-numpy reference of the q8ta conv2d (spec section 2): im2col + int32 GEMM + float32
epilogue, bit for bit what the GPU kernels are meant to compute (up to fma contraction)."""

from __future__ import annotations

from typing import Any, Unpack

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
from .geometry import ConvGeometry, pair
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
    input_shape4,
)

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
    """Quantized conv2d, exactly as spec section 2 (im2col, int32 GEMM, float32 epilogue).

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

    # Epilogue constants, each rounded to float32 once, as the host does.
    scale = check_scale_product(s_in, w_scales).reshape(G, Cop)
    bias_g = b.reshape(G, Cop)
    inv = np.float32(1) / s_out
    zp_out_f = np.float32(zp_out)

    out = np.empty((geo.M, G, Cop), np.int8)
    chunk = max(1, _CHUNK_BYTES // (4 * Kpg))
    # int32 arithmetic wraps like the GPU's; with K_per_group <= 2^16 nothing can overflow.
    with np.errstate(over="ignore", invalid="ignore"):
        for m0 in range(0, geo.M, chunk):
            m1 = min(m0 + chunk, geo.M)
            for g in range(G):
                acc = a[m0:m1, g, :].astype(np.int32) @ wq[g]
                adj = acc - zp_wsum[g]
                y = adj.astype(np.float32) * scale[g]
                y = _activate(y + bias_g[g], activation)
                q = np.rint(y * inv) + zp_out_f
                out[m0:m1, g, :] = np.clip(q, -128, 127).astype(np.int8)

    out = out.reshape(geo.N, geo.H_out, geo.W_pad, geo.C_out)[:, :, : geo.W_out, :]
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


# ---- the non-conv ops of a quantized CNN (PT2E float path: dequantize, op in float32, quantize) --
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
    a = real_array("x", x)
    with np.errstate(over="ignore"):
        x32 = a.astype(np.float32)
    if np.isnan(x32).any():
        raise ValueError("x must not contain NaN")
    return _quantize_f32(x32, inv, zp)


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
    """Quantized add: quantize(dequantize(a) + dequantize(b)), float32 in PyTorch's order
    (dequantize a, dequantize b, add, relu, multiply by float32(1/output_scale), round half to
    even, add the zero point, clamp to [-128, 127]).

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
    inv = inv_scale("output_scale", output_scale)
    zp_out = check_zero_point("output_zero_point", output_zero_point)
    act = check_activation(activation)
    with np.errstate(over="ignore"):
        y = _dequantize_f32(a, sa, zpa) + _dequantize_f32(b, sb, zpb)
    return _quantize_f32(_activate(y, act), inv, zp_out)


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
    input_scale: float,
    inv_s_out: float,
    output_zero_point: int,
    activation: str = "none",
) -> np.ndarray:
    """y = f32(sum) * s_in / f32(divisor) in float32, activated, quantized; empty windows give
    y = 0."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        scaled = sums.astype(np.int32).astype(np.float32) * np.float32(input_scale)
        y = scaled / divisor.astype(np.float32)
    return _quantize_f32(
        _activate(np.where(empty, np.float32(0), y), activation), inv_s_out, output_zero_point
    )


def _pool_quantization(options: AvgPoolOptions) -> tuple[float, int, float, int]:
    """An average pool's (input scale, input zero point, float32(1 / output scale), output zero
    point), checked."""
    s_in = check_scale("input_scale", options["input_scale"])
    zp_in = check_zero_point("input_zero_point", options["input_zero_point"])
    inv = inv_scale("output_scale", options["output_scale"])
    return s_in, zp_in, inv, check_zero_point("output_zero_point", options["output_zero_point"])


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
    y = float32(sum) * input_scale / divisor in float32, then quantized to (output_scale,
    output_zero_point) with torch's quantize_per_tensor; `activation` ("relu", "relu6") applied
    to y before (`pooling.AvgPoolOptions`). Returns int8 [N, C, H_out, W_out]."""
    check_keywords("avg_pool2d", options, AvgPoolOptions)
    x = check_int8_array("x", x, ndim=4)
    win = PoolWindow.checked(kernel_size, stride, padding, 1, ceil_mode)
    include_pad = check_bool("count_include_pad", count_include_pad)
    override = check_divisor_override(divisor_override)
    s_in, zp_in, inv, zp_out = _pool_quantization(options)
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
    return _average(sums, divisor, taps == 0, s_in, inv, zp_out, checked_activation(options))


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
    s_in, zp_in, inv, zp_out = _pool_quantization(options)
    _, _, h, w = input_shape4("x", x.shape)
    ho, wo = adaptive_output_hw(output_size, h, w)
    h0, h1 = adaptive_windows(h, ho)
    w0, w1 = adaptive_windows(w, wo)
    taps = np.outer(h1 - h0, w1 - w0)
    check_window_taps(int(taps.max()))
    sums = _window_sums(x, zp_in, (h0, h1), (w0, w1))
    return _average(sums, taps, taps == 0, s_in, inv, zp_out, checked_activation(options))


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
    if function == "relu":
        return np.maximum(x, f32(0))
    if function in ("relu6", "hardtanh"):
        lo, hi = (0.0, 6.0) if function == "relu6" else (lo, hi)
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
    """

    min_val: float
    max_val: float


LOOKUP_DEFAULTS = {"min_val": -1.0, "max_val": 1.0}


def lookup(x: np.ndarray, function: str, **options: Unpack[LookupOptions]) -> np.ndarray:
    """An elementwise function of int8 x (any shape), PT2E float path: quantize(function(
    dequantize(x))) in float32 (dequantize: (x - zp)*scale; quantize: torch's
    quantize_per_tensor). function: one of LOOKUP_FUNCTIONS; options: `LookupOptions`.
    Returns int8 with the shape of x; with x = INT8_VALUES, the function's table."""
    check_keywords("lookup", options, LookupOptions)
    opts = {**LOOKUP_DEFAULTS, **options}
    x = check_int8_array("x", x)
    name, lo, hi = check_lookup_function(function, opts["min_val"], opts["max_val"])
    s_in = check_scale("input_scale", opts["input_scale"])
    zp_in = check_zero_point("input_zero_point", opts["input_zero_point"])
    inv = inv_scale("output_scale", opts["output_scale"])
    zp_out = check_zero_point("output_zero_point", opts["output_zero_point"])
    with np.errstate(over="ignore"):
        y = _elementwise_f32(_dequantize_f32(x, s_in, zp_in), name, lo, hi)
    return _quantize_f32(y, inv, zp_out)


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
    scale and zero point, PT2E float path: quantize(cat(dequantize(x_k))), `activation` ("relu",
    "relu6") applied to the float values before quantizing. Equal parameters: a copy.

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
    inv = inv_scale("output_scale", output_scale)
    zp_out = check_zero_point("output_zero_point", output_zero_point)
    act = check_activation(activation)
    first = xs[0].shape
    for i, t in enumerate(xs):
        if t.ndim < 2 or t.ndim != len(first) or t.shape[:1] + t.shape[2:] != first[:1] + first[2:]:
            raise ValueError(
                f"tensors[{i}] has shape {t.shape}; every tensor must have the shape of tensors[0] "
                f"{first} except in dimension 1 (rank >= 2)"
            )
    with np.errstate(over="ignore"):
        parts = [_dequantize_f32(t, s, z) for t, s, z in zip(xs, scales, zps, strict=True)]
        y = np.concatenate(parts, axis=1)
    return _quantize_f32(_activate(y, act), inv, zp_out)


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
