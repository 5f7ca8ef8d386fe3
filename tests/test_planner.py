"""The planner is pure and speaks the kernels' language: plan_passes needs no device (limits by
hand here), gives equal plans for equal inputs, names every binding of every kernel it uses
exactly as the kernel declares it, and QConv2d refuses a spec whose bindings do not match."""

from __future__ import annotations

import dataclasses

import pytest

import q8ta_wgpu as q8
from q8ta_wgpu import planner
from q8ta_wgpu.configs import MOBILENET_DW_CONFIGS, POINTWISE_CONFIGS, SPEC_CONFIGS, make_case
from q8ta_wgpu.planner import ConvSpec, DeviceLimits, GemmConfig, PassSpec, plan_passes
from q8ta_wgpu.shaders import LIBRARY

# A device on paper: the WebGPU defaults' shape, 128 MiB bindings (lavapipe's), a GPU.
LIMITS = DeviceLimits(
    "paper GPU",
    {
        "max-compute-invocations-per-workgroup": 1024,
        "max-compute-workgroup-size-x": 1024,
        "max-compute-workgroup-storage-size": 32768,
        "min-storage-buffer-offset-alignment": 256,
    },
    max_binding_size=128 * 2**20,
    max_buffer_size=2**31,
    max_workgroups=65535,
    on_cpu=False,
)


def _spec(cfg) -> ConvSpec:
    kw = make_case(cfg)["kwargs"]
    return ConvSpec(
        cfg.weight_shape, cfg.stride, cfg.padding, cfg.dilation, cfg.groups,
        kw["input_scale"], kw["input_zero_point"], kw["output_scale"], kw["output_zero_point"], "relu",
    )  # fmt: skip


def _plans():
    for cfg in SPEC_CONFIGS + POINTWISE_CONFIGS + MOBILENET_DW_CONFIGS:
        geo = planner.kernel_geometry(cfg.geometry(), "4W4C")
        for method in planner.valid_methods(cfg.geometry()):
            for limits in (LIMITS, dataclasses.replace(LIMITS, reduce_in_gemm=True)):
                yield cfg, method, plan_passes(_spec(cfg), geo, method, "4W4C", "4W4C", None, limits)


def test_bindings_are_parsed_in_binding_order():
    tiled = ("a", "wts", "chan", "o", "od", "p", "res", "rd", "part", "xd", "cv", "ksum")
    assert LIBRARY.bindings("gemm_q8_tiled.wgsl") == tiled
    assert LIBRARY.bindings("im2col_4w4c.wgsl") == ("src", "dst", "d", "p")
    for f in LIBRARY.files():
        if "@compute" in LIBRARY.source(f):
            assert LIBRARY.bindings(f), f  # every kernel binds something, indices 0..n-1


def test_every_spec_names_exactly_its_kernels_bindings():
    kernels = set()
    for cfg, method, plan in _plans():
        assert plan.specs, (cfg.name, method)
        for s in plan.specs:
            assert [n for n, _ in s.bindings] == list(LIBRARY.bindings(s.kernel)), (
                cfg.name,
                method,
                s.kernel,
            )
            kernels.add(s.kernel)
    assert {"im2col_4w4c.wgsl", "im2col_generic.wgsl", "gemm_q8_tiled.wgsl", "gemm_q8_splitk.wgsl",
            "gemm_q8.wgsl", "depthwise_4w4c.wgsl"} <= kernels  # fmt: skip


def test_plans_are_pure_functions_of_their_arguments():
    cfg = SPEC_CONFIGS[3]
    geo = planner.kernel_geometry(cfg.geometry(), "4W4C")
    a = plan_passes(_spec(cfg), geo, "im2col_4w4c", "4W4C", "4W4C", None, LIMITS)
    b = plan_passes(_spec(cfg), geo, "im2col_4w4c", "4W4C", "4W4C", None, LIMITS)
    assert a == b
    forced = GemmConfig.make("gemm_q8_tiled.wgsl", {"WG_M": 4, "WG_N": 4, "BK": 8, "TM": 1, "TN": 1}, 2)
    c = plan_passes(_spec(cfg), geo, "im2col_4w4c", "4W4C", "4W4C", forced, LIMITS)
    assert c.specs[0] == a.specs[0], "the im2col pass does not depend on the GEMM configuration"
    assert [s.kernel for s in c.specs[1:]] == ["gemm_q8_tiled.wgsl", "gemm_q8_splitk.wgsl"]
    assert dict(c.specs[1].constants)["WG_M"] == 4 and "partials0" in c.scratch
    small = dataclasses.replace(LIMITS, max_binding_size=2**20)  # a smaller device splits the work
    d = plan_passes(_spec(cfg), geo, "im2col_4w4c", "4W4C", "4W4C", None, small)
    assert len(d.specs) > len(a.specs)


def test_split_k_reduced_in_the_gemm_is_one_dispatch():
    """Where the device orders the slices' atomics (Vulkan), the GEMM's last slice of a tile
    reduces: one pass, REDUCE on, its sums and counters in a scratch buffer of their own."""
    cfg = SPEC_CONFIGS[3]
    geo = planner.kernel_geometry(cfg.geometry(), "4W4C")
    forced = GemmConfig.make("gemm_q8_tiled.wgsl", {"WG_M": 4, "WG_N": 4, "BK": 8, "TM": 1, "TN": 1}, 2)
    vulkan = dataclasses.replace(LIMITS, reduce_in_gemm=True)
    c = plan_passes(_spec(cfg), geo, "im2col_4w4c", "4W4C", "4W4C", forced, vulkan)
    assert [s.kernel for s in c.specs] == ["im2col_4w4c.wgsl", "gemm_q8_tiled.wgsl"]
    consts = dict(c.specs[1].constants)
    assert consts["REDUCE"] and not consts["PARTIAL"]
    m_count, c4_out = geo.m_blocks, -(-geo.C_out // 4)
    tiles = -(-c4_out // 4) * -(-m_count // 4)
    assert c.scratch == {"a": c.scratch["a"], "ksums0": 4 * (16 * m_count * c4_out + tiles)}
    assert dict(c.specs[1].bindings)["ksum"] == planner.Bound("ksums0")
    one = GemmConfig.make("gemm_q8_tiled.wgsl", {"WG_M": 4, "WG_N": 4, "BK": 8, "TM": 1, "TN": 1}, 1)
    d = plan_passes(_spec(cfg), geo, "im2col_4w4c", "4W4C", "4W4C", one, vulkan)
    assert not dict(d.specs[1].constants).get("REDUCE") and "ksums0" not in d.scratch
    # Where it was measured slower: many slices, or long ones; there the reduce pass stays.
    assert planner.reduce_in_gemm_pays(8, 72) and not planner.reduce_in_gemm_pays(16, 16)
    assert not planner.reduce_in_gemm_pays(2, 80) and not planner.reduce_in_gemm_pays(1, 8)
    k4 = geo.K_per_group // 4
    many = GemmConfig.make("gemm_q8_tiled.wgsl", {"WG_M": 4, "WG_N": 4, "BK": 8, "TM": 1, "TN": 1}, k4 // 8)
    e = plan_passes(_spec(cfg), geo, "im2col_4w4c", "4W4C", "4W4C", many, vulkan)
    assert k4 // 8 > planner.REDUCE_IN_GEMM_MAX_SPLITS
    assert [s.kernel for s in e.specs[1:]] == ["gemm_q8_tiled.wgsl", "gemm_q8_splitk.wgsl"]


@pytest.mark.parametrize(
    "x_shape, w_shape, gpu_splits, cpu_splits",
    [
        # GPUs: the H200's shipped choices at batch 1 (per layer in a chain). CPU adapters: as
        # before these choices were measured (their rule is unchanged).
        ((1, 1024, 14, 14), (256, 1024, 1, 1), 4, 4),  # 56 tiles, 256 k-blocks
        ((1, 1024, 14, 14), (512, 1024, 1, 1), 4, 4),  # 112 tiles: a long K still splits
        ((1, 2048, 7, 7), (512, 2048, 1, 1), 8, 8),  # 32 tiles: slices of 64 k-blocks
        ((1, 1280, 1, 1), (1000, 1280, 1, 1), 8, 4),  # a classifier: one m-block
        ((1, 512, 28, 28), (256, 512, 1, 1), 1, 2),  # 200 tiles of 128 k-blocks: K whole
        ((1, 512, 7, 7), (2048, 512, 1, 1), 1, 2),
        ((1, 256, 56, 56), (64, 256, 1, 1), 1, 1),
        ((1, 960, 7, 7), (320, 960, 1, 1), 4, 2),  # 20 tiles, 240 k-blocks
    ],
)
def test_untuned_split_k_follows_the_measured_choices(x_shape, w_shape, gpu_splits, cpu_splits):
    geo = planner.kernel_geometry(q8.ConvGeometry.make(x_shape, w_shape), "4W4C")
    gpu = planner.default_gemm_config(geo, geo.m_blocks, LIMITS)
    assert gpu.splits == gpu_splits and gpu.reduce == "auto"
    # 8 short slices or fewer are reduced inside the GEMM (one dispatch) where the device can.
    assert planner.reduce_in_gemm_pays(gpu.splits, geo.K_per_group // 4 // gpu.splits) == (gpu.splits > 1)
    cpu = planner.default_gemm_config(geo, geo.m_blocks, dataclasses.replace(LIMITS, on_cpu=True))
    assert cpu.splits == cpu_splits


def test_a_spec_with_wrong_bindings_is_refused(device):
    case = make_case(SPEC_CONFIGS[2])
    x, w, ws, b = case["args"]
    conv = q8.QConv2d(w, ws, b, device=device, **case["kwargs"])
    geo = planner.kernel_geometry(conv.geometry(x.shape), "4W4C")
    plan = plan_passes(conv.spec, geo, "im2col_4w4c", "4W4C", "4W4C", None, DeviceLimits.of(device))
    s = plan.specs[0]
    bad = PassSpec(s.kernel, s.constants, s.bindings[:-1], s.workgroups, s.label)
    plan.specs[0] = bad
    with pytest.raises(ValueError, match=r"im2col_4w4c.wgsl binds \['src', 'dst', 'd', 'p'\]"):
        conv.buffers.realize(plan)


def test_device_bind_names_the_kernels_bindings(device):
    pipe = device.pipeline("copy_bw.wgsl", {"WG": 64})
    a, b = device.buffer(64), device.buffer(64)
    assert device.bind("copy_bw.wgsl", pipe, {"dst": b, "src": a}) is device.bind_group(pipe, [a, b])
    with pytest.raises(ValueError, match=r"copy_bw.wgsl binds \['src', 'dst'\], given \['src'\]"):
        device.bind("copy_bw.wgsl", pipe, {"src": a})
    with pytest.raises(ValueError, match=r"given \['src', 'dst', 'extra'\]"):
        device.bind("copy_bw.wgsl", pipe, {"src": a, "dst": b, "extra": a})
