"""A depthwise conv computed by the 1x1 conv that reads its output (planner.DwInput, the tiled
GEMM's DW_IN, kernels/dw_in.wgsl; forward.DepthwiseIntoPointwiseOp, forward.fuse_depthwise):
the bytes of the two convs run apart and of the numpy references, over strides, dilation,
kernel sizes, channel counts that are not multiples of 4, activations, K slices (reduced by a
pass and in the GEMM), a fused residual add and batches; the fallback to two convs; the rules
a pair must keep."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import q8ta_wgpu as q8
from q8ta_wgpu import forward, models, reference
from q8ta_wgpu.conv import QTensor

from .helpers import assert_within_1lsb

SMALL_TILES = {"WG_M": 4, "WG_N": 4, "BK": 8, "TM": 1, "TN": 1}

# (name, C, C_out, H, W, N, kernel, stride, dilation, activation, the 1x1 conv's GEMM forced or None)
CASES = [
    ("3x3", 24, 16, 9, 11, 2, 3, 1, 1, "relu6", None),
    ("stride-2", 24, 16, 12, 13, 1, 3, 2, 1, "relu6", None),
    ("c21-none", 21, 10, 9, 11, 2, 3, 1, 1, "none", None),
    ("5x5-dilated", 12, 20, 11, 10, 1, 5, 1, 2, "relu", None),
    ("split-K-pass", 40, 36, 7, 9, 1, 3, 1, 1, "relu6",
     {"kernel": "gemm_q8_tiled.wgsl", "constants": SMALL_TILES, "splits": 2, "reduce": "pass"}),
    ("split-K-in-gemm", 64, 24, 7, 7, 2, 3, 2, 1, "relu6",
     {"kernel": "gemm_q8_tiled.wgsl", "constants": SMALL_TILES, "splits": 4, "reduce": "gemm"}),
]  # fmt: skip


def _pair(device, c, c_out, k, stride, dilation, activation, seed=0):
    rng = np.random.default_rng(seed)
    pad = dilation * (k // 2)
    dw = q8.QConv2d(
        rng.integers(-128, 128, (c, 1, k, k)).astype(np.int8), rng.uniform(0.0003, 0.001, c),
        rng.uniform(-0.3, 0.3, c).astype(np.float32), stride=stride, padding=pad, dilation=dilation, groups=c,
        input_scale=0.05, input_zero_point=3, output_scale=0.05, output_zero_point=-5, activation=activation,
        device=device,
    )  # fmt: skip
    pw = q8.QConv2d(
        rng.integers(-128, 128, (c_out, c, 1, 1)).astype(np.int8), rng.uniform(0.002, 0.01, c_out),
        rng.uniform(-0.3, 0.3, c_out).astype(np.float32), input_scale=0.05, input_zero_point=-5,
        output_scale=0.03, output_zero_point=7, method="pointwise", device=device,
    )  # fmt: skip
    return dw, pw


def _run_fused(device, dw, pw, xt):
    """The pair as one plan: its passes, and its output's int8 NCHW values."""
    shape = dw.geometry(xt.shape).output_shape
    plan = pw.plan(shape, "4W4C", False, dw=(dw, xt.shape))
    out = plan.take_output(device)
    passes = plan.passes(device, xt.buffer, out)
    device.run(passes)
    y_shape = pw.geometry(shape).output_shape
    return passes, QTensor(out, y_shape, "4W4C", pw.output_scale, pw.output_zero_point, device).numpy()


@pytest.mark.parametrize(("name", "c", "c_out", "h", "w", "n", "k", "stride", "dilation", "act", "gemm"), CASES,
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_pair_gives_the_bytes_of_the_two_convs(
    device, name, c, c_out, h, w, n, k, stride, dilation, act, gemm
):
    dw, pw = _pair(device, c, c_out, k, stride, dilation, act)
    pw.gemm_override = gemm
    x = np.random.default_rng(1).integers(-128, 128, (n, c, h, w)).astype(np.int8)
    xt = QTensor.from_numpy(x, 0.05, 3, device=device)
    mid = dw(xt)
    want = pw(mid).numpy()
    passes, got = _run_fused(device, dw, pw, xt)
    assert passes[0].label.startswith("gemm_q8_dw_in"), [p.label for p in passes]
    assert len(passes) <= 2  # the GEMM, and a reduce pass where K is split and reduced apart
    nd = int(np.count_nonzero(got != want))
    assert nd == 0, f"{name}: {nd} of {want.size} outputs differ from the two convs"
    # And against the numpy references of the two convs (int32 sums, exact rounding).
    ref_mid = reference.conv2d(x, dw.weight, dw.weight_scales, dw.bias, stride=stride, padding=dilation * (k // 2),
                               dilation=dilation, groups=c, input_scale=0.05, input_zero_point=3,
                               output_scale=0.05, output_zero_point=-5, activation=act)  # fmt: skip
    ref = reference.conv2d(ref_mid, pw.weight, pw.weight_scales, pw.bias, input_scale=0.05, input_zero_point=-5,
                           output_scale=0.03, output_zero_point=7)  # fmt: skip
    # The data spans the int8 range (not clamped flat), so a wrong sum shows.
    assert len(np.unique(ref_mid)) > 25 and len(np.unique(ref)) > 25
    assert_within_1lsb(got, ref, f"{name} against the references")


def test_fallback_runs_the_two_convs(device):
    """Where the pair cannot be one plan (here: the 1x1 conv on another method), the op runs
    the two convs through a tensor of its own: the same bytes."""
    dw, _ = _pair(device, 24, 16, 3, 1, 1, "relu6")
    rng = np.random.default_rng(2)
    pw = q8.QConv2d(rng.integers(-128, 128, (16, 24, 1, 1)).astype(np.int8), rng.uniform(0.002, 0.01, 16),
                    None, input_scale=0.05, input_zero_point=-5, output_scale=0.03, output_zero_point=7,
                    method="im2col_4w4c", device=device)  # fmt: skip
    op = forward.DepthwiseIntoPointwiseOp(dw, forward.ConvOp(pw))
    x = rng.integers(-128, 128, (2, 24, 9, 11)).astype(np.int8)
    xt = QTensor.from_numpy(x, 0.05, 3, device=device)
    assert not op.fused(xt.shape)
    want = pw(dw(xt)).numpy()
    shape = op.output_shape(xt.shape)
    out = QTensor(device.buffer(4 * q8.layouts.packed_words(shape, "4W4C")), shape, "4W4C", 0.03, 7, device)
    passes = op.passes([xt], out)
    assert [p.label.split("(")[0] for p in passes][0].startswith("depthwise_4w4c") and len(passes) >= 2
    device.run(passes)
    np.testing.assert_array_equal(out.numpy(), want)


def test_pairs_it_cannot_take_say_why(device):
    dw, pw = _pair(device, 24, 16, 3, 1, 1, "relu6")
    xt = QTensor.from_numpy(np.zeros((1, 24, 8, 8), np.int8), 0.05, 3, device=device)
    shape = dw.geometry(xt.shape).output_shape
    pw.method = "im2col_4w4c"
    pw._plans.clear()
    with pytest.raises(ValueError, match="needs a pointwise conv on 4W4C"):
        pw.plan(shape, "4W4C", False, dw=(dw, xt.shape))
    pw.method = "pointwise"
    rng = np.random.default_rng(3)
    grouped = q8.QConv2d(rng.integers(-128, 128, (24, 2, 3, 3)).astype(np.int8), rng.uniform(0.002, 0.01, 24), None,
                         padding=1, groups=12, input_scale=0.05, input_zero_point=3, output_scale=0.05,
                         output_zero_point=-5, device=device)  # fmt: skip
    with pytest.raises(ValueError, match="not depthwise"):
        pw.plan(shape, "4W4C", False, dw=(grouped, xt.shape))
    with pytest.raises(ValueError, match="QTensor calls only"):
        pw.plan(shape, "4W4C", True, dw=(dw, xt.shape))


@pytest.mark.parametrize("batch", [1, 3])
def test_net_with_depthwise_fused_gives_the_bytes_without(device, monkeypatch, batch):
    """forward.FUSE_DEPTHWISE on: MobileNetV2-style blocks (one with a residual add) run each
    depthwise conv inside its projection conv, the same bytes as with it off, in fewer passes."""
    gen = torch.Generator().manual_seed(0)
    calib = [torch.randn(2, 3, 32, 32, generator=gen) for _ in range(2)]
    m = q8.quantize_pt2e(models.build("tiny_mobilenet_v2", seed=0), calib)
    x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32)).astype(np.float32)
    apart = q8.from_torch(m, device=device)
    want = apart.run_int8(x)
    monkeypatch.setattr(forward, "FUSE_DEPTHWISE", True)
    fused = q8.from_torch(m, device=device)
    kinds = [s.kind for s in fused.steps]
    assert kinds.count("depthwise+conv2d") >= 1 and kinds.count("depthwise+conv2d+add") >= 1, kinds
    pairs = sum(k.startswith("depthwise+") for k in kinds)
    assert len(fused.steps) == len(apart.steps) - pairs
    labels = [p.label for p in fused.compile(x.shape).passes()]
    assert sum(lb.startswith("gemm_q8_dw_in") for lb in labels) == pairs
    assert not any(lb.startswith("depthwise") for lb in labels), labels
    assert sum(p.label.startswith("depthwise") for p in apart.compile(x.shape).passes()) == pairs
    assert "one dispatch" in repr(fused)
    np.testing.assert_array_equal(fused.run_int8(x), want)
    np.testing.assert_array_equal(fused(x), apart(x))
