"""The patch kernel (method "patch_4w4c", kernels/conv_patch_4w4c.wgsl): one dispatch whose
workgroups stage their input patch in shared memory. Exact against the numpy reference on
shapes that leave partial tiles, stages and slices (strides, dilation, padding wider than the
kernel reaches, RGB inputs padded to 4 channels, batches), with every kind of configuration the
tuner offers, K split and reduced in the kernel (forced on CPU adapters, whose default is off),
and the rules that refuse what it cannot run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import q8ta_wgpu as q8
from q8ta_wgpu import planner, reference, tuning
from q8ta_wgpu.configs import ConvConfig, make_case
from q8ta_wgpu.ops import quantize_params
from q8ta_wgpu.planner import PATCH_KERNEL, DeviceLimits

from .helpers import assert_within_1lsb

SHAPES = {
    "k3_ragged_batch2": ConvConfig("p", 20, 44, 9, 11, kernel=(3, 3), padding=(1, 1), n=2),
    "k3_s2": ConvConfig("p", 16, 8, 13, 10, kernel=(3, 3), stride=(2, 2), padding=(1, 1)),
    "k7_s2_rgb": ConvConfig("p", 8, 3, 17, 19, kernel=(7, 7), stride=(2, 2), padding=(3, 3)),
    "k3_dilation2_pad2": ConvConfig("p", 12, 16, 7, 7, kernel=(3, 3), padding=(2, 2), dilation=(2, 2)),
    "k1_s2": ConvConfig("p", 24, 16, 9, 10, kernel=(1, 1), stride=(2, 2)),
    "k5_stride_2_1_pad_beyond": ConvConfig("p", 12, 8, 11, 13, kernel=(5, 3), stride=(2, 1), padding=(4, 3)),
    "h1_w1": ConvConfig("p", 8, 8, 1, 1, kernel=(3, 3), padding=(1, 1)),
}

# [TR, TW, WG_N, TN, CB]: small and tall tiles, a second channel block a thread, one word a stage
CONFIGS = [(1, 1, 4, 1, 1), (2, 2, 8, 2, 2), (8, 2, 8, 1, 4), (1, 4, 16, 1, 2), (4, 2, 8, 1, 4)]


def _conv(device, cfg, seed, **extra):
    case = make_case(cfg, seed=seed, activation="relu" if seed % 2 else "none")
    x, w, ws, b = case["args"]
    conv = q8.QConv2d(w, ws, b, device=device, **{**case["kwargs"], "method": "patch_4w4c", **extra})
    return conv, x, reference.conv2d(x, w, ws, b, **case["kwargs"]), case["kwargs"]


@pytest.mark.parametrize("name", list(SHAPES))
def test_patch_kernel_matches_the_reference(device, name):
    """The default configuration and each of CONFIGS that fits, numpy in and out; the default
    also from a QTensor to a 4C1W output."""
    cfg = SHAPES[name]
    geo = planner.kernel_geometry(cfg.geometry(), "4W4C")
    conv, x, ref, kw = _conv(device, cfg, seed=3)
    assert_within_1lsb(conv(x), ref, f"{name} default", exact=True)
    assert [s[3] for s in conv.plan(x.shape, "4W4C", True).specs] == ["conv_patch_4w4c"]
    xt = q8.QTensor.from_numpy(x, kw["input_scale"], kw["input_zero_point"], device=device)
    y = q8.conv2d(xt, *make_case(cfg, seed=3)["args"][1:], **{**kw, "method": "patch_4w4c"},
                  output_layout="4C1W", device=device)  # fmt: skip
    assert_within_1lsb(y.numpy(), ref, f"{name} QTensor in, 4C1W out", exact=True)
    ran = 0
    for tr, tw, wg_n, tn, cb in CONFIGS:
        consts = {"TR": tr, "TW": tw, "WG_N": wg_n, "TN": tn, "CB": min(cb, geo.C_in // 4)}
        if planner.patch_config_error(DeviceLimits.of(device), consts, geo):
            continue
        conv.gemm_override = {"kernel": PATCH_KERNEL, "constants": consts}
        conv._plans.clear()
        assert_within_1lsb(conv(x), ref, f"{name} {consts}", exact=True)
        ran += 1
    assert ran >= 2, f"{name}: too few configurations fit"


@pytest.mark.parametrize("splits", [2, 3, 8])
def test_patch_kernel_splits_k_and_reduces_in_it(device, splits):
    """K (the input words) split into slices that add into int32 sums, the last slice of a tile
    requantizing them: the reference's bytes, in calls after the first too (the sums and the
    arrival counters are left zeroed)."""
    cfg = SHAPES["k3_ragged_batch2"]
    conv, x, ref, kw = _conv(device, cfg, seed=5)
    conv.gemm_override = {
        "kernel": PATCH_KERNEL, "constants": {"TR": 2, "TW": 2, "WG_N": 8, "TN": 1, "CB": 1}, "splits": splits,
    }  # fmt: skip
    device.reduce_in_gemm = True  # (off by default on CPU adapters)
    try:
        assert [s[3] for s in conv.plan(x.shape, "4W4C", True).specs] == [
            "conv_patch_4w4c(split-K, reduced in it)"
        ]
        rng = np.random.default_rng(2)
        w, ws, b = make_case(cfg, seed=5)["args"][1:]
        for i in range(3):
            xi = x if i != 1 else rng.integers(-128, 128, x.shape, dtype=np.int8)
            assert_within_1lsb(
                conv(xi), reference.conv2d(xi, w, ws, b, **kw), f"splits {splits} call {i}", exact=True
            )
    finally:
        device.reduce_in_gemm = device.default_reduce_in_gemm


def _float_input(shape, scale, zero_point, seed):
    """A float32 NCHW input whose values reach every case of the quantization: ordinary values,
    exact ties (x / scale a half-integer, rounded to even), values that saturate, signed zeros
    and subnormals."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 40 * scale).astype(np.float32)
    flat = x.reshape(-1)
    k = rng.integers(-140, 140, flat.size // 3)
    flat[: k.size] = ((k + 0.5) * np.float64(np.float32(scale))).astype(np.float32)
    flat[k.size : k.size + 8] = [1e30, -1e30, 0.0, -0.0, 1e-40, -1e-40, 300 * scale, -300 * scale]
    return rng.permutation(flat).reshape(shape).astype(np.float32)


@pytest.mark.parametrize(
    ("name", "consts", "splits"),
    [
        ("k7_s2_rgb", None, 1),
        ("k7_s2_rgb", {"TR": 8, "TW": 2, "WG_N": 8, "TN": 1, "CB": 1}, 1),
        ("k3_ragged_batch2", {"TR": 4, "TW": 2, "WG_N": 8, "TN": 2, "CB": 2}, 1),
        ("k3_ragged_batch2", {"TR": 2, "TW": 2, "WG_N": 8, "TN": 1, "CB": 1}, 3),
        ("k5_c5", None, 1),  # a second word with one channel
    ],
)
def test_patch_kernel_quantizes_a_float_input(device, name, consts, splits):
    """QUANT_IN: the conv reads the float32 NCHW input and quantizes each patch word as it loads
    it: the bytes of the numpy reference's exact quantize followed by the int8 conv."""
    cfg = SHAPES.get(name) or ConvConfig("p", 8, 5, 9, 10, kernel=(5, 5), padding=(2, 2), n=2)
    conv, _, _, kw = _conv(device, cfg, seed=7)
    scale, zp = kw["input_scale"], kw["input_zero_point"]
    geo = cfg.geometry()
    x = _float_input((geo.N, geo.C_in, geo.H, geo.W), scale, zp, seed=8)
    w, ws, b = make_case(cfg, seed=7)["args"][1:]
    ref = reference.conv2d(reference.quantize_exact(x, scale, zp), w, ws, b, **kw)
    if consts is not None:
        conv.gemm_override = {"kernel": PATCH_KERNEL, "constants": consts, "splits": splits}
    qi = planner.QuantizedInput(x.shape[1], tuple(int(v) for v in quantize_params(scale)))
    device.reduce_in_gemm = device.reduce_in_gemm or splits > 1
    try:
        plan = conv.plan(x.shape, "4W4C", False, None, qi)
        assert [s[3].endswith("(input quantized in it)") for s in plan.specs] == [True]
        src = device.upload(x, label="x float32")
        for call in range(2):  # (the split-K sums are left zeroed for the next call)
            y = plan.take_output(device)
            device.run(plan.passes(device, src, y))
            out = q8.QTensor(y, geo.output_shape, "4W4C", kw["output_scale"], kw["output_zero_point"], device)
            assert_within_1lsb(out.numpy(), ref, f"{name} {consts} splits {splits} call {call}", exact=True)
    finally:
        device.reduce_in_gemm = device.default_reduce_in_gemm
    with pytest.raises(ValueError, match="fused into QTensor calls only"):
        conv.plan(x.shape, "4W4C", True, None, qi)
    other = q8.QConv2d(w, ws, b, device=device, **{**kw, "method": "implicit_4w4c"})
    with pytest.raises(ValueError, match="an input quantized as it is loaded needs method 'patch_4w4c'"):
        other.plan(x.shape, "4W4C", False, None, qi)


def test_patch_kernel_refuses_what_it_cannot_run(device):
    limits = DeviceLimits.of(device)
    grouped = ConvConfig("g", 8, 8, 6, 6, kernel=(3, 3), padding=(1, 1), groups=2)
    with pytest.raises(ValueError, match="method 'patch_4w4c' needs a 4W4C input and groups == 1"):
        planner.resolve_method("patch_4w4c", grouped.geometry(), "4W4C")
    with pytest.raises(ValueError, match="method 'patch_4w4c' needs a 4W4C input"):
        planner.resolve_method("patch_4w4c", SHAPES["k3_s2"].geometry(), "4C")
    geo = planner.kernel_geometry(SHAPES["k3_ragged_batch2"].geometry(), "4W4C")
    big = {"TR": 1, "TW": 1, "WG_N": 4, "TN": 1, "CB": 8}
    assert planner.patch_config_error(limits, big, geo) == "too many loads per thread a stage"
    assert "TN 1 or 2" in planner.patch_config_error(limits, {**big, "TN": 3}, geo)
    assert not planner.runnable_gemm({"kernel": PATCH_KERNEL, "constants": big}, limits, geo)
    assert not planner.runnable_gemm({"kernel": PATCH_KERNEL, "constants": {"TR": 2}}, limits, geo)
    ok = {"kernel": PATCH_KERNEL, "constants": {"TR": 2, "TW": 2, "WG_N": 8, "TN": 1, "CB": 2}, "splits": 2}
    no_reduce = dataclasses.replace(limits, reduce_in_gemm=False)
    assert planner.runnable_gemm(ok, dataclasses.replace(limits, reduce_in_gemm=True), geo)
    assert not planner.runnable_gemm(ok, no_reduce, geo)
    conv, x, _, _ = _conv(device, SHAPES["k3_ragged_batch2"], seed=1)
    conv.gemm_override = ok
    if not device.reduce_in_gemm:
        with pytest.raises(ValueError, match="splits K only where the kernel can reduce the slices itself"):
            conv(x)


def test_patch_kernel_needs_one_binding(device, monkeypatch):
    """A tensor over one binding is split into row windows by the other methods; the patch
    kernel binds whole tensors and says so."""
    monkeypatch.setattr(q8.Device, "max_binding_size", property(lambda self: 4096))
    conv, x, _, _ = _conv(device, ConvConfig("w", 40, 8, 12, 13, kernel=(3, 3), padding=(1, 1), n=2), seed=2)
    with pytest.raises(
        ValueError,
        match="method 'patch_4w4c' needs the input, the output and the weights each in one binding",
    ):
        conv(x)


def test_tuner_offers_patch_configurations_that_run(device):
    """Every candidate the tuner times for the patch kernel fits the device, and runs exactly."""
    cfg = SHAPES["k3_s2"]
    geo = planner.kernel_geometry(cfg.geometry(), "4W4C")
    cands = tuning.patch_candidates(device, geo)
    assert cands and all(planner.runnable_gemm(c, DeviceLimits.of(device), geo) for c in cands)
    conv, x, ref, _ = _conv(device, cfg, seed=4)
    for c in cands[:4]:
        conv.gemm_override = c
        conv._plans.clear()
        assert_within_1lsb(conv(x), ref, f"candidate {c}", exact=True)


def test_untuned_auto_takes_the_patch_kernel_on_gpus_where_measured_faster(device):
    """Without a measured choice, `auto` on a GPU runs batch-1-sized KxK convs (and RGB first
    layers) of groups == 1 on the patch kernel; 1x1 convs, big outputs, grouped convs and CPU
    adapters keep resolve_method's choice."""
    gpu = dataclasses.replace(DeviceLimits.of(device), on_cpu=False, reduce_in_gemm=True)
    cpu = dataclasses.replace(gpu, on_cpu=True)

    def geo(c_in, hw, k=3, s=1, n=1, g=1):
        return ConvConfig("u", 64, c_in, hw, hw, kernel=(k, k), stride=(s, s), padding=(k // 2,) * 2, n=n,
                          groups=g).geometry()  # fmt: skip

    assert planner.untuned_method("auto", geo(64, 56), "4W4C", gpu) == "patch_4w4c"
    assert planner.untuned_method("auto", geo(64, 56), "4W4C", cpu) == "im2col_4w4c"
    assert planner.untuned_method("auto", geo(64, 56, n=8), "4W4C", gpu) == "im2col_4w4c"  # 6272 m-blocks
    big_rgb = planner.kernel_geometry(geo(3, 224, k=7, s=2, n=8), "4W4C")
    assert planner.untuned_method("auto", big_rgb, "4W4C", gpu) == "patch_4w4c"
    assert planner.untuned_method("auto", geo(64, 56, k=1, s=2), "4W4C", gpu) == "im2col_4w4c"
    assert planner.untuned_method("auto", geo(64, 56, k=1), "4W4C", gpu) == "pointwise"
    assert planner.untuned_method("auto", geo(64, 14, g=2), "4W4C", gpu) == "im2col_4w4c"
    assert planner.untuned_method("implicit_4w4c", geo(64, 56), "4W4C", gpu) == "implicit_4w4c"
    tiny = dataclasses.replace(gpu, max_binding_size=4096)  # tensors over one binding
    assert planner.untuned_method("auto", geo(64, 56), "4W4C", tiny) == "im2col_4w4c"


def test_tuning_a_patch_conv_times_its_own_configurations(device, tmp_path, monkeypatch):
    """`method="patch_4w4c", tune=True`: the tuner times the patch kernel's candidates (not GEMM
    tiles), keeps one of them, and the conv runs it exactly."""
    monkeypatch.setenv(tuning.CACHE_ENV, str(tmp_path / "tuning.json"))
    monkeypatch.setenv(tuning.SHIPPED_ENV, "0")
    tuning.forget()
    try:
        cfg = SHAPES["k3_s2"]
        conv, x, ref, _ = _conv(device, cfg, seed=6, tune=True)
        assert_within_1lsb(conv(x), ref, "tuned patch conv", exact=True)
        geo = planner.kernel_geometry(cfg.geometry(), "4W4C")
        choice = tuning.lookup(device, tuning.shape_key(conv, geo, "4W4C"))
        assert choice["method"] == "patch_4w4c"
        assert choice["gemm"] in tuning.patch_candidates(device, geo)
        assert choice["candidates"] == len(tuning.patch_candidates(device, geo))
    finally:
        tuning.forget()
