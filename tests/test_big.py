"""Big tensors: a conv whose input, output, weights or im2col matrix exceeds one storage binding
(or whose buffers exceed max-buffer-size) is split and still exact. The splitting logic is
exercised with the device's limits patched down to a few KiB (the real limits stay larger, so
every window the code binds is real); one real case has an im2col matrix over 128 MiB."""

from __future__ import annotations

import numpy as np
import pytest

import q8ta_wgpu as q8
from q8ta_wgpu import _split, reference
from q8ta_wgpu.configs import ConvConfig, make_case
from q8ta_wgpu.conv import X, Y

from .helpers import assert_within_1lsb


def _cfg(co, ci, h, w, k, s=1, p=0, d=1, g=1, n=1):
    pr = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    return ConvConfig("big", co, ci, h, w, pr(k), pr(s), pr(p), pr(d), g, n)


@pytest.fixture
def small_limits(device, monkeypatch, request):
    """Patch max-storage-buffer-binding-size (and with param "buffer" max-buffer-size) down;
    param "align256" also raises the offset alignment to 256 (valid: 256 is a multiple of the
    real one), as many discrete GPUs have."""
    binding, align = 64 * 1024, None
    opts = getattr(request, "param", {}) or {}
    binding = opts.get("binding", binding)
    monkeypatch.setattr(q8.Device, "max_binding_size", property(lambda self: binding))
    if "buffer" in opts:
        monkeypatch.setattr(q8.Device, "max_buffer_size", property(lambda self: opts["buffer"]))
    if opts.get("align256"):
        align = 256
        monkeypatch.setitem(device.limits, "min-storage-buffer-offset-alignment", 256)
    return binding, align


def _run(device, cfg, *, seed=0, in_layout=None, out_layout="4W4C", method="auto", act="relu"):
    # Output scale ~ the spread of the accumulators, so few outputs saturate (a saturated output
    # would hide a wrong sum).
    taps = cfg.kernel[0] * cfg.kernel[1] * cfg.c_in // cfg.groups
    case = make_case(cfg, seed=seed, activation=act, input_zero_point=-3, output_zero_point=5,
                     output_scale=0.015 * taps**0.5)  # fmt: skip
    x, w, ws, b = case["args"]
    kw = case["kwargs"]
    conv = q8.QConv2d(w, ws, b, method=method, output_layout=out_layout, device=device, **kw)
    ref = reference.conv2d(x, w, ws, b, **kw)
    if in_layout is None:
        y = conv(x)
        plan = conv.plan(x.shape, "4W4C", True)
    else:
        xt = q8.QTensor.from_numpy(
            x, kw["input_scale"], kw["input_zero_point"], layout=in_layout, device=device
        )
        yt = conv(xt)
        y = yt.numpy()
        plan = conv.plan(x.shape, in_layout, False)
    return y, ref, conv, plan


def _windows(plan, placeholder):
    return [r for _, res, _, _ in plan.specs for r in res if isinstance(r, tuple) and r[0] is placeholder]


SPLIT_CASES = {
    # input over the limit: row windows of the input (stride, padding, dilation, batch)
    "input_3x3": (_cfg(8, 16, 48, 48, 3, p=1, n=2), "x"),
    "input_s2_d2": (_cfg(8, 16, 50, 47, 3, s=2, p=2, d=2, n=2), "x"),
    "input_groups": (_cfg(8, 32, 48, 48, 3, p=1, g=4), "x"),
    "input_generic_odd_c": (_cfg(6, 13, 90, 45, (5, 3), s=(2, 1), p=(2, 1)), "x"),
    # output over the limit: row windows of the output
    "output": (_cfg(72, 8, 24, 24, 3, p=1, n=2), "y"),
    # A over the limit: m-chunks (as always)
    "im2col": (_cfg(8, 64, 20, 20, 5, p=2), "a"),
    # 1x1: the input is A; windows of it at aligned m-block offsets
    "pointwise_input": (_cfg(8, 24, 60, 60, 1), "x"),
    "pointwise_output": (_cfg(80, 8, 30, 30, 1), "y"),
    "pointwise_groups": (_cfg(16, 32, 48, 48, 1, g=2), "x"),
    "depthwise_output": (_cfg(64, 64, 36, 36, 3, p=1, g=64), "y"),  # depthwise_4w4c
    "depthwise_input_s2": (_cfg(32, 32, 60, 45, 3, s=2, p=1, g=32, n=2), "x"),
}


@pytest.mark.parametrize("name", list(SPLIT_CASES))
@pytest.mark.parametrize("small_limits", [{}, {"align256": True}], ids=["align32", "align256"], indirect=True)
def test_split_over_binding_numpy(device, small_limits, name):
    cfg, what = SPLIT_CASES[name]
    y, ref, conv, plan = _run(device, cfg)
    assert_within_1lsb(y, ref, f"split {name}")
    assert np.mean((ref == 127) | (ref == -128)) < 0.02 and ref.std() > 10
    work = [s for s in plan.specs if s[3].startswith(("gemm", "depthwise"))]
    assert len(work) > 1, "expected the work to be split"
    if name.startswith("depthwise"):  # auto takes the depthwise kernel, split the same way
        assert plan.method == "depthwise_4w4c"
    if what in "xy":
        wins = _windows(plan, X if what == "x" else Y)
        assert wins and all(off % (small_limits[1] or 32) == 0 and size <= small_limits[0] for off, size in
                            [w[1:] for w in wins])  # fmt: skip


@pytest.mark.parametrize("name", ["input_3x3", "input_s2_d2", "input_groups", "im2col"])
@pytest.mark.parametrize("layout", ["gpu", "cpu"])
def test_split_im2col_4w4c_either_work_layout(device, small_limits, monkeypatch, name, layout):
    """Chunks of m-blocks (mb_base > 0) over input windows through im2col_4w4c, with the GPUs'
    work layout (two blocks a thread, WG apart) and the CPU adapters' (runs of k-blocks)
    whichever adapter runs the test."""
    from q8ta_wgpu import planner

    chosen = planner.IM2COL_4W4C[layout]
    monkeypatch.setattr(planner, "IM2COL_4W4C", {"cpu": chosen, "gpu": chosen})
    monkeypatch.setattr(planner, "SPREAD_RUN2_BLOCKS", 0)
    cfg = SPLIT_CASES[name][0]
    y, ref, _, plan = _run(device, cfg, method="im2col_4w4c")
    assert_within_1lsb(y, ref, f"split {name} im2col_4w4c {layout} layout")
    assert sum(s[3] == "im2col_4w4c" for s in plan.specs) > 1, "expected several chunks"


@pytest.mark.parametrize("in_layout", q8.LAYOUTS)
@pytest.mark.parametrize("out_layout", q8.LAYOUTS)
def test_split_every_layout(device, small_limits, in_layout, out_layout):
    # Input and output both over the limit, generic im2col from any layout into any layout.
    cfg = _cfg(40, 12, 72, 62, 3, s=1, p=1, n=2)
    y, ref, _, plan = _run(device, cfg, in_layout=in_layout, out_layout=out_layout, method="im2col_generic")
    assert_within_1lsb(y, ref, f"split layouts {in_layout}->{out_layout}")
    assert _windows(plan, X) and _windows(plan, Y)


@pytest.mark.parametrize("small_limits", [{}, {"align256": True}], ids=["align32", "align256"], indirect=True)
def test_split_weights_over_output_channels(device, small_limits):
    # 99 channels x 3*3*96 columns = 86 KB of prepacked weights > 64 KiB: channel slices.
    cfg = _cfg(99, 96, 10, 9, 3, p=1)
    y, ref, conv, plan = _run(device, cfg)
    assert_within_1lsb(y, ref, "split weights")
    assert len(_split.channel_slices(device, plan.geo)) > 1
    # The same with the output split too, into a QTensor of each layout.
    for out_layout in q8.LAYOUTS:
        y, ref, _, _ = _run(
            device, _cfg(99, 96, 14, 13, 3, p=1), in_layout="4W4C", out_layout=out_layout, seed=1
        )
        assert_within_1lsb(y, ref, f"split weights+output {out_layout}")


@pytest.mark.parametrize("small_limits", [{}, {"align256": True}], indirect=True, ids=["align32", "align256"])
@pytest.mark.parametrize(
    "cfg, method",
    [
        # 2 groups of 128 channels x 648 columns: 166 KB of prepacked weights > 64 KiB, and
        # one group alone (83 KB) too: slices inside each group.
        (_cfg(256, 144, 6, 6, 3, p=1, g=2), "auto"),
        (_cfg(256, 144, 6, 6, 3, p=1, g=2), "im2col_generic"),
        (_cfg(256, 144, 6, 6, 3, p=1, g=2), "implicit_4w4c"),
        # 40 groups of 6 channels x 288 columns (blocks straddle groups: the simple GEMM; slices
        # of whole pairs of groups).
        (_cfg(240, 1280, 5, 7, 3, p=1, g=40), "auto"),
        # 16 groups, 1x1 (the pointwise path), 36 channels x 128 columns each.
        (_cfg(576, 2048, 4, 4, 1, g=16), "pointwise"),
    ],
    ids=["g2", "g2-generic", "g2-implicit", "g8-straddling", "g16-pointwise"],
)
def test_grouped_weights_over_binding_are_split_by_groups(device, small_limits, cfg, method):
    geo = cfg.geometry()
    assert 16 * ((geo.C_out + 3) // 4) * (geo.K_per_group // 4) > device.max_binding_size
    slices = _split.channel_slices(device, geo)
    assert len(slices) > 1
    opg = geo.C_out_per_group
    for lo, hi in slices:  # whole groups, or a part of one group (never across a boundary)
        whole = (4 * lo) % opg == 0 and (min(4 * hi, geo.C_out) % opg == 0)
        inside = (4 * lo) // opg == (min(4 * hi, geo.C_out) - 1) // opg
        assert whole or inside, (lo, hi)
    y, ref, _, _ = _run(device, cfg, method=method)
    assert_within_1lsb(y, ref, f"grouped weights split ({method})")
    assert np.mean((ref == 127) | (ref == -128)) < 0.05 and ref.std() > 5


def test_one_output_row_too_big_is_a_clear_error(device, small_limits):
    # A 3x3 kernel over rows of 64 KiB: no window of whole rows fits.
    x = np.zeros((1, 64, 3, 1024), np.int8)
    conv = q8.QConv2d(np.zeros((4, 64, 3, 3), np.int8), np.ones(4, np.float32), input_scale=1.0,
                      input_zero_point=0, output_scale=1.0, output_zero_point=0, padding=1, device=device)  # fmt: skip
    with pytest.raises(ValueError, match=r"input rows.*max-storage-buffer-binding-size"):
        conv(x)
    # The device is fine afterwards.
    y, ref, _, _ = _run(device, _cfg(4, 4, 6, 6, 3, p=1))
    assert_within_1lsb(y, ref, "after error")


@pytest.mark.parametrize(
    "small_limits", [{"binding": 16 * 1024, "buffer": 96 * 1024}], indirect=True, ids=["buffer96k"]
)
def test_numpy_batch_split_over_max_buffer_size(device, small_limits):
    # One sample: ~33 KB packed input and output; 8 samples cannot share one 96 KiB buffer.
    cfg = _cfg(8, 8, 32, 32, 3, p=1, n=8)
    y, ref, _, _ = _run(device, cfg)
    assert_within_1lsb(y, ref, "batch split")
    # A single sample over max-buffer-size: a clear error naming the limit.
    x = np.zeros((1, 8, 128, 128), np.int8)
    conv = q8.QConv2d(np.zeros((8, 8, 3, 3), np.int8), np.ones(8, np.float32), input_scale=1.0,
                      input_zero_point=0, output_scale=1.0, output_zero_point=0, padding=1, device=device)  # fmt: skip
    with pytest.raises(ValueError, match=r"max-buffer-size"):
        conv(x)


def test_qtensor_round_trip_over_binding(device, small_limits):
    x = np.random.default_rng(3).integers(-128, 128, (2, 7, 75, 113), dtype=np.int8)
    for layout in q8.LAYOUTS:
        t = q8.QTensor.from_numpy(x, 0.1, 3, layout=layout, device=device)
        assert t.nbytes > small_limits[0]
        np.testing.assert_array_equal(t.words(), q8.pack(x, layout, 3))
        np.testing.assert_array_equal(t.numpy(), x)


def _needs_128mib_binding(device) -> None:
    """The real-limit cases are sized for lavapipe's 128 MiB binding (CI's adapter); on an adapter
    with larger bindings (the H100's 2 GiB) the patched-limit tests above cover the same code."""
    if device.max_binding_size > 128 * 2**20:
        pytest.skip(f"{device.name} binds {device.max_binding_size >> 20} MiB; case sized for 128 MiB")


def test_im2col_over_128mib_real_limit(device):
    """A real (unpatched) case: the im2col matrix is ~158 MB > lavapipe's 128 MiB binding, and the
    im2col dispatch of one chunk needs > 65535 workgroups (folded)."""
    _needs_128mib_binding(device)
    cfg = _cfg(4, 320, 64, 64, 11, p=5)
    geo = cfg.geometry()
    a_bytes = geo.M * geo.K
    assert a_bytes > device.max_binding_size
    y, ref, conv, plan = _run(device, cfg, act="none")
    assert_within_1lsb(y, ref, "im2col > binding")
    assert np.mean((ref == 127) | (ref == -128)) < 0.01 and ref.std() > 10
    im2cols = [s for s in plan.specs if s[3].startswith("im2col")]
    assert len(im2cols) > 1
    assert any(s[2][1] > 1 for s in plan.specs), "expected a folded (x, y) dispatch"


@pytest.mark.parametrize("kernel", [1, 3], ids=["pointwise", "3x3"])
def test_dispatches_over_65535_workgroups(device, kernel):
    """4.3M output positions: the pack/unpack/im2col dispatches need > 65535 workgroups (folded
    into x and y) and the GEMM's m-blocks exceed one grid (split into chunks)."""
    cfg = _cfg(4, 4, 2048, 2100, kernel, p=kernel // 2)
    y, ref, conv, plan = _run(device, cfg, act="none")
    assert_within_1lsb(y, ref, f"> 65535 workgroups, {kernel}x{kernel}")
    assert plan.geo.M // 4 > conv.MAX_DISPATCH_MBLOCKS
    assert len([s for s in plan.specs if s[3].startswith("gemm")]) > 1
    assert device.workgroups(2048 * 2100 // 64)[1] > 1


@pytest.mark.slow  # large: ~1.6 GB of host memory (weights, their packing, the reference's int32)
def test_weights_over_128mib_real_limit(device):
    """A real (unpatched) case: 2052 x 65529 prepacked weights (134.5 MB) exceed lavapipe's
    128 MiB binding and are bound as slices of output channels."""
    cfg = _cfg(2052, 7281, 3, 3, 3)
    geo = cfg.geometry()
    _needs_128mib_binding(device)
    assert 16 * ((geo.C_out + 3) // 4) * (geo.K_per_group // 4) > device.max_binding_size
    y, ref, conv, plan = _run(device, cfg, act="none")
    assert_within_1lsb(y, ref, "weights > binding")
    assert len(_split.channel_slices(device, geo)) > 1
    assert np.mean((ref == 127) | (ref == -128)) < 0.01 and ref.std() > 10


def test_input_over_128mib_real_limit(device):
    """A real (unpatched) case: a 144 MB input (packed on the host, read through row windows)."""
    _needs_128mib_binding(device)
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, (1, 16, 3000, 3000), dtype=np.int8)  # int8 directly: less memory
    assert x.nbytes > device.max_binding_size
    w = rng.integers(-128, 128, (4, 16, 1, 1), dtype=np.int8)
    ws = rng.uniform(0.005, 0.015, 4).astype(np.float32)
    kw = dict(input_scale=0.01, input_zero_point=-3, output_scale=0.1, output_zero_point=5, stride=2)
    conv = q8.QConv2d(w, ws, None, device=device, **kw)
    y = conv(x)
    ref = reference.conv2d(x, w, ws, None, **kw)
    assert_within_1lsb(y, ref, "input > binding")
    assert np.mean((ref == 127) | (ref == -128)) < 0.01 and ref.std() > 10
    plan = conv.plan(x.shape, "4W4C", True)
    assert plan.x_nchw is None and _windows(plan, X)


@pytest.mark.parametrize(
    "cfg",
    [
        _cfg(8, 16, 48, 48, 3, p=1, n=2),  # input windows
        _cfg(8, 16, 50, 47, 3, s=2, p=2, d=2, n=2),
        _cfg(72, 8, 24, 24, 3, p=1, n=2),  # output windows
        _cfg(99, 96, 10, 9, 3, p=1),  # weight slices
        _cfg(16, 32, 48, 48, 3, p=1, g=2),  # groups, input windows
    ],
    ids=["input", "input_s2_d2", "output", "weights", "groups"],
)
def test_split_implicit_gemm(device, small_limits, cfg):
    # The fused kernel reads the input through the same windows (TensorDesc.base).
    y, ref, conv, plan = _run(device, cfg, method="implicit_4w4c")
    assert plan.method == "implicit_4w4c"
    assert_within_1lsb(y, ref, "split implicit")
    assert len([s for s in plan.specs if s[3].startswith("gemm")]) > 1
