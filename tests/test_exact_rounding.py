"""The exact requantization on the GPU (kernels/exact_round.wgsl): values built to lie on or next
to half-integers, where float32 rounds the wrong way, so that only the fixed-point path gives the
reference's bytes. Each test also checks that a float32 evaluation of the same values differs
from the reference (else it would not reach that path).

The scales: M = s_in * s_w / s_out = 1/3 and B = bias / s_out = 1/6, neither exact in float32
(both round up) nor in float64 (both round down): v = adj/3 + 1/6 lies on a tie for every adj =
1 (mod 3) as a rational, just below it in float64's M and B (the reference: round down), just
above it in float32's (up)."""

from __future__ import annotations

import numpy as np
import pytest

import q8ta_wgpu as q8
from q8ta_wgpu import ops
from q8ta_wgpu import reference as ref

from .helpers import assert_within_1lsb


def _float32_requant(v32: np.ndarray, zp: int) -> np.ndarray:
    return np.clip(np.rint(v32) + zp, -128, 127).astype(np.int8)


def _inputs(channels: int) -> np.ndarray:
    """int8 [1, channels, 1, 256]: every int8 value in each channel."""
    x = np.arange(-128, 128, dtype=np.int8)
    return np.ascontiguousarray(np.broadcast_to(x, (1, channels, 1, 256)))


# Every epilogue kernel: one-pass GEMMs, the tiled GEMM, split-K's reduction, depthwise.
CONV_CASES = [
    ("pointwise", 1, None),
    ("im2col_generic", 1, None),
    ("im2col_4w4c", 1, None),
    ("implicit_4w4c", 1, None),
    (
        "im2col_4w4c",
        1,
        {
            "kernel": "gemm_q8_tiled.wgsl",
            "constants": {"WG_M": 8, "WG_N": 8, "BK": 8, "TM": 2, "TN": 2},
            "splits": 2,
        },
    ),
    ("depthwise_4w4c", 4, None),
    ("depthwise_4w4c", 4, "word"),  # a thread per output word (store_word), forced
]


@pytest.mark.parametrize(
    ("method", "groups", "gemm"),
    CONV_CASES,
    ids=[f"{c[0]}{'-word' if c[2] == 'word' else '-splitk' if c[2] else ''}" for c in CONV_CASES],
)
@pytest.mark.parametrize("activation", ["none", "relu"])
def test_conv_epilogue_rounds_near_ties_exactly(device, monkeypatch, method, groups, gemm, activation):
    from q8ta_wgpu import planner

    if gemm == "word":
        monkeypatch.setattr(planner, "DEPTHWISE_WPT", {"gpu": 1, "cpu": 1})
        gemm = None
    c = 4
    zp_in, zp_out = -1, 3
    x = _inputs(c)
    cin_pg = c // groups
    w = np.zeros((c, cin_pg, 1, 1), np.int8)
    for oc in range(c):
        w[oc, oc % cin_pg] = 1 if oc % 2 == 0 else -1  # each channel: +-(x - zp_in)
    scales = np.full(c, 1.0, np.float32)
    bias = np.full(c, 0.5, np.float32)
    opts = dict(output_scale=3.0, output_zero_point=zp_out, groups=groups, activation=activation)
    want = ref.conv2d(x, w, scales, bias, input_scale=1.0, input_zero_point=zp_in, **opts)
    conv = q8.QConv2d(
        w, scales, bias, input_scale=1.0, input_zero_point=zp_in, method=method, device=device, **opts
    )
    if gemm is not None:
        conv.gemm_override = gemm
    got = conv(x)
    assert_within_1lsb(got, want, f"conv {method} exact rounding: GPU vs reference", exact=True)
    # float32's v = adj * f32(1/3) + f32(1/6) rounds up at every tie: it differs.
    adj = (x.astype(np.int32) - zp_in) * np.where(np.arange(c) % 2 == 0, 1, -1)[None, :, None, None]
    v32 = adj.astype(np.float32) * np.float32(1 / 3) + np.float32(1 / 6)
    f32 = _float32_requant(np.maximum(v32, 0) if activation == "relu" else v32, zp_out)
    assert np.count_nonzero(f32 != want) >= 40, "the values do not reach the exact path"


def test_add_rounds_near_ties_exactly(device):
    """v = a/3 + b/6 (s_a = 1, s_b = 0.5, s_out = 3): ties where 2a + b = 3 (mod 6)."""
    rng = np.random.default_rng(7)
    a = rng.integers(-128, 128, (2, 8, 16, 16), dtype=np.int8)
    b = rng.integers(-128, 128, (2, 8, 16, 16), dtype=np.int8)
    q = dict(a_scale=1.0, a_zero_point=0, b_scale=0.5, b_zero_point=0, output_scale=3.0, output_zero_point=0)
    want = ref.add(a, b, **q)
    got = ops.QAdd(**q, device=device)(a, b)
    assert_within_1lsb(got, want, "add exact rounding: GPU vs reference", exact=True)
    v32 = a.astype(np.float32) * np.float32(1 / 3) + b.astype(np.float32) * np.float32(1 / 6)
    assert np.count_nonzero(_float32_requant(v32, 0) != want) >= 40


def test_avg_pool_rounds_near_ties_exactly(device):
    """v = sum / 3 / 2 (2-tap windows, s_in = 1, s_out = 3): ties where sum = 3 (mod 6)."""
    rng = np.random.default_rng(8)
    x = rng.integers(-128, 128, (2, 8, 16, 16), dtype=np.int8)
    q = dict(input_scale=1.0, input_zero_point=0, output_scale=3.0, output_zero_point=0)
    want = ref.avg_pool2d(x, (1, 2), **q)
    got = ops.QAvgPool2d((1, 2), **q, device=device)(x)
    assert_within_1lsb(got, want, "avg_pool2d exact rounding: GPU vs reference", exact=True)
    sums = x[..., 0::2].astype(np.int32) + x[..., 1::2]
    v32 = sums.astype(np.float32) * np.float32(1 / 3) / np.float32(2)
    assert np.count_nonzero(_float32_requant(v32, 0) != want) >= 40
