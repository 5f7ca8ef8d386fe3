"""The autotuner: it measures, picks a valid choice, caches it per adapter, and reuses the cache;
shapes with no tiled candidate fall back to the default GEMM."""

from __future__ import annotations

import json

import numpy as np
import pytest

import q8ta_wgpu as q8
from q8ta_wgpu import planner, reference, tuning
from q8ta_wgpu.configs import ConvConfig, make_case
from q8ta_wgpu.planner import DeviceLimits

from .helpers import assert_within_1lsb


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty tuning cache file and an empty in-memory cache (restored afterwards)."""
    path = tmp_path / "tuning.json"
    monkeypatch.setenv(tuning.CACHE_ENV, str(path))
    monkeypatch.setattr(tuning, "_memory", {})
    return path


def _tuned_conv(device, cfg: ConvConfig):
    case = make_case(cfg, seed=3)
    x, w, ws, b = case["args"]
    conv = q8.QConv2d(w, ws, b, device=device, tune=True, **case["kwargs"])
    return conv, x, reference.conv2d(x, w, ws, b, **case["kwargs"])


@pytest.mark.parametrize(
    "cfg",
    [
        ConvConfig("t3x3", 16, 16, 12, 12, padding=(1, 1)),
        ConvConfig("t1x1", 32, 16, 9, 10, kernel=(1, 1)),
        # K = 8 columns: no tiled configuration fits (stage deeper than twice K): default GEMM.
        ConvConfig("tiny_k", 8, 8, 6, 6, kernel=(1, 1)),
        # 2 channels per group: blocks straddle groups, only the simple GEMM applies.
        ConvConfig("straddle", 6, 6, 7, 7, padding=(1, 1), groups=3),
    ],
    ids=lambda c: c.name,
)
def test_tune_measures_caches_and_reuses(device, fresh_cache, monkeypatch, cfg):
    conv, x, ref = _tuned_conv(device, cfg)
    assert_within_1lsb(conv(x), ref, f"tuned {cfg.name}")
    data = json.loads(fresh_cache.read_text())
    (choices,) = data.values()  # one adapter
    (choice,) = choices.values()  # one shape
    geo = cfg.geometry()
    assert choice["method"] in planner.valid_methods(geo, "4W4C")
    assert choice["time_s"] > 0 and choice["candidates"] >= 1
    gemm = choice["gemm"]
    if gemm is not None:
        assert gemm["kernel"] in planner.TILED_KERNELS
        c = gemm["constants"]
        assert planner.tiled_config_error(DeviceLimits.of(device), c, gemm["kernel"]) is None
    else:  # only where no tiled candidate exists
        aligned = geo.groups == 1 or geo.C_out_per_group % 4 == 0
        m_count = geo.m_blocks
        assert not aligned or not tuning.gemm_candidates(device, geo, m_count)

    # A second conv of the same shape takes the cached choice without measuring.
    def no_measuring(*a, **k):
        raise AssertionError("measured again despite a cached choice")

    monkeypatch.setattr(tuning, "_time_all", no_measuring)
    conv2, x2, ref2 = _tuned_conv(device, cfg)
    assert_within_1lsb(conv2(x2), ref2, f"cached {cfg.name}")


def test_candidates_are_timed_as_one_call(device, fresh_cache, monkeypatch):
    """The tuner times each candidate's passes in one compute pass (as a call runs them), after
    keeping the GPU busy, and picks the fastest of what it measured."""
    seen = []
    real = device.time_passes

    def spy(passes, **kw):
        seen.append(kw.get("whole"))
        return real(passes, **kw)

    busy = []
    monkeypatch.setattr(device, "time_passes", spy)
    monkeypatch.setattr(device, "keep_busy", lambda passes, s: busy.append(s))
    conv, x, ref = _tuned_conv(device, ConvConfig("t3x3", 16, 16, 12, 12, padding=(1, 1)))
    conv(x)
    assert seen and all(seen), "every candidate timed with whole=True"
    assert busy and busy[0] == tuning.WARM_S


def test_other_methods_try_the_best_configs_and_the_winner_is_retimed(device, fresh_cache, monkeypatch):
    """After timing every GEMM configuration with the default method, the tuner times the
    other methods with its TOP_K fastest configurations (the patch kernel with its own
    candidates), in one batch that times the default method's best again, and keeps the fastest
    (method, configuration) of that batch."""
    cfg = ConvConfig("t3x3", 16, 16, 12, 12, padding=(1, 1))
    case = make_case(cfg, seed=3)
    x, w, ws, b = case["args"]
    conv = q8.QConv2d(w, ws, b, device=device, **case["kwargs"])
    geo = planner.kernel_geometry(conv.geometry(x.shape), "4W4C")
    cands = tuning.gemm_candidates(device, geo, geo.m_blocks)
    assert len(cands) > tuning.TOP_K
    key = lambda g: json.dumps(g, sort_keys=True)  # noqa: E731
    # Made-up times: config i is the i-th fastest with the default method (im2col_4w4c), its
    # best timed 5 us the first time and 9 us the second; implicit_4w4c is fastest with the
    # third of them; im2col_generic is slow.
    rank = {key(g): i for i, g in enumerate(cands)}
    batches = []

    def fake_passes(geo, method, in_layout, gemm, x, y):
        return [(method, key(gemm.to_dict()))]

    def fake_time_all(dev, runs, repeats):
        batches.append([r[0] for r in runs])
        if len(batches) == 1:
            return [5e-6 + 1e-6 * rank[g] for _, g in (r[0] for r in runs)]
        t = {"im2col_4w4c": 9e-6, "implicit_4w4c": 8e-6, "im2col_generic": 20e-6, "patch_4w4c": 30e-6}
        return [
            t[m] - (1e-6 if m == "implicit_4w4c" and rank[g] == 2 else 0) for m, g in (r[0] for r in runs)
        ]

    monkeypatch.setattr(conv, "candidate_passes", fake_passes)
    monkeypatch.setattr(tuning, "_time_all", fake_time_all)
    choice = tuning.tune(conv, geo, "4W4C")
    assert (choice["method"], rank[key(choice["gemm"])], choice["time_s"]) == ("implicit_4w4c", 2, 7e-6)
    first, second = batches
    assert all(m == "im2col_4w4c" for m, _ in first) and len(first) == len(cands)
    top = {key(g) for g in cands[: tuning.TOP_K]}
    assert second[0] == ("im2col_4w4c", key(cands[0])), "the default's best, timed again"
    assert {m for m, _ in second[1:]} == {"implicit_4w4c", "im2col_generic", "patch_4w4c"}
    assert {g for m, g in second[1:] if m != "patch_4w4c"} == top
    patch = [g for m, g in second if m == "patch_4w4c"]
    assert patch == [key(c) for c in tuning.patch_candidates(device, geo)] and patch
    assert len(second) == 1 + 2 * tuning.TOP_K + len(patch)


def test_time_passes_whole_gives_one_time_per_run(device):
    cfg = ConvConfig("w", 16, 16, 8, 8, padding=(1, 1))
    case = make_case(cfg)
    x, w, ws, b = case["args"]
    conv = q8.QConv2d(w, ws, b, device=device, method="im2col_4w4c", **case["kwargs"])
    xt = q8.QTensor.from_numpy(
        x, case["kwargs"]["input_scale"], case["kwargs"]["input_zero_point"], device=device
    )
    _, passes, _ = conv.passes(xt)
    assert len(passes) >= 2
    each = device.time_passes(passes, warmup=1, repeats=3)
    whole = device.time_passes(passes, warmup=1, repeats=3, whole=True)
    assert each.shape == (3, len(passes)) and whole.shape == (3, 1)
    assert np.all(each > 0) and np.all(whole > 0)


def test_configs_over_the_devices_workgroup_limits_are_refused(device, fresh_cache, monkeypatch):
    """wgpu does not check shared memory sized by override constants, so the GEMM configs are
    checked against the device's limits here: an explicit config over them is a ValueError,
    the tuner never offers one, and the default config steps down to a stage that fits."""
    cfg = ConvConfig("lim", 32, 64, 10, 10, kernel=(3, 3), padding=(1, 1))
    case = make_case(cfg, seed=4)
    x, w, ws, b = case["args"]
    ref = reference.conv2d(x, w, ws, b, **case["kwargs"])
    # 16 KiB, the WebGPU default: 8x8 threads fit with BK = 8 (4352 bytes) but not BK = 16 (8704).
    monkeypatch.setitem(device.limits, "max-compute-workgroup-storage-size", 8192)
    conv = q8.QConv2d(w, ws, b, device=device, method="im2col_4w4c", **case["kwargs"])
    conv.gemm_override = {
        "kernel": "gemm_q8_tiled.wgsl",
        "constants": {"WG_M": 16, "WG_N": 16, "BK": 16},
        "splits": 1,
    }
    with pytest.raises(
        ValueError, match=r"gemm config.*16896 bytes of workgroup memory, over the device's 8192"
    ):
        conv(x)
    conv.gemm_override = None
    conv._plans.clear()
    geo = cfg.geometry()
    m_count = geo.m_blocks
    assert conv.gemm_config(geo, m_count)["constants"]["BK"] == 8
    assert_within_1lsb(conv(x), ref, "default config under a small limit")
    cands = tuning.gemm_candidates(device, geo, m_count)
    assert cands
    for c in cands:
        k = c["constants"]
        tiles = planner.tiled_kernel(c["kernel"], k)
        assert tiles.workgroup_bytes(k["WG_M"], k["WG_N"], k["BK"]) <= 8192
    monkeypatch.setitem(device.limits, "max-compute-invocations-per-workgroup", 32)
    conv.gemm_override = {
        "kernel": "gemm_q8_tiled.wgsl",
        "constants": {"WG_M": 8, "WG_N": 8, "BK": 8},
        "splits": 1,
    }
    conv._plans.clear()
    with pytest.raises(ValueError, match="64 threads a workgroup, over the device's 32"):
        conv(x)


def test_net_tune_measures_every_conv_and_later_nets_take_the_choices(device, fresh_cache, monkeypatch):
    """`Net.tune(shape)`: one measured choice per conv (fused ones too) in the per-user cache,
    keyed by adapter, driver and package version; the tuned net's output stays within 1 LSB of
    the reference path (every configuration computes the same sums); a second net of the same
    model plans from the cache without measuring."""
    import torch

    from .helpers import pt2e_int8

    example = torch.randn(2, 3, 16, 16)
    m = pt2e_int8(q8.models.build("tiny_resnet"), q8.Q8taQuantizer(), example)
    net = q8.from_torch(m, device=device)
    x = np.random.default_rng(2).standard_normal((2, 3, 16, 16)).astype(np.float32)
    before = net.run_int8(x)
    monkeypatch.setattr(net, "_whole_s", lambda shape, repeats: 1.0)  # tuned: as fast: kept
    result = net.tune(x.shape)
    assert result["kept"] and result["before_s"] == result["after_s"] == 1.0
    choices = result["choices"]
    convs = [s for s in net.steps if s.kind.startswith(("conv2d", "linear"))]
    assert [c["step"] for c in choices] == [s.source for s in convs]
    assert all(c["time_s"] > 0 and c["method"] in planner.METHODS for c in choices)
    (key,) = json.loads(fresh_cache.read_text())  # one adapter
    assert key.endswith(f"q8ta_wgpu {q8.__version__}") and device.adapter.info["device"] in key
    assert_within_1lsb(net.run_int8(x), before, "tuned net vs untuned")

    def no_measuring(*a, **k):
        raise AssertionError("measured again despite cached choices")

    monkeypatch.setattr(tuning, "_time_all", no_measuring)
    again = q8.from_torch(m, device=device)
    strip = lambda cs: [{k: v for k, v in c.items() if k != "previous"} for c in cs]  # noqa: E731
    assert strip(again.tune(x.shape)["choices"]) == strip(choices)
    np.testing.assert_array_equal(again.run_int8(x), net.run_int8(x))


def test_net_tune_puts_back_what_ran_before_when_the_net_gets_slower(device, fresh_cache, monkeypatch):
    """Choices fastest alone can lose inside a network: when the whole forward pass is slower
    with them, `Net.tune` puts back the choices that were there before (none: the cache holds
    nothing again) and the net plans as before."""
    import torch

    from .helpers import pt2e_int8

    m = pt2e_int8(q8.models.build("tiny_resnet"), q8.Q8taQuantizer(), torch.randn(2, 3, 16, 16))
    net = q8.from_torch(m, device=device)
    shape = (1, 3, 16, 16)
    methods = {
        s.source: s.op.method(net.shapes(shape)[s.inputs[0]]) for s in net.steps if hasattr(s.op, "conv")
    }
    times = iter([1.0, 2.0])  # before, after: slower
    monkeypatch.setattr(net, "_whole_s", lambda shape, repeats: next(times))
    result = net.tune(shape)
    assert not result["kept"] and result["after_s"] > result["before_s"]
    assert all(c["previous"] is None for c in result["choices"]), [c["previous"] for c in result["choices"]]
    (choices,) = json.loads(fresh_cache.read_text()).values()
    assert choices == {}, "the cache holds nothing again"
    net.compile(shape)
    assert methods == {
        s.source: s.op.method(net.shapes(shape)[s.inputs[0]]) for s in net.steps if hasattr(s.op, "conv")
    }


def test_net_refine_keeps_an_alternative_only_where_the_whole_net_gets_faster(
    device, fresh_cache, monkeypatch
):
    """`Net.refine(shape)` tries each conv shape's alternatives in the whole forward pass: the
    planner's default instead of a measured choice, and split-K reduced the other way; it keeps
    one (in the cache) only where the forward pass gets faster, puts back the choice before it
    elsewhere, and the refined net computes the same bytes."""
    import torch

    from q8ta_wgpu.forward import ConvOp

    from .helpers import pt2e_int8

    m = pt2e_int8(q8.models.build("tiny_resnet"), q8.Q8taQuantizer(), torch.randn(2, 3, 16, 16))
    net = q8.from_torch(m, device=device)
    shape = (1, 3, 16, 16)
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    before = net.run_int8(x)
    shapes = net.shapes(shape)
    convs = [s for s in net.steps if isinstance(s.op, ConvOp)]
    step = max(convs, key=lambda s: s.op.conv.geometry(shapes[s.inputs[0]]).K_per_group)
    conv = step.op.conv
    geo = planner.kernel_geometry(conv.geometry(shapes[step.inputs[0]]), "4W4C")
    assert geo.K_per_group >= 64, geo  # 16 k-blocks: two slices of 8
    key = tuning.shape_key(conv, geo, "4W4C")
    consts = {"WG_M": 4, "WG_N": 4, "BK": 8, "TM": 1, "TN": 1}
    measured = {
        "method": "im2col_4w4c",
        "gemm": {"kernel": "gemm_q8_tiled.wgsl", "constants": consts, "splits": 2},
    }
    tuning.store(device, key, measured)
    device.reduce_in_gemm = True  # (lavapipe's default is the reduce pass)
    try:
        # The forward pass is fast only with this shape's slices reduced by a pass.
        def forward_s(shape, repeats, warm_s=0.2):
            choice = tuning.lookup(device, key)
            return 1.0 if choice and (choice["gemm"] or {}).get("reduce") == "pass" else 2.0

        monkeypatch.setattr(net, "_whole_s", forward_s)
        result = net.refine(shape, rounds=1)
        tried = [t for t in result["tried"] if t["key"] == key]
        # The first sweep keeps the reduce pass; the second (something was kept) tries the others
        # against it and keeps none. The other method (the implicit GEMM) is tried with the
        # choice's GEMM configuration, the patch kernel with its default.
        what = [
            (t["sweep"], t["choice"] and (t["choice"]["method"], (t["choice"]["gemm"] or {}).get("reduce")))
            for t in tried
        ]
        other, patch = ("implicit_4w4c", None), ("patch_4w4c", None)
        assert what == [
            (0, None), (0, other), (0, patch), (0, ("im2col_4w4c", "gemm")), (0, ("im2col_4w4c", "pass")),
            (1, None), (1, ("implicit_4w4c", "pass")), (1, patch), (1, ("im2col_4w4c", "gemm")),
        ], what  # fmt: skip
        assert [t["kept"] for t in tried] == [False, False, False, False, True, False, False, False, False]
        assert not any(t["kept"] for t in result["tried"] if t["key"] != key)
        assert result["before_s"] == 2.0 and result["after_s"] == 1.0
        kept = json.loads(fresh_cache.read_text())
        (choices,) = kept.values()
        assert choices[key]["gemm"] == {**measured["gemm"], "reduce": "pass"}
        assert_within_1lsb(net.run_int8(x), before, "refined net vs before", exact=True)
    finally:
        device.reduce_in_gemm = device.default_reduce_in_gemm


def test_a_dropped_choice_plans_with_the_default_gemm_again(device, fresh_cache):
    """A conv whose measured choice is dropped from the cache (Net.refine keeping the planner's
    default, Net.tune putting back "none") plans its next call with the default GEMM
    configuration, not the one it planned with before; a choice naming an unknown split-K
    reduction is not runnable (re-decided), and GemmConfig refuses one."""
    cfg = ConvConfig("t3x3", 16, 16, 12, 12, padding=(1, 1))
    case = make_case(cfg, seed=3)
    x, w, ws, b = case["args"]
    conv = q8.QConv2d(w, ws, b, device=device, **case["kwargs"])
    geo = planner.kernel_geometry(conv.geometry(x.shape), "4W4C")
    key = tuning.shape_key(conv, geo, "4W4C")
    consts = {"WG_M": 4, "WG_N": 4, "BK": 8, "TM": 1, "TN": 1}
    measured = {"kernel": "gemm_q8_tiled.wgsl", "constants": consts, "splits": 2, "reduce": "pass"}
    tuning.store(device, key, {"method": "im2col_4w4c", "gemm": measured})
    ref = reference.conv2d(x, w, ws, b, **case["kwargs"])
    assert_within_1lsb(conv(x), ref, "measured choice", exact=True)
    assert conv.gemm_config(geo, geo.m_blocks) == measured
    tuning.store(device, key, None)
    conv._plans.clear()
    assert_within_1lsb(conv(x), ref, "default again", exact=True)
    default = planner.default_gemm_config(geo, geo.m_blocks, DeviceLimits.of(device)).to_dict()
    assert conv.gemm_config(geo, geo.m_blocks) == default != measured
    limits = DeviceLimits.of(device)
    assert planner.runnable_gemm(measured, limits, geo) and not planner.runnable_gemm(
        {**measured, "reduce": "both"}, limits, geo
    )
    with pytest.raises(ValueError, match="reduce must be one of auto, gemm, pass, got 'both'"):
        planner.GemmConfig.from_dict({**measured, "reduce": "both"})
