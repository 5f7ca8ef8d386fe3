"""The residual add fused into a conv's epilogue (planner.Residual, kernels/epilogue.wgsl): the
bytes of the conv pass followed by the add pass (ops.QAdd) and of the numpy references, for
every conv method, both operand orders, the add's activations, split-K, channel slices and row
windows; and a net with fusion on gives the bytes of the same net with it off."""

from __future__ import annotations

import numpy as np
import pytest

import q8ta_wgpu as q8
from q8ta_wgpu import reference
from q8ta_wgpu.configs import ConvConfig, make_case
from q8ta_wgpu.forward import ConvOp
from q8ta_wgpu.layouts import packed_words

from .helpers import assert_within_1lsb, pt2e_int8

# (name, config, method, GEMM configuration forced or None)
CASES = [
    ("im2col_4w4c", ConvConfig("c", 7, 5, 6, 9, kernel=(3, 3), padding=(1, 1), n=2), "im2col_4w4c", None),
    ("im2col_generic", ConvConfig("c", 12, 8, 7, 5, kernel=(3, 3), stride=(2, 2), padding=(1, 1)), "im2col_generic", None),
    ("pointwise", ConvConfig("c", 24, 16, 5, 6, kernel=(1, 1), n=2), "pointwise", None),
    ("implicit", ConvConfig("c", 20, 16, 6, 7, kernel=(3, 3), padding=(1, 1)), "implicit_4w4c", None),
    ("depthwise", ConvConfig("c", 12, 12, 5, 9, kernel=(3, 3), padding=(1, 1), groups=12), "depthwise_4w4c", None),
    ("grouped", ConvConfig("c", 9, 6, 5, 5, kernel=(3, 3), padding=(1, 1), groups=3), "im2col_generic", None),
    ("split-K", ConvConfig("c", 20, 44, 9, 11, kernel=(3, 3), padding=(1, 1), n=2), "im2col_4w4c",
     {"kernel": "gemm_q8_tiled.wgsl", "constants": {"WG_M": 8, "WG_N": 8, "BK": 8, "TM": 2, "TN": 2}, "splits": 3}),
    # the slices reduced by the GEMM itself (REDUCE; forced where the device's default is the pass)
    ("split-K-in-gemm", ConvConfig("c", 20, 44, 9, 11, kernel=(3, 3), padding=(1, 1), n=2), "implicit_4w4c",
     {"kernel": "gemm_q8_tiled.wgsl", "constants": {"WG_M": 8, "WG_N": 8, "BK": 8, "TM": 2, "TN": 2}, "splits": 3,
      "reduce": "gemm"}),
    # the patch kernel, alone and with K split and reduced in it (forced where the device's default)
    ("patch", ConvConfig("c", 20, 16, 6, 7, kernel=(3, 3), padding=(1, 1), n=2), "patch_4w4c", None),
    ("patch-split-K-in-it", ConvConfig("c", 20, 44, 9, 11, kernel=(3, 3), padding=(1, 1), n=2), "patch_4w4c",
     {"kernel": "conv_patch_4w4c.wgsl", "constants": {"TR": 2, "TW": 2, "WG_N": 8, "TN": 1, "CB": 2}, "splits": 3,
      "reduce": "gemm"}),
]  # fmt: skip


def _qt(x: np.ndarray, scale: float, zp: int, device: q8.Device) -> q8.QTensor:
    return q8.QTensor.from_numpy(x, scale, zp, device=device)


def _fused_and_separate(
    device, cfg, method, gemm, *, conv_is_a, add_act, conv_act="none", seed=0, two_passes=True
):
    """(fused GPU, conv pass then add pass on the GPU (None without two_passes), numpy
    reference) int8 NCHW outputs."""
    case = make_case(cfg, seed=seed, activation=conv_act, output_zero_point=-7, output_scale=0.25)
    x, w, ws, b = case["args"]
    kw = case["kwargs"]
    conv = q8.QConv2d(w, ws, b, method=method, device=device, **kw)
    if gemm is not None:
        conv.gemm_override = gemm
    rng = np.random.default_rng(seed + 1)
    out_shape = conv.geometry(x.shape).output_shape
    r = rng.integers(-128, 128, out_shape, dtype=np.int8)
    r_scale, r_zp = 0.19, 11
    s_conv, zp_conv = kw["output_scale"], kw["output_zero_point"]
    a, b_ = ((s_conv, zp_conv), (r_scale, r_zp)) if conv_is_a else ((r_scale, r_zp), (s_conv, zp_conv))
    add = q8.QAdd(*a, *b_, 0.3, 3, activation=add_act, device=device)

    xt, rt = _qt(x, kw["input_scale"], kw["input_zero_point"], device), _qt(r, r_scale, r_zp, device)
    op = ConvOp(conv, add.residual(conv_is_a=conv_is_a))
    out = q8.QTensor(device.buffer(4 * packed_words(out_shape, "4W4C")), out_shape, "4W4C", 0.3, 3, device)
    device.run(op.passes([xt, rt], out))
    fused = out.numpy()

    separate = None
    if two_passes:
        yt = conv(xt)
        separate = (add(yt, rt) if conv_is_a else add(rt, yt)).numpy()
    y_ref = reference.conv2d(x, w, ws, b, **kw)
    pair = (y_ref, r) if conv_is_a else (r, y_ref)
    ref = reference.add(*pair, a_scale=a[0], a_zero_point=a[1], b_scale=b_[0], b_zero_point=b_[1],
                        output_scale=0.3, output_zero_point=3, activation=add_act)  # fmt: skip
    return fused, separate, ref, op


@pytest.mark.parametrize("conv_is_a", [True, False], ids=["conv-first", "residual-first"])
@pytest.mark.parametrize(("name", "cfg", "method", "gemm"), CASES, ids=[c[0] for c in CASES])
def test_fused_add_equals_the_two_passes(device, name, cfg, method, gemm, conv_is_a):
    in_gemm = bool(gemm) and gemm.get("reduce") == "gemm"
    if in_gemm and device.backend != "Vulkan":
        pytest.fail(f"split-K reduced in the GEMM runs on Vulkan; this adapter is {device.backend}")
    device.reduce_in_gemm = in_gemm or device.default_reduce_in_gemm
    try:
        _fused_equals_separate(device, name, cfg, method, gemm, conv_is_a, in_gemm)
    finally:
        device.reduce_in_gemm = device.default_reduce_in_gemm


@pytest.mark.parametrize("layout", ["4C", "4C1W"])
@pytest.mark.parametrize("method", ["im2col_4w4c", "patch_4w4c"])
def test_fused_add_writes_and_reads_other_layouts(device, layout, method):
    """The epilogue's residual words and output words of a tile are one width step apart in
    every layout (tile_width_step): a fused add whose output and residual are 4C or 4C1W (widths
    not a multiple of 4) gives the numpy reference's bytes."""
    cfg = ConvConfig("c", 12, 8, 7, 9, kernel=(3, 3), padding=(1, 1), n=2)
    case = make_case(cfg, seed=3, output_zero_point=-7, output_scale=0.25)
    x, w, ws, b = case["args"]
    kw = case["kwargs"]
    conv = q8.QConv2d(w, ws, b, method=method, output_layout=layout, device=device, **kw)
    out_shape = conv.geometry(x.shape).output_shape
    r = np.random.default_rng(4).integers(-128, 128, out_shape, dtype=np.int8)
    add = q8.QAdd(
        kw["output_scale"], kw["output_zero_point"], 0.19, 11, 0.3, 3, activation="relu", device=device
    )
    xt = _qt(x, kw["input_scale"], kw["input_zero_point"], device)
    rt = q8.QTensor.from_numpy(r, 0.19, 11, layout=layout, device=device)
    op = ConvOp(conv, add.residual(conv_is_a=True), add)
    out = q8.QTensor(device.buffer(4 * packed_words(out_shape, layout)), out_shape, layout, 0.3, 3, device)
    passes = op.passes([xt, rt], out)
    assert len(passes) == len(conv.plan(x.shape, "4W4C", False).specs)  # fused: no add pass
    device.run(passes)
    ref = reference.add(reference.conv2d(x, w, ws, b, **kw), r, a_scale=kw["output_scale"],
                        a_zero_point=kw["output_zero_point"], b_scale=0.19, b_zero_point=11,
                        output_scale=0.3, output_zero_point=3, activation="relu")  # fmt: skip
    assert_within_1lsb(out.numpy(), ref, f"fused add, {layout} output, {method}", exact=True)


@pytest.mark.parametrize("conv_is_a", [True, False], ids=["conv-first", "residual-first"])
def test_fused_add_in_the_depthwise_word_kernel(device, monkeypatch, conv_is_a):
    """The depthwise kernel with a thread per output word (store_word; planned on GPUs), forced
    here: the fused add equals the two passes."""
    from q8ta_wgpu import planner

    monkeypatch.setattr(planner, "DEPTHWISE_WPT", {"gpu": 1, "cpu": 1})
    name, cfg, method, gemm = next(c for c in CASES if c[0] == "depthwise")
    _fused_equals_separate(device, "depthwise-word", cfg, method, gemm, conv_is_a, False)


def _fused_equals_separate(device, name, cfg, method, gemm, conv_is_a, in_gemm):
    for add_act, conv_act in [("none", "none"), ("relu", "none"), ("relu6", "relu")]:
        fused, separate, ref, op = _fused_and_separate(
            device, cfg, method, gemm, conv_is_a=conv_is_a, add_act=add_act, conv_act=conv_act
        )
        if in_gemm:
            labels = [sp[3] for sp in op.conv.plan(cfg.input_shape, "4W4C", False, op.residual).specs]
            kernel = "conv_patch_4w4c" if method == "patch_4w4c" else "gemm_q8_implicit"
            assert labels == [f"{kernel}(split-K, reduced in it)"], labels
        what = f"{name} conv {conv_act} add {add_act}"
        assert_within_1lsb(fused, separate, f"{what}: fused vs two passes", exact=True)
        # The add's y = a*s_a + b*s_b may be contracted into an fma on a GPU (the H200's
        # compiler does): then 1 LSB from the reference, as the add pass itself (ops.QAdd).
        assert_within_1lsb(fused, ref, f"{what}: fused vs reference")
        assert len(np.unique(fused)) > 8, "the outputs should spread over many values"


def test_fused_add_in_row_windows_and_channel_slices(device, monkeypatch):
    """A conv split in row windows and output-channel slices (bindings patched down to 4 KiB)
    binds the residual in the output's windows: the reference's bytes (the add pass alone
    cannot take a tensor over one binding; fused, the add can)."""
    monkeypatch.setattr(q8.Device, "max_binding_size", property(lambda self: 4096))
    cfg = ConvConfig("w", 40, 8, 12, 13, kernel=(3, 3), padding=(1, 1), n=2)
    fused, _, ref, op = _fused_and_separate(
        device, cfg, "im2col_4w4c", None, conv_is_a=False, add_act="relu", two_passes=False
    )
    gemms = [p for p in op.conv.plan(cfg.input_shape, "4W4C", False, op.residual).specs if "gemm" in p[3]]
    assert len(gemms) >= 4, "the conv should run in several windows and slices"
    assert_within_1lsb(fused, ref, "windows: fused vs reference")


def test_residual_must_match_the_output(device):
    cfg = CASES[0][1]
    case = make_case(cfg)
    x, w, ws, b = case["args"]
    conv = q8.QConv2d(w, ws, b, device=device, **case["kwargs"])
    add = q8.QAdd(0.25, -7, 0.2, 1, 0.3, 3, device=device)
    op = ConvOp(conv, add.residual(conv_is_a=True))
    shape = conv.geometry(x.shape).output_shape
    xt = _qt(x, case["kwargs"]["input_scale"], case["kwargs"]["input_zero_point"], device)
    out = q8.QTensor(device.buffer(4 * packed_words(shape, "4W4C")), shape, "4W4C", 0.3, 3, device)
    wrong = _qt(np.zeros((shape[0], shape[1], shape[2], shape[3] + 1), np.int8), 0.2, 1, device)
    with pytest.raises(ValueError, match="residual .* must have the output's shape"):
        op.passes([xt, wrong], out)
    other_scale = _qt(np.zeros(shape, np.int8), 0.5, 1, device)
    with pytest.raises(ValueError, match=r"the add's scale 0\.2"):
        op.passes([xt, other_scale], out)
    with pytest.raises(ValueError, match="fused into QTensor calls only"):
        conv.plan(x.shape, "4W4C", True, op.residual)


@pytest.mark.parametrize("model", ["tiny_resnet", "resnet18"])
def test_net_with_fusion_gives_the_bytes_without(device, model):
    """Each residual add of a ResNet runs in a conv's epilogue (one step fewer per add), with
    the bytes of every value the same as unfused: the net's output is checked, and the outputs
    of the fused steps through nets cut after each of them."""
    import torch

    torch.manual_seed(0)
    size = 32 if model == "tiny_resnet" else 64
    x = torch.randn(2, 3, size, size)
    net = q8.from_torch(pt2e_int8(q8.models.build(model), q8.Q8taQuantizer(), x), device=device)
    adds = sum(s.kind == "add" for s in net.graph_steps)
    assert adds >= 2 and not any(s.kind == "add" for s in net.steps)
    assert sum(s.kind.endswith("+add") for s in net.steps) == adds == len(net.graph_steps) - len(net.steps)
    assert "+ add relu" in repr(net)
    fused = net.run_int8(x.numpy())
    net.fuse = False
    assert len(net.steps) == len(net.graph_steps)
    assert_within_1lsb(fused, net.run_int8(x.numpy()), f"{model}: fused vs unfused net", exact=True)
    # Each fused add's own output: a net ending at that add (its output is then the net's).
    graph = net.graph_steps
    for i, s in enumerate(graph):
        if s.kind != "add":
            continue
        cut = q8.Net(graph[: i + 1], input_name=net.input_name, input_scale=net.input_scale,
                     input_zero_point=net.input_zero_point, input_channels=3, device=device)  # fmt: skip
        assert cut.steps[-1].kind.endswith("+add")
        got = cut.run_int8(x.numpy())
        cut.fuse = False
        assert_within_1lsb(got, cut.run_int8(x.numpy()), f"{model} {s.source}: fused vs unfused", exact=True)


def test_fused_conv_reading_the_net_input_in_both_calls(device):
    """add(conv(x), x) with x the net's input: the fused step reads the input twice (as the
    conv's input and as the residual), in numpy calls and in QTensor runs (whose input is
    bound per call): the bytes of the unfused net."""
    import torch

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.conv(x) + x)

    torch.manual_seed(1)
    m = pt2e_int8(Block().eval(), q8.Q8taQuantizer(), torch.randn(2, 8, 9, 11))
    net = q8.from_torch(m, device=device)
    assert [s.kind for s in net.steps] == ["conv2d+add"] and net.steps[0].inputs == (net.input_name,) * 2
    x = np.random.default_rng(3).standard_normal((3, 8, 9, 11)).astype(np.float32)
    qx = q8.quantize_to_qtensor(x, net.input_scale, net.input_zero_point, device=device)
    # A QTensor input in another layout: the residual's layout is not the output's, so the step
    # runs as its two passes (the conv into a scratch tensor, then the add).
    q4c = q8.quantize_to_qtensor(x, net.input_scale, net.input_zero_point, layout="4C", device=device)
    fused, fused_run, fused_4c = net.run_int8(x), net.run(qx).numpy(), net.run(q4c).numpy()
    net.fuse = False
    assert_within_1lsb(fused, net.run_int8(x), "input-residual: fused vs unfused", exact=True)
    assert_within_1lsb(fused_run, net.run(qx).numpy(), "input-residual run: fused vs unfused", exact=True)
    assert_within_1lsb(fused_4c, fused_run, "input-residual run, 4C input: vs 4W4C input", exact=True)
    assert len(np.unique(fused)) > 16


@pytest.mark.parametrize("batch", [1, 3])
def test_first_conv_quantizes_the_net_input(device, batch):
    """A net whose first conv runs the patch kernel (forced here; GPUs' default for RGB first
    layers) quantizes its float input in that conv (no quantize pass): the bytes of the net with
    the pass, in every call, for the whole net and for a net cut after that conv; with fusion off
    the pass is back."""
    import torch

    torch.manual_seed(3)
    x = torch.randn(2, 3, 32, 32)
    net = q8.from_torch(pt2e_int8(q8.models.build("tiny_resnet"), q8.Q8taQuantizer(), x), device=device)
    assert net.steps[0].inputs == (net.input_name,)
    net.steps[0].op.conv.method = "patch_4w4c"
    cut = q8.Net(net.graph_steps[:1], input_name=net.input_name, input_scale=net.input_scale,
                 input_zero_point=net.input_zero_point, input_channels=3, device=device)  # fmt: skip
    xb = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32)).astype(np.float32)
    calls = [xb, xb[::-1].copy() * 3]  # the second saturates some inputs
    for name, n in (("net", net), ("first conv", cut)):
        compiled = n.compile(xb.shape)
        assert compiled.quantize == [] and compiled.step_passes[0][0].label.endswith(
            "(input quantized in it)"
        )
        got = [n.run_int8(c) for c in calls]
        n.fuse = False
        assert len(n.compile(xb.shape).quantize) == 1
        for i, c in enumerate(calls):
            assert_within_1lsb(
                got[i], n.run_int8(c), f"{name}: input quantized in the first conv, call {i}", exact=True
            )
    assert len(np.unique(got[0])) > 64  # the cut net's: the first conv's output


def test_side_steps_are_the_steps_free_of_the_step_before():
    """forward.side_steps on a graph by hand: a step runs beside the one before only if it does
    not read that step's output and every input of it was read since it was written; a view
    (no pass) leaves the step before it the last one."""
    from q8ta_wgpu import forward

    def step(ins, out):
        return forward.Step("op", None, tuple(ins), out, 1.0, 0)

    #    0: x -> a   1: a -> b   2: a -> c (a read by 1; 1 wrote b)   3: b, c -> d
    #    4: d -> e   5: view of e   6: d -> f (d read by 4; the pass before is 4's)   7: x -> g
    steps = [step("x", "a"), step("a", "b"), step("a", "c"), step("bc", "d"), step("d", "e"),
             step("e", "e_view"), step("d", "f"), step("x", "g")]  # fmt: skip
    views = {"e_view": "e"}

    def root(v):
        return views.get(v, v)

    assert forward.side_steps(steps, root) == {2, 6, 7}
    # b was written by the step before: 3 waits; a chain has no side step
    chain = [step("x", "a"), step("a", "b"), step("b", "c")]
    assert forward.side_steps(chain, lambda v: v) == set()
    # a, written by 0 and not read since, needs its barrier before 2 (which does not read 1's b)
    assert forward.side_steps([step("x", "a"), step("x", "b"), step("a", "c")], lambda v: v) == {1}


def test_net_schedule_side_steps_and_adds_after_patch_convs(device):
    """ResNet-18 with its KxK convs forced onto the patch kernel (the H200's choice): each
    block's add is fused into the main branch's conv, so the downsample conv runs right after
    the block's first conv, beside it (`side_steps`), into a buffer no earlier pass touched;
    adds on patch convs run in the epilogue (ADD_IN_PATCH_EPILOGUE on) or as their own pass
    (off); every arrangement gives the bytes of the unfused net."""
    import torch

    from q8ta_wgpu import forward

    torch.manual_seed(4)
    x = torch.randn(2, 3, 64, 64)
    net = q8.from_torch(pt2e_int8(q8.models.build("resnet18"), q8.Q8taQuantizer(), x), device=device)
    for s in net.graph_steps:
        if isinstance(s.op, ConvOp) and s.op.conv.groups == 1:
            s.op.conv.method = "patch_4w4c"
    steps = net.steps
    side = forward.side_steps(steps, lambda v: v)
    downsamples = [
        i for i, s in enumerate(steps) if s.kind == "conv2d" and s.inputs[0] == steps[i - 1].inputs[0]
    ]
    assert sorted(side) == downsamples and len(downsamples) == 3
    for i in side:  # right after the block's first conv, and the main conv takes the add
        assert steps[i + 1].kind == "conv2d+add" and steps[i].output in steps[i + 1].inputs
    later = forward.fuse_residual_adds(net.graph_steps, net.graph_steps[-1].output, prefer="later")
    assert not forward.side_steps(later, lambda v: v)  # the downsample then takes the add
    with pytest.raises(ValueError, match="prefer must be 'main' or 'later'"):
        forward.fuse_residual_adds(net.graph_steps, "y", prefer="first")
    xb = np.random.default_rng(5).standard_normal((2, 3, 64, 64)).astype(np.float32)
    c = net.compile(xb.shape)
    for i in side:
        earlier = {id(c.values[v].buffer) for s in steps[:i] for v in (*s.inputs, s.output) if v in c.values}
        assert id(c.values[steps[i].output].buffer) not in earlier
    assert net.input_name not in c.values  # the first conv reads the floats: no int8 input exists
    fused_step = next(i for i, s in enumerate(steps) if s.kind == "conv2d+add")
    assert len(c.step_passes[fused_step]) == 1  # the add in the patch conv's epilogue
    in_epilogue = net.run_int8(xb)
    forward.ADD_IN_PATCH_EPILOGUE = False
    try:
        net.fuse = False
        net.fuse = True  # compiled again: the patch conv's pass, then the add's
        assert len(net.compile(xb.shape).step_passes[fused_step]) == 2
        got = net.run_int8(xb)
    finally:
        forward.ADD_IN_PATCH_EPILOGUE = True
    net.fuse = False
    want = net.run_int8(xb)
    assert_within_1lsb(got, want, "side steps, adds after patch convs vs unfused", exact=True)
    assert_within_1lsb(in_epilogue, want, "adds in patch epilogues vs unfused", exact=True)


def test_net_ending_in_a_fused_add_runs_qtensors(device):
    """A net whose last step is a fused add (not reading the net's input): `net.run(qt)` writes
    the fused step into the run's own output tensor, as the numpy call does."""
    import torch

    class Tail(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = torch.nn.Conv2d(4, 8, 3, padding=1)
            self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.conv1(x))
            return self.conv2(y) + y

    torch.manual_seed(2)
    m = pt2e_int8(Tail().eval(), q8.Q8taQuantizer(), torch.randn(2, 4, 7, 9))
    net = q8.from_torch(m, device=device)
    assert net.steps[-1].kind == "conv2d+add"
    x = np.random.default_rng(4).standard_normal((2, 4, 7, 9)).astype(np.float32)
    qx = q8.quantize_to_qtensor(x, net.input_scale, net.input_zero_point, device=device)
    want = net.run_int8(x)
    first, second = net.run(qx), net.run(qx)
    assert_within_1lsb(first.numpy(), want, "fused tail: run vs numpy call", exact=True)
    assert_within_1lsb(second.numpy(), want, "fused tail: second run", exact=True)
    assert first.buffer is not second.buffer
