"""The numpy reference (q8ta_wgpu.reference) against independent implementations:

- im2col against a plain Python loop over (n, h_out, w_out, g, kh, kw, ic);
- conv2d against a float64 direct convolution (per-tap np.einsum, no im2col, no zero-point
  trick) and against PyTorch's quantized conv2d.

Tolerance is 1 output LSB (spec section 2: float contraction order may move a value that sits
on a rounding tie); every failure message reports how many elements differ.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from q8ta_wgpu import reference
from q8ta_wgpu.configs import POINTWISE_CONFIGS, SPEC_CONFIGS

from .helpers import (
    S_IN,
    TORCH_ENGINE,
    TORCH_SAFE_W,
    Case,
    Data,
    _is_big,
    _make_data,
    _out_size,
    _pair,
    _requantize,
    _torch_conv,
    assert_within_1lsb,
)

# At most this fraction of the outputs (plus 2) may be 1 LSB off. Float32 rounding moves only
# values within ~1e-5 LSB of a .5 tie, so real runs show ~1e-5; a systematic error is far above.
MAX_DIFF_FRACTION = 1e-3


def _align4(v: int) -> int:
    return -(-v // 4) * 4


def _spec_cases() -> list[Case]:
    """Spec section 5 configs with upstream's data. Upstream's bias is always zero; ours varies
    bias and relu over the configs so both paths are checked."""
    cases = []
    for i, cfg in enumerate(SPEC_CONFIGS + POINTWISE_CONFIGS):
        cases.append(
            Case(
                cfg.name, cfg.n, cfg.c_out, cfg.c_in, cfg.h, cfg.w, cfg.kernel, cfg.stride,
                cfg.padding, cfg.dilation, cfg.groups, bias=i % 2 == 1, relu=i % 3 == 2,
                slow=_is_big(cfg),
            )
        )  # fmt: skip
    return cases


# Beyond upstream: batch > 1, zero points at the ends of the range, bias, relu, depthwise,
# dilation, asymmetric kernels/strides/padding, C not a multiple of 4.
# fmt: off
#       id                     N  C_out C_in H  W   kernel  stride  padding dilation
EXTRA_CASES = [
    Case("zp-128to127_bias",      2, 8,  6,  9, 11, 3,      1,      1,      zp_in=-128, zp_out=127,
         s_out=None, bias=True),
    Case("zp127to-128_relu_g3",   1, 12, 12, 10, 10, 3,     2,      1,      groups=3, zp_in=127,
         zp_out=-128, s_out=None, bias=True, relu=True),
    Case("zp37_mult2_asym",       3, 10, 5, 13, 7, (3, 2),  (2, 1), (1, 0), groups=5, zp_in=37,
         zp_out=37, s_out=None, bias=True),
    Case("depthwise_relu_n2",     2, 16, 16, 15, 15, 3,     1,      1,      groups=16, s_out=None,
         bias=True, relu=True),
    Case("depthwise_s2_d2",       1, 24, 24, 20, 20, 3,     2,      2,      2, groups=24, zp_in=-5,
         zp_out=10, s_out=None),
    Case("dilation2_n2_relu",     2, 16, 12, 17, 19, 3,     1,      2,      2, zp_in=-128,
         zp_out=-128, s_out=None, bias=True, relu=True),
    Case("dilation_asym_g2",      1, 8,  8, 16, 16, (3, 5), (1, 2), (2, 1), (2, 1), groups=2,
         s_out=None, bias=True),
    Case("stride21_pad02_n2",     2, 12, 6, 11, 14, (5, 3), (2, 1), (0, 2), zp_in=0, zp_out=0,
         s_out=None, bias=True),
    Case("cpg3_g3_n3",            3, 9,  9,  8,  9, 3,      1,      1,      groups=3, zp_in=-77,
         zp_out=5, s_out=None, bias=True, relu=True),
    Case("1x1_pad1_s2_bias",      1, 7,  5,  9,  9, 1,      2,      1,      s_out=None, bias=True),
    Case("kernel_is_input",       1, 4,  3,  5,  5, 5,      zp_in=100, zp_out=-100, s_out=None,
         bias=True),
    Case("stride34_k2",           1, 6,  4, 10, 10, 2,      (3, 4), 1,      zp_in=-1, zp_out=1,
         s_out=None),
    Case("c7_relu_upstream_scale", 2, 5, 7, 12, 12, 3,      1,      1,      bias=True, relu=True),
    Case("bigN_depthwise_d3",     3, 8,  8, 14, 12, 3,      (1, 2), 3,      3, groups=8, zp_in=64,
         zp_out=-64, s_out=None, bias=True),
]
# fmt: on

ALL_CASES = _spec_cases() + EXTRA_CASES


def _params(cases: list[Case]) -> list[Any]:
    return [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else []) for c in cases]


# --- independent implementations ---------------------------------------------------------------


def _direct_im2col(
    x: np.ndarray,
    kh_kw: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    zp: int,
) -> np.ndarray:
    """im2col by the definition, one element at a time."""
    N, C, H, W = x.shape
    KH, KW = kh_kw
    (SH, SW), (PH, PW), (DH, DW) = stride, padding, dilation
    Ho, Wo = _out_size(H, KH, SH, PH, DH), _out_size(W, KW, SW, PW, DW)
    Wp = _align4(Wo)
    Cpg = C // groups
    Kpg = _align4(KH * KW * Cpg)
    a = np.full((N * Ho * Wp, groups * Kpg), zp, dtype=np.int8)
    for n in range(N):
        for ho in range(Ho):
            for wo in range(Wo):
                m = (n * Ho + ho) * Wp + wo
                for g in range(groups):
                    for kh in range(KH):
                        for kw in range(KW):
                            h = ho * SH - PH + kh * DH
                            w = wo * SW - PW + kw * DW
                            if not (0 <= h < H and 0 <= w < W):
                                continue
                            for ic in range(Cpg):
                                col = g * Kpg + (kh * KW + kw) * Cpg + ic
                                a[m, col] = x[n, g * Cpg + ic, h, w]
    return a


def _run_reference(case: Case, d: Data) -> np.ndarray:
    return reference.conv2d(
        d.x,
        d.w,
        d.w_scales,
        d.bias,
        input_scale=S_IN,
        input_zero_point=case.zp_in,
        output_scale=d.s_out,
        output_zero_point=case.zp_out,
        activation="relu" if case.relu else "none",
        **case.conv_kwargs(),
    )


def _assert_within_1lsb(got: np.ndarray, want: np.ndarray, label: str) -> int:
    """helpers' 1-LSB check (which also records the count for the session summary), plus a
    bound on how many elements may differ."""
    n_diff = assert_within_1lsb(got, want, label)
    assert n_diff <= 2 + MAX_DIFF_FRACTION * got.size, (
        f"{label}: {n_diff} of {got.size} elements differ by 1 LSB ({n_diff / got.size:.2e})"
    )
    return n_diff


# --- im2col ------------------------------------------------------------------------------------

IM2COL_CASES = [
    # (N, C, H, W, kernel, stride, padding, dilation, groups, zp)
    (1, 3, 5, 6, 3, 1, 1, 1, 1, 7),
    (2, 6, 7, 9, (3, 2), (2, 1), (1, 2), 1, 2, -128),
    (1, 5, 9, 8, 3, 1, 2, 2, 1, 127),
    (2, 8, 6, 6, 3, 2, 0, 1, 4, 0),
    (1, 4, 4, 4, 1, 1, 0, 1, 1, -3),
    (1, 3, 5, 5, (2, 3), (1, 2), (0, 1), (2, 1), 3, -3),
    (1, 12, 5, 7, 3, 1, 1, 1, 1, 2),
    (3, 7, 6, 5, (1, 3), (3, 1), (2, 0), (1, 2), 7, 55),
]


@pytest.mark.parametrize(("N", "C", "H", "W", "k", "s", "p", "d", "g", "zp"), IM2COL_CASES)
def test_im2col_matches_direct_loop(
    N: int, C: int, H: int, W: int, k: Any, s: Any, p: Any, d: Any, g: int, zp: int
) -> None:
    rng = np.random.default_rng(N * 1000 + C * 10 + g)
    x = rng.integers(-128, 128, (N, C, H, W), dtype=np.int8)
    want = _direct_im2col(x, _pair(k), _pair(s), _pair(p), _pair(d), g, zp)
    got = reference.im2col(x, k, stride=s, padding=p, dilation=d, groups=g, input_zero_point=zp)
    assert got.dtype == np.int8
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_im2col_padding_rows_and_columns_hold_zero_point() -> None:
    x = np.full((1, 3, 4, 5), 9, np.int8)  # W_out = 5 -> W_pad = 8; K_per_group 27 -> 28
    a = reference.im2col(x, 3, padding=1, input_zero_point=-4)
    assert a.shape == (4 * 8, 28)
    rows = a.reshape(4, 8, 28)
    assert np.all(rows[:, 5:, :] == -4)  # padded rows
    assert np.all(a[:, 27] == -4)  # padded K column
    assert np.all(rows[1:3, 1:4, :27] == 9)  # interior taps see only the input


def test_im2col_is_fast_for_large_inputs() -> None:
    import time

    x = np.zeros((1, 128, 256, 256), np.int8)
    t0 = time.perf_counter()
    a = reference.im2col(x, 5, stride=2, padding=2, groups=4, input_zero_point=2)
    assert a.shape == (128 * 128, 4 * 800)
    assert time.perf_counter() - t0 < 5.0


@pytest.mark.parametrize(
    ("x", "kwargs", "exc", "match"),
    [
        (np.zeros((1, 4, 5, 5), np.int16), {}, TypeError, "x"),
        (np.zeros((4, 5, 5), np.int8), {}, ValueError, "x"),
        (np.zeros((1, 4, 5, 5), np.int8), {"groups": 3}, ValueError, "groups"),
        (np.zeros((1, 4, 5, 5), np.int8), {"groups": 0}, ValueError, "groups"),
        (np.zeros((1, 4, 5, 5), np.int8), {"groups": 1.5}, TypeError, "groups"),
        (np.zeros((1, 4, 5, 5), np.int8), {"kernel_size": 0}, ValueError, "kernel_size"),
        (np.zeros((1, 4, 5, 5), np.int8), {"kernel_size": 7}, ValueError, "kernel"),
        (np.zeros((1, 4, 5, 5), np.int8), {"stride": 0}, ValueError, "stride"),
        (np.zeros((1, 4, 5, 5), np.int8), {"padding": -1}, ValueError, "padding"),
        (np.zeros((1, 4, 5, 5), np.int8), {"dilation": (1, 0)}, ValueError, "dilation"),
        (
            np.zeros((1, 4, 5, 5), np.int8),
            {"input_zero_point": 128},
            ValueError,
            "input_zero_point",
        ),
    ],
)
def test_im2col_rejects_bad_arguments(x: np.ndarray, kwargs: dict[str, Any], exc: type, match: str) -> None:
    kwargs = {"kernel_size": 3, **kwargs}
    k = kwargs.pop("kernel_size")
    with pytest.raises(exc, match=match):
        reference.im2col(x, k, **kwargs)


# --- conv2d: small cases stated by hand ---------------------------------------------------------


def _conv1x1(x: np.ndarray, **kw: Any) -> np.ndarray:
    args: dict[str, Any] = dict(input_scale=1.0, input_zero_point=0, output_scale=2.0, output_zero_point=0)
    args.update(kw)
    return reference.conv2d(x, np.ones((1, 1, 1, 1), np.int8), np.ones(1, np.float32), **args)


def test_conv2d_takes_and_ignores_the_gpu_options() -> None:
    # One ConvOptions dict serves the GPU path and the reference: method, output_layout and
    # device mean nothing here.
    x = np.arange(-8, 8, dtype=np.int8).reshape(1, 1, 2, 8)
    got = _conv1x1(x, method="implicit_4w4c", output_layout="4C", device=None)
    np.testing.assert_array_equal(got, _conv1x1(x))


def test_conv2d_rounds_half_to_even() -> None:
    # identity 1x1 conv, s_out 2: y/s_out = x/2 -> ties at odd x.
    x = np.array([-5, -3, -1, 0, 1, 3, 5, 7], np.int8).reshape(1, 1, 1, 8)
    got = _conv1x1(x)
    np.testing.assert_array_equal(got.ravel(), [-2, -2, 0, 0, 0, 2, 2, 4])
    # same with an input zero point (cancels) and an output one (added after rounding)
    got = _conv1x1(x + np.int8(3), input_zero_point=3, output_zero_point=-7)
    np.testing.assert_array_equal(got.ravel(), [-9, -9, -7, -7, -7, -5, -5, -3])
    # relu clamps in float, before requantization: negatives become the zero point
    got = _conv1x1(x, activation="relu", output_zero_point=-7)
    np.testing.assert_array_equal(got.ravel(), [-7, -7, -7, -7, -7, -5, -5, -3])


def test_conv2d_input_at_zero_point_gives_bias_only() -> None:
    # Every tap (padding included) contributes exactly 0, so the output is round(bias/s_out)+zp.
    x = np.full((2, 4, 6, 5), 37, np.int8)
    rng = np.random.default_rng(5)
    w = rng.integers(-128, 128, (2, 4, 3, 3), dtype=np.int8)
    got = reference.conv2d(
        x,
        w,
        np.array([0.01, 0.02], np.float32),
        np.array([1.0, -0.5], np.float32),
        input_scale=0.1,
        input_zero_point=37,
        output_scale=0.25,
        output_zero_point=3,
        padding=2,
    )
    assert got.shape == (2, 2, 8, 7)
    assert np.all(got[:, 0] == 4 + 3) and np.all(got[:, 1] == -2 + 3)


def test_conv2d_saturates_both_ends() -> None:
    x = np.array([[[[127, -128]]]], np.int8)
    got = reference.conv2d(
        x,
        np.full((1, 1, 1, 1), 127, np.int8),
        np.ones(1, np.float32),
        input_scale=1.0,
        input_zero_point=0,
        output_scale=1.0,
        output_zero_point=0,
    )
    np.testing.assert_array_equal(got.ravel(), [127, -128])


def test_conv2d_bias_none_equals_zero_bias_and_ignores_method_device() -> None:
    case = EXTRA_CASES[0]
    d = _make_data(case)
    kw = dict(
        input_scale=S_IN,
        input_zero_point=case.zp_in,
        output_scale=d.s_out,
        output_zero_point=case.zp_out,
        **case.conv_kwargs(),
    )
    a = reference.conv2d(d.x, d.w, d.w_scales, None, **kw)
    b = reference.conv2d(d.x, d.w, d.w_scales, np.zeros(case.C_out), method="direct", device=object(), **kw)
    np.testing.assert_array_equal(a, b)


_GOOD: dict[str, Any] = dict(
    x=np.zeros((1, 4, 6, 6), np.int8),
    weight=np.zeros((8, 2, 3, 3), np.int8),
    weight_scales=np.full(8, 0.01, np.float32),
    bias=None,
    input_scale=0.1,
    input_zero_point=0,
    output_scale=0.1,
    output_zero_point=0,
    groups=2,
)


@pytest.mark.parametrize(
    ("override", "exc", "match"),
    [
        ({"x": np.zeros((1, 4, 6, 6), np.float32)}, TypeError, "x"),
        ({"x": [[[[1]]]]}, TypeError, "x"),
        ({"weight": np.zeros((8, 2, 3, 3), np.int16)}, TypeError, "weight"),
        ({"weight": np.zeros((8, 4, 3, 3), np.int8)}, ValueError, "weight"),
        ({"weight": np.zeros((8, 2, 3), np.int8)}, ValueError, "weight"),
        ({"weight_scales": np.full(7, 0.01)}, ValueError, "weight_scales"),
        ({"weight_scales": np.zeros(8)}, ValueError, "weight_scales"),
        ({"weight_scales": np.full(8, -0.01)}, ValueError, "weight_scales"),
        ({"weight_scales": np.full(8, np.nan)}, ValueError, "weight_scales"),
        ({"weight_scales": np.full(8, 1e-50)}, ValueError, "weight_scales"),
        ({"weight_scales": np.array(["a"] * 8)}, TypeError, "weight_scales"),
        ({"bias": np.zeros(4)}, ValueError, "bias"),
        ({"bias": np.full(8, np.inf)}, ValueError, "bias"),
        ({"input_scale": 0.0}, ValueError, "input_scale"),
        ({"input_scale": None}, TypeError, "input_scale"),
        ({"output_scale": float("nan")}, ValueError, "output_scale"),
        ({"input_zero_point": 128}, ValueError, "input_zero_point"),
        ({"output_zero_point": -129}, ValueError, "output_zero_point"),
        ({"output_zero_point": 0.5}, TypeError, "output_zero_point"),
        ({"activation": "gelu"}, ValueError, "activation"),
        ({"activation": None}, TypeError, "activation"),
        ({"groups": 3}, ValueError, "groups"),
        ({"groups": 4}, ValueError, "weight"),
        ({"stride": 0}, ValueError, "stride"),
        ({"padding": (1, -1)}, ValueError, "padding"),
        ({"dilation": 0}, ValueError, "dilation"),
        ({"dilation": 4}, ValueError, "kernel"),
    ],
)
def test_conv2d_rejects_bad_arguments(override: dict[str, Any], exc: type, match: str) -> None:
    args = {**_GOOD, **override}
    x, w, ws, b = (args.pop(k) for k in ("x", "weight", "weight_scales", "bias"))
    with pytest.raises(exc, match=match):
        reference.conv2d(x, w, ws, b, **args)


# --- conv2d against the float64 direct convolution ----------------------------------------------


@pytest.mark.parametrize("case", _params(ALL_CASES))
def test_conv2d_matches_float_reference(case: Case) -> None:
    d = _make_data(case)
    assert d.y_float is not None
    want = _requantize(d.y_float, d.bias, case.relu, d.s_out, case.zp_out)
    got = _run_reference(case, d)
    _assert_within_1lsb(got, want, f"{case.id} vs float64 direct conv")
    if case.s_out is None:
        # the adaptive output scale must leave most outputs unsaturated, or the test is weak
        assert np.mean((got > -128) & (got < 127)) > 0.3


# --- conv2d against PyTorch's quantized conv2d ---------------------------------------------------


@pytest.mark.parametrize("case", _params(ALL_CASES))
def test_conv2d_matches_torch(case: Case) -> None:
    d = _make_data(case, need_float=False, w_max=TORCH_SAFE_W)
    want = _torch_conv(case, d)
    got = _run_reference(case, d)
    _assert_within_1lsb(got, want, f"{case.id} vs torch ({TORCH_ENGINE})")


def test_lookup_rounds_the_exact_value():
    """The PT2E path's tables round the exact value (rational arithmetic): with input scale
    float32(0.1) and output scale float32(0.2) = 2 * float32(0.1) exactly, every odd input is an
    exact tie and goes to the even neighbour (values stated by hand)."""
    x = np.array([1, 3, 5, 7, -1, -3, -5, 2], np.int8)
    q = dict(input_scale=0.1, input_zero_point=0, output_scale=0.2, output_zero_point=0)
    assert np.float32(0.2) == 2 * np.float32(0.1)
    got = reference.lookup(x, "identity", **q)
    assert got.tolist() == [0, 2, 2, 4, 0, -2, -2, 1]
    assert reference.lookup(x, "relu", **q).tolist() == [0, 2, 2, 4, 0, 0, 0, 1]
