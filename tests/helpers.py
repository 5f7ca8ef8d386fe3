"""Helpers, constants and test data shared by more than one test module. Test modules import
from here, never from each other (tests/test_lint.py checks); fixtures and pytest hooks stay in
conftest.py, whose session summary prints LSB_REPORT (the list assert_within_1lsb appends to)."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import pytest

from q8ta_wgpu.configs import ConvConfig
from q8ta_wgpu.quant import quantize

# --- the 1-LSB check (the session summary prints what it recorded) -----------------------------

# (test id, max |diff| in LSB, differing elements, total elements), printed at the end.
LSB_REPORT: list[tuple[str, int, int, int]] = []


def assert_within_1lsb(got: np.ndarray, want: np.ndarray, what: str, *, exact: bool = False) -> int:
    """Assert |got - want| <= 1 (or == 0 with exact=True) elementwise; record and return the count
    of differing elements."""
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype == np.int8, f"{what}: dtypes {got.dtype}, {want.dtype}"
    d = np.abs(got.astype(np.int32) - want.astype(np.int32))
    worst, count = int(d.max(initial=0)), int(np.count_nonzero(d))
    LSB_REPORT.append((what, worst, count, d.size))
    limit = 0 if exact else 1
    assert worst <= limit, f"{what}: max diff {worst} LSB (> {limit}); {count} of {d.size} elements differ"
    return count


def garbage_out(dev: Any, shape: tuple[int, ...], layout: str, scale: float, zp: int) -> Any:
    """An output QTensor in `layout` whose buffer holds garbage (an op's passes must write every
    word): tests/test_elementwise.py, tests/test_resample.py."""
    import q8ta_wgpu as q8
    from q8ta_wgpu.layouts import packed_words

    nbytes = 4 * packed_words(shape, layout)
    buf = dev.buffer(nbytes)
    dev.write(buf, np.full(nbytes, 0xAB, np.uint8))
    return q8.QTensor(buf, shape, layout, scale, zp, dev)


# --- which spec configs are slow (tests/test_reference.py, tests/test_conv.py) ------------------


def _is_big(cfg: ConvConfig) -> bool:
    """Marked slow: 256x256 inputs or >= 5e8 MACs (each such case takes ~0.3-2 s in the reference
    checks, up to ~7 s through every GPU method on lavapipe)."""
    return cfg.h * cfg.w >= 256 * 256 or cfg.geometry().macs >= 5e8


def big_marked_slow(configs: list[ConvConfig]) -> list[Any]:
    """configs as parameters, the big ones (_is_big) marked slow."""
    return [pytest.param(c, marks=pytest.mark.slow) if _is_big(c) else c for c in configs]


# --- layouts: shapes and zero points (tests/test_layouts.py, tests/test_backends.py) ----------

SHAPES = [(1, 1, 1, 1), (1, 3, 5, 7), (2, 5, 3, 9), (3, 8, 4, 4), (2, 13, 7, 6), (1, 4, 1, 13), (2, 17, 2, 1)]
ZPS = [-128, 0, 5, 127]


# --- conv configurations and methods (tests/test_conv.py, tests/test_backends.py) --------------


def methods_for(cfg: ConvConfig, *, fused: bool = True) -> list[str]:
    """Every method valid for cfg's conv on a 4W4C input: both im2col kernels, and the fused
    implicit GEMM. With groups == 1 any C_in takes the 4W4C kernels (run with C_in padded to a
    multiple of 4). fused=False: the im2col kernels that make cfg's own im2col matrix (the
    4W4C one needs C_in/groups % 4 == 0 for that)."""
    ms = ["im2col_generic"]
    if (cfg.c_in // cfg.groups) % 4 == 0 or (fused and cfg.groups == 1):
        ms.append("im2col_4w4c")
        if fused and (cfg.groups == 1 or (cfg.c_out // cfg.groups) % 4 == 0):
            ms.append("implicit_4w4c")
    if fused and cfg.c_in == cfg.c_out == cfg.groups > 1:
        ms.append("depthwise_4w4c")
    return ms


def _cfg(co, ci, h, w, k, s=1, p=0, d=1, g=1, n=1):
    pr = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    return ConvConfig("x", co, ci, h, w, pr(k), pr(s), pr(p), pr(d), g, n)


EXTRA = {
    "batch2": _cfg(16, 8, 9, 11, 3, 1, 1, n=2),
    "batch3_generic_odd_c": _cfg(7, 5, 6, 7, 3, 1, 1, n=3),
    "cin_cout_odd": _cfg(13, 7, 10, 9, 3, 1, 1),
    "cin1": _cfg(6, 1, 8, 8, 3, 1, 1),
    "dilation2": _cfg(12, 8, 12, 12, 3, 1, 2, d=2),
    "dilation_asym": _cfg(8, 8, 13, 11, 3, 1, (1, 3), d=(1, 3)),
    "stride_2_1_pad_0_2": _cfg(16, 8, 11, 10, 3, (2, 1), (0, 2)),
    "stride_1_3": _cfg(8, 4, 9, 17, 3, (1, 3), 1),
    "groups2_odd_cout_pg": _cfg(6, 8, 7, 7, 3, 1, 1, g=2),
    "groups3_cpg3": _cfg(9, 9, 6, 6, 3, 1, 1, g=3),
    "depthwise": _cfg(16, 16, 10, 10, 3, 1, 1, g=16),
    "depthwise_multiplier2": _cfg(16, 8, 9, 9, 3, 2, 1, g=8),
    "depthwise_odd_c": _cfg(7, 7, 8, 5, 3, 1, 1, g=7),
    "k1x1_strided": _cfg(20, 12, 9, 9, 1, 2, 0),
    "k1x1_padded": _cfg(8, 8, 5, 5, 1, 1, 1),
    "k5x5": _cfg(12, 8, 14, 13, 5, 1, 2),
    "k7x7_s2": _cfg(16, 3, 23, 23, 7, 2, 3),
    "k1x3": _cfg(8, 8, 6, 9, (1, 3), 1, (0, 1)),
    "h1": _cfg(8, 8, 1, 17, (1, 3), 1, (0, 1)),
    "w1": _cfg(8, 8, 17, 1, (3, 1), 1, (1, 0)),
    "h1w1": _cfg(8, 12, 1, 1, 1),
    "h1w1_padded_3x3": _cfg(8, 4, 1, 1, 3, 1, 1),
    "wide_w_odd": _cfg(4, 4, 3, 61, 3, 1, 1),
    "groups4_batch2_5x5": _cfg(16, 16, 12, 12, 5, 2, 2, g=4, n=2),
}


# --- spec test data, float64 conv, torch's quantized conv (tests/test_reference.py, test_conv.py) -

# Spec section 5 test data.
S_IN, ZP_IN, S_OUT, ZP_OUT = 0.008123, 2, 0.05314, -1


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else v


def _out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


@dataclasses.dataclass(frozen=True)
class Case:
    """One conv2d test configuration. s_out None means: pick it from the float result so that
    the outputs use the int8 range instead of saturating."""

    id: str
    N: int
    C_out: int
    C_in: int
    H: int
    W: int
    k: int | tuple[int, int]
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    dilation: int | tuple[int, int] = 1
    groups: int = 1
    zp_in: int = ZP_IN
    zp_out: int = ZP_OUT
    s_out: float | None = S_OUT
    bias: bool = False
    relu: bool = False
    slow: bool = False

    def conv_kwargs(self) -> dict[str, Any]:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)


def _float_conv(
    x_q: np.ndarray,
    zp_in: int,
    s_in: float,
    w_q: np.ndarray,
    w_scales: np.ndarray,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: int,
) -> np.ndarray:
    """Dequantize, then a float64 direct convolution with zero padding (no bias, no relu)."""
    x = (x_q.astype(np.float64) - zp_in) * float(np.float32(s_in))
    w = w_q.astype(np.float64) * w_scales.astype(np.float64)[:, None, None, None]
    N, C_in, H, W = x.shape
    C_out, Cpg, KH, KW = w.shape
    (SH, SW), (PH, PW), (DH, DW) = _pair(stride), _pair(padding), _pair(dilation)
    Ho, Wo = _out_size(H, KH, SH, PH, DH), _out_size(W, KW, SW, PW, DW)
    G, Cop = groups, C_out // groups
    xp = np.zeros((N, C_in, H + 2 * PH, W + 2 * PW))
    xp[:, :, PH : PH + H, PW : PW + W] = x
    wg = w.reshape(G, Cop, Cpg, KH, KW)
    y = np.zeros((N, G, Cop, Ho, Wo))
    for kh in range(KH):
        for kw in range(KW):
            patch = xp[
                :,
                :,
                kh * DH : kh * DH + SH * (Ho - 1) + 1 : SH,
                kw * DW : kw * DW + SW * (Wo - 1) + 1 : SW,
            ]
            patch = patch.reshape(N, G, Cpg, Ho, Wo)
            y += np.einsum("ngchw,goc->ngohw", patch, wg[:, :, :, kh, kw], optimize=True)
    return y.reshape(N, C_out, Ho, Wo)


def _requantize(y: np.ndarray, bias: np.ndarray | None, relu: bool, s_out: float, zp_out: int) -> np.ndarray:
    if bias is not None:
        y = y + bias.astype(np.float64)[None, :, None, None]
    if relu:
        y = np.maximum(y, 0.0)
    q = np.rint(y / float(np.float32(s_out))) + zp_out
    return np.clip(q, -128, 127).astype(np.int8)


@dataclasses.dataclass
class Data:
    x: np.ndarray
    w: np.ndarray
    w_scales: np.ndarray
    bias: np.ndarray | None
    s_out: float
    y_float: np.ndarray | None  # float64 conv before bias/relu


# torch's int8 conv kernels without VNNI (oneDNN's AVX2/AVX-512 paths, fbgemm) add u8*s8 pairs in
# int16 with saturation: with quint8 activations up to 255 and weights of magnitude 128, a pair
# (2*255*128 = 65280) saturates and torch is off by up to ~100 LSB (measured with
# ONEDNN_MAX_CPU_ISA=AVX2 on this project's CI machine). Weights in [-64, 64] keep every pair
# under 2^15 on every instruction set, so the torch cross-checks draw them there.
TORCH_SAFE_W = 64


def _make_data(case: Case, *, need_float: bool = True, w_max: int = 128) -> Data:
    """Spec test data for a case (weights in [-w_max, w_max - 1], w_max = 128: the spec's full
    range). The float64 conv is only computed when asked for or when the output scale is derived
    from it."""
    rng = np.random.default_rng(_seed(case.id))
    KH, KW = _pair(case.k)
    x = quantize(rng.uniform(-1, 1, (case.N, case.C_in, case.H, case.W)).astype(np.float32), S_IN, case.zp_in)
    w = rng.integers(-w_max, w_max, (case.C_out, case.C_in // case.groups, KH, KW), dtype=np.int8)
    w_scales = rng.uniform(0.005, 0.015, case.C_out).astype(np.float32)
    y = None
    std = 1.0
    if need_float or case.s_out is None:
        y = _float_conv(
            x, case.zp_in, S_IN, w, w_scales, case.stride, case.padding, case.dilation, case.groups
        )
        std = float(y.std()) or 1.0
    # Adaptive output scale: about +-4 sigma over the int8 range.
    s_out = float(np.float32(4 * std / 127)) if case.s_out is None else case.s_out
    # Upstream-scale cases: bias of ~+-1 real unit (~+-19 LSB); others: ~+-1 sigma.
    bias_mag = 1.0 if case.s_out is not None else std
    bias = rng.uniform(-bias_mag, bias_mag, case.C_out).astype(np.float32) if case.bias else None
    return Data(x, w, w_scales, bias, s_out, y)


def _seed(name: str) -> int:
    return sum((i + 1) * ord(c) for i, c in enumerate(name))  # stable across runs (no hash())


# Engine survey (torch 2.13.0+cpu on an x86 CPU with AVX512-VNNI; all 46 cases of
# tests/test_reference.py, 19.6M outputs): no engine is bit-exact, because each requantizes with one fused multiplier
# s_in*s_w/s_out (and some quantize the bias to int32) where the spec multiplies twice in float32;
# values near a .5 tie then round the other way.
# - onednn and x86 (identical here): max 1 LSB, 114 outputs differ (~6e-6);
# - qnnpack: max 1 LSB, 2062 differ (~1e-4; it rounds the bias to int32 at scale s_in*s_w);
# - fbgemm: closest elsewhere (15 differ), but depthwise convs with padding and a non-zero input
#   zero point are off by up to ~90 LSB (not int16 saturation: this CPU takes the VNNI path;
#   padding 0 is exact), so it cannot check depthwise.
# We use onednn: within 1 LSB on every case.
TORCH_ENGINE = "onednn"


def _torch_conv(case: Case, d: Data) -> np.ndarray:
    torch = pytest.importorskip("torch", reason="PyTorch is needed for the quantized-conv check")
    aoF = pytest.importorskip(
        "torch.ao.nn.quantized.functional",
        reason="torch.ao quantized functional ops are unavailable",
    )
    if TORCH_ENGINE not in torch.backends.quantized.supported_engines:
        pytest.skip(f"torch quantized engine {TORCH_ENGINE} is unavailable")
    s_in = float(np.float32(S_IN))
    s_out = float(np.float32(d.s_out))
    old_engine = torch.backends.quantized.engine
    torch.backends.quantized.engine = TORCH_ENGINE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # quantized tensors are deprecated
            # quint8 activations: int8 values and zero points shifted by +128 (same real values).
            x_real = torch.from_numpy((d.x.astype(np.float32) - case.zp_in) * np.float32(s_in))
            xt = torch.quantize_per_tensor(x_real, s_in, case.zp_in + 128, torch.quint8)
            assert np.array_equal(xt.int_repr().numpy().astype(np.int16) - 128, d.x)
            scales = torch.from_numpy(d.w_scales.astype(np.float64))
            w_real = torch.from_numpy(d.w.astype(np.float64)) * scales[:, None, None, None]
            wt = torch.quantize_per_channel(
                w_real.float(), scales, torch.zeros(case.C_out, dtype=torch.int64), 0, torch.qint8
            )
            assert np.array_equal(wt.int_repr().numpy(), d.w)
            bias = None if d.bias is None else torch.from_numpy(d.bias)
            s, p, dl = _pair(case.stride), _pair(case.padding), _pair(case.dilation)
            yt = aoF.conv2d(
                xt,
                wt,
                bias,
                stride=s,
                padding=p,
                dilation=dl,
                groups=case.groups,
                scale=s_out,
                zero_point=case.zp_out + 128,
                dtype=torch.quint8,
            )
            q = yt.int_repr().numpy().astype(np.int16) - 128
    finally:
        torch.backends.quantized.engine = old_engine
    if case.relu:
        q = np.maximum(q, case.zp_out)  # same as a fused relu: real 0 is zp_out
    return q.astype(np.int8)


# --- PyTorch 2 export quantization (torchao) ---------------------------------------------------


def pt2e_int8(model: Any, quantizer: object, example: Any, *, calibration_seed: int = 1) -> Any:
    """`model` through `q8.quantize_pt2e` with `quantizer` (a dynamic batch, so that other batch
    sizes run through PyTorch too), calibrated on 4 random batches of 8 of the example's size."""
    import torch

    import q8ta_wgpu as q8

    gen = torch.Generator().manual_seed(calibration_seed)
    calibration = [torch.randn(8, *example.shape[1:], generator=gen) for _ in range(4)]
    return q8.quantize_pt2e(model, calibration, quantizer)


def random_bn(c: int, gen: Any) -> Any:
    """nn.BatchNorm2d(c) with random affine parameters and running statistics from the
    torch.Generator `gen` (so a fused conv + BN has non-trivial scales and biases)."""
    import torch

    from q8ta_wgpu.models import randomize_bn

    return randomize_bn(torch.nn.BatchNorm2d(c), gen)
