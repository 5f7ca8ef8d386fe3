"""Pure-numpy reference of the q8ta conv2d (spec section 2): im2col + int32 GEMM + float32
epilogue, bit for bit what the GPU kernels are meant to compute (up to fma contraction)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import (
    check_float_vector,
    check_int8_array,
    check_scale,
    check_scale_product,
    check_zero_point,
)
from .geometry import ConvGeometry, pair

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
    output_scale: float,
    output_zero_point: int,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    activation: str = "none",
    method: str = "auto",
    device: Any = None,
) -> np.ndarray:
    """Quantized conv2d, exactly as spec section 2 (im2col, int32 GEMM, float32 epilogue).

    Args:
        x: int8 input [N, C_in, H, W], per-tensor affine (input_scale, input_zero_point).
        weight: int8 symmetric weights [C_out, C_in/groups, KH, KW].
        weight_scales: per-output-channel weight scales [C_out], finite, > 0 (as float32).
        bias: optional float bias [C_out], in real output units, added after scaling.
        input_scale, input_zero_point: quantization of x.
        output_scale, output_zero_point: quantization of the result.
        stride, padding, dilation: int or (h, w) pair.
        groups: divides C_in and C_out.
        activation: "none", "relu" or "relu6" (applied in float before requantization).
        method, device: accepted for API compatibility with the GPU path; ignored.

    Returns:
        int8 [N, C_out, H_out, W_out].
    """
    del method, device  # the reference has one method and no device
    x = check_int8_array("x", x, ndim=4)
    weight = check_int8_array("weight", weight, ndim=4)
    geo = _geometry(x.shape, weight.shape, stride, padding, dilation, groups)
    s_in = np.float32(check_scale("input_scale", input_scale))
    zp_in = check_zero_point("input_zero_point", input_zero_point)
    s_out = np.float32(check_scale("output_scale", output_scale))
    zp_out = check_zero_point("output_zero_point", output_zero_point)
    w_scales = check_float_vector("weight_scales", weight_scales, geo.C_out, positive=True)
    if bias is None:
        b = np.zeros(geo.C_out, np.float32)
    else:
        b = check_float_vector("bias", bias, geo.C_out)
    if not isinstance(activation, str):
        raise TypeError(f"activation must be a str, got {type(activation).__name__}")
    if activation not in ("none", "relu", "relu6"):
        raise ValueError(f'activation must be "none", "relu" or "relu6", got {activation!r}')

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
                y = y + bias_g[g]
                if activation in ("relu", "relu6"):
                    y = np.maximum(y, np.float32(0))
                if activation == "relu6":
                    y = np.minimum(y, np.float32(6))
                q = np.rint(y * inv) + zp_out_f
                out[m0:m1, g, :] = np.clip(q, -128, 127).astype(np.int8)

    out = out.reshape(geo.N, geo.H_out, geo.W_pad, geo.C_out)[:, :, : geo.W_out, :]
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))
