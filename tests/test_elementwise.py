"""The elementwise ops by table and the channel concatenation (q8ta_wgpu/elementwise.py): the
tables against PyTorch's float path on all 256 inputs (dequantize_per_tensor, the torch op,
quantize_per_tensor), the GPU against the numpy references (q8ta_wgpu.reference.lookup, .cat)
exactly, on odd shapes, every layout in and out, channel counts that put the inputs of a cat at
any offset within a 4-channel word; and the argument checks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import q8ta_wgpu as q8
from q8ta_wgpu import elementwise as ew
from q8ta_wgpu import reference as ref
from q8ta_wgpu.layouts import LAYOUTS

from .helpers import assert_within_1lsb, garbage_out

FUNCTIONS = [f for f in ref.LOOKUP_FUNCTIONS if f != "hardtanh"] + ["hardtanh(-1,1)", "hardtanh(-0.3,2.5)"]
SHAPES = [(2, 5, 3, 7), (1, 3, 4, 4), (1, 8, 2, 9), (2, 6, 1, 5)]
# (input zero point, output zero point): the int8 extremes included.
ZPS = [(-128, 127), (127, -128), (3, -7)]
# Channel counts of a cat's inputs: offsets 3, 5, 6, 8, ... (inputs sharing words), single
# channels (a word from three inputs), word-aligned slices.
CAT_CHANNELS = [[3, 5], [5, 6, 8], [1, 1, 1], [4, 8], [6], [2, 3, 5, 1], [8, 3, 1, 4, 2]]


def _seed(*parts: Any) -> int:
    return sum((i + 1) * ord(ch) for i, ch in enumerate(repr(parts))) % 2**32  # stable across runs


def _function(name: str) -> dict[str, Any]:
    """The keyword arguments of QLookup / reference.lookup for a FUNCTIONS entry."""
    if name.startswith("hardtanh("):
        lo, hi = (float(v) for v in name[len("hardtanh(") : -1].split(","))
        return dict(function="hardtanh", min_val=lo, max_val=hi)
    return dict(function=name)


def _quant(rng: np.random.Generator, zps: tuple[int, int]) -> dict[str, Any]:
    return dict(
        input_scale=float(np.float32(rng.uniform(0.005, 0.1))), input_zero_point=zps[0],
        output_scale=float(np.float32(rng.uniform(0.002, 0.05))), output_zero_point=zps[1],
    )  # fmt: skip


# ---- PyTorch's float path -------------------------------------------------------------------
def _torch() -> Any:
    torch = pytest.importorskip("torch", reason="PyTorch is needed for the float-path check")
    pytest.importorskip("torch.ao.quantization.fx._decomposed", reason="quantized_decomposed ops")
    return torch


def _torch_lookup(q: np.ndarray, kw: dict[str, Any], quant: dict[str, Any]) -> np.ndarray:
    """PyTorch's Q/DQ graph of the function: dequantize, the torch op, quantize."""
    torch = _torch()
    F, qd = torch.nn.functional, torch.ops.quantized_decomposed
    x = qd.dequantize_per_tensor(
        torch.from_numpy(q), quant["input_scale"], quant["input_zero_point"], -128, 127, torch.int8
    )
    fn = kw["function"]
    ops = {
        "identity": lambda t: t, "relu": F.relu, "relu6": F.relu6, "hardswish": F.hardswish,
        "hardsigmoid": F.hardsigmoid, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
        "hardtanh": lambda t: F.hardtanh(t, kw.get("min_val", -1.0), kw.get("max_val", 1.0)),
    }  # fmt: skip
    y = ops[fn](x)
    return qd.quantize_per_tensor(
        y, quant["output_scale"], quant["output_zero_point"], -128, 127, torch.int8
    ).numpy()


@pytest.mark.parametrize("name", FUNCTIONS)
def test_tables_equal_torch_on_all_256_inputs(name):
    """Over 300 random (scale, zero point) pairs in and out: the table is PyTorch's int8 result
    for each of the 256 input values. hardswish, hardsigmoid, the clamps and the requantization
    are the same float32 operations; sigmoid and tanh (SLEEF in PyTorch) agree on this grid too."""
    kw = _function(name)
    rng = np.random.default_rng(_seed("tables", name))
    q = np.arange(-128, 128, dtype=np.int8)
    differ = 0
    for _ in range(300):
        quant = _quant(rng, (int(rng.integers(-128, 128)), int(rng.integers(-128, 128))))
        table = ref.lookup(ref.INT8_VALUES, **kw, **quant)
        want = _torch_lookup(q, kw, quant)
        d = np.abs(table.astype(np.int32) - want.astype(np.int32))
        assert d.max() <= 1, (name, quant)
        differ += int(np.count_nonzero(d))
    assert differ == 0, f"{name}: {differ} table entries differ from torch by 1 LSB"


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("zps", ZPS)
@pytest.mark.parametrize("shape", SHAPES)
def test_lookup_gpu_equals_reference(device, shape, zps, name):
    rng = np.random.default_rng(_seed("lookup", shape, zps, name))
    x = rng.integers(-128, 128, shape, dtype=np.int8)
    kw, quant = _function(name), _quant(rng, zps)
    want = ref.lookup(x, **kw, **quant)
    op = ew.QLookup(**kw, **quant, device=device)
    assert_within_1lsb(op(x), want, f"lookup {name} {shape} {zps}: GPU vs reference", exact=True)


@pytest.mark.parametrize("out_layout", LAYOUTS)
@pytest.mark.parametrize("in_layout", LAYOUTS)
def test_lookup_layouts_and_padding_slots(device, in_layout, out_layout):
    """Every layout in and out, into a buffer of garbage: the words equal the host pack of the
    reference, the padding slots the output zero point (sigmoid(0) is not 0: f of the input's
    padding would be wrong there)."""
    shape, quant = (
        (2, 5, 3, 6),
        dict(input_scale=0.05, input_zero_point=9, output_scale=1 / 256, output_zero_point=-128),
    )
    x = np.random.default_rng(3).integers(-128, 128, shape, dtype=np.int8)
    op = ew.QLookup("sigmoid", **quant, device=device)
    want = ref.lookup(x, "sigmoid", **quant)
    xt = q8.QTensor.from_numpy(x, 0.05, 9, in_layout, device)
    out = garbage_out(device, shape, out_layout, 1 / 256, -128)
    device.run(op.passes([xt], out))
    assert out.words().tobytes() == q8.pack(want, out_layout, -128).tobytes()


# ---- cat --------------------------------------------------------------------------------------
def _cat_case(
    rng: np.random.Generator, channels: list[int], same: bool, hw: tuple[int, int] = (3, 7)
) -> tuple[list[np.ndarray], dict[str, Any]]:
    xs = [rng.integers(-128, 128, (2, c, *hw), dtype=np.int8) for c in channels]
    if same:  # PT2E's shared qparams (Q8taQuantizer, XNNPACK): a copy
        quant = dict(input_scales=[0.02] * len(xs), input_zero_points=[-5] * len(xs))
        return xs, dict(quant, output_scale=0.02, output_zero_point=-5)
    quant = dict(
        input_scales=[float(np.float32(rng.uniform(0.005, 0.05))) for _ in xs],
        input_zero_points=[int(rng.integers(-128, 128)) for _ in xs],
    )
    return xs, dict(quant, output_scale=float(np.float32(rng.uniform(0.01, 0.05))), output_zero_point=-128)


@pytest.mark.parametrize("activation", ["none", "relu", "relu6"])
@pytest.mark.parametrize("same", [True, False], ids=["same_qparams", "own_qparams"])
@pytest.mark.parametrize("channels", CAT_CHANNELS, ids=str)
def test_cat_gpu_equals_reference_and_torch(device, channels, same, activation):
    rng = np.random.default_rng(_seed("cat", channels, same, activation))
    xs, quant = _cat_case(rng, channels, same)
    want = ref.cat(xs, **quant, activation=activation)
    op = ew.QCat(*quant.values(), activation=activation, device=device)
    assert all(op.copy) == (same and activation == "none")
    got = op(xs)
    assert got.shape == (2, sum(channels), 3, 7)
    assert_within_1lsb(got, want, f"cat {channels} {same} {activation}: GPU vs reference", exact=True)
    if same and activation == "none":
        np.testing.assert_array_equal(got, np.concatenate(xs, axis=1))
    torch = _torch()
    qd = torch.ops.quantized_decomposed
    y = torch.cat([
        qd.dequantize_per_tensor(torch.from_numpy(x), s, z, -128, 127, torch.int8)
        for x, s, z in zip(xs, quant["input_scales"], quant["input_zero_points"], strict=True)
    ], 1)  # fmt: skip
    y = {"none": y, "relu": torch.relu(y), "relu6": torch.nn.functional.relu6(y)}[activation]
    torch_q = qd.quantize_per_tensor(
        y, quant["output_scale"], quant["output_zero_point"], -128, 127, torch.int8
    )
    assert_within_1lsb(got, torch_q.numpy(), f"cat {channels} {same} {activation}: GPU vs torch", exact=True)


@pytest.mark.parametrize("out_layout", LAYOUTS)
@pytest.mark.parametrize("channels", [[3, 5], [1, 2, 1, 3, 1], [5, 6, 8]], ids=str)
def test_cat_layouts_garbage_and_one_submit(device, channels, out_layout):
    """Inputs in mixed layouts, the output in each layout over garbage, the cat recorded with a
    lookup after it in one submit: the words equal the host pack of the reference (the words two
    inputs share are completed by the later dispatch; padding slots hold the zero point)."""
    rng = np.random.default_rng(_seed("cat layouts", channels, out_layout))
    xs, quant = _cat_case(rng, channels, same=False, hw=(2, 5))
    op = ew.QCat(*quant.values(), device=device)
    ts = [
        q8.QTensor.from_numpy(x, s, z, LAYOUTS[i % 3], device)
        for i, (x, s, z) in enumerate(zip(xs, quant["input_scales"], quant["input_zero_points"], strict=True))
    ]
    shape = op.output_shape(*(t.shape for t in ts))
    s_out, zp_out = quant["output_scale"], quant["output_zero_point"]
    mid = garbage_out(device, shape, out_layout, s_out, zp_out)
    hs = ew.QLookup("hardswish", input_scale=s_out, input_zero_point=zp_out, output_scale=0.01,
                    output_zero_point=3, device=device)  # fmt: skip
    out = garbage_out(device, shape, "4W4C", 0.01, 3)
    with q8.recording():
        for p in op.passes(ts, mid) + hs.passes([mid], out):
            device.run([p])
    want = ref.cat(xs, **quant)
    assert mid.words().tobytes() == q8.pack(want, out_layout, zp_out).tobytes()
    want_hs = ref.lookup(want, "hardswish", input_scale=s_out, input_zero_point=zp_out, output_scale=0.01,
                         output_zero_point=3)  # fmt: skip
    assert out.words().tobytes() == q8.pack(want_hs, "4W4C", 3).tobytes()


def test_functional_wrappers(device):
    rng = np.random.default_rng(11)
    x = rng.integers(-128, 128, (1, 6, 3, 5), dtype=np.int8)
    quant = dict(input_scale=0.04, input_zero_point=-3, output_scale=0.02, output_zero_point=-100)
    want = ref.lookup(x, "hardswish", **quant)
    np.testing.assert_array_equal(ew.hardswish(x, **quant, device=device), want)
    xt = q8.QTensor.from_numpy(x, 0.04, -3, device=device)
    out = ew.hardswish(xt, output_scale=0.02, output_zero_point=-100)  # quantization from xt
    assert isinstance(out, q8.QTensor) and (out.scale, out.zero_point) == (np.float32(0.02), -100)
    np.testing.assert_array_equal(out.numpy(), want)
    t = ew.lookup(xt, "hardtanh", min_val=-0.5, max_val=0.5, output_scale=0.01, output_zero_point=0)
    np.testing.assert_array_equal(
        t.numpy(), ref.lookup(x, "hardtanh", input_scale=0.04, input_zero_point=-3, output_scale=0.01,
                              output_zero_point=0, min_val=-0.5, max_val=0.5),
    )  # fmt: skip
    b = rng.integers(-128, 128, (1, 3, 3, 5), dtype=np.int8)
    bt = q8.QTensor.from_numpy(b, 0.05, 7, device=device)
    got = ew.cat([xt, bt], -3, output_scale=0.05, output_zero_point=7)
    cat_q = dict(input_scales=[0.04, 0.05], input_zero_points=[-3, 7], output_scale=0.05, output_zero_point=7)
    np.testing.assert_array_equal(got.numpy(), ref.cat([x, b], **cat_q))
    np.testing.assert_array_equal(ew.cat([x, b], **cat_q, device=device), ref.cat([x, b], **cat_q))
    assert isinstance(q8.QLookup, type) and isinstance(q8.QCat, type)


def test_bad_arguments_name_the_argument(device):
    quant = dict(input_scale=0.1, input_zero_point=0, output_scale=0.1, output_zero_point=0)
    with pytest.raises(ValueError, match=r"function must be one of .*hardswish.*got 'gelu'"):
        ew.QLookup("gelu", **quant, device=device)
    with pytest.raises(TypeError, match="function must be a str"):
        ew.QLookup(None, **quant, device=device)
    with pytest.raises(ValueError, match="min_val must be <= max_val"):
        ew.QLookup("hardtanh", **quant, min_val=2.0, max_val=1.0, device=device)
    with pytest.raises(ValueError, match="max_val must be a finite"):
        ref.lookup(ref.INT8_VALUES, "hardtanh", **quant, max_val=float("inf"))
    with pytest.raises(ValueError, match="input_scale must be > 0"):
        ew.QLookup("relu", **{**quant, "input_scale": 0.0}, device=device)
    with pytest.raises(ValueError, match=r"output_zero_point must be in \[-128, 127\]"):
        ref.lookup(np.zeros(3, np.int8), "relu", **{**quant, "output_zero_point": 128})
    with pytest.raises(TypeError, match="x must have dtype int8"):
        ew.QLookup("relu", **quant, device=device)(np.zeros((1, 1, 1, 1), np.float32))
    # The options are one TypedDict (reference.LookupOptions): keywords checked as Python would.
    with pytest.raises(TypeError, match=r"^QLookup\.__init__\(\) got an unexpected keyword argument 'min'$"):
        ew.QLookup("hardtanh", **quant, min=0.0, device=device)
    missing = {k: v for k, v in quant.items() if k != "output_scale"}
    with pytest.raises(
        TypeError, match=r"^lookup\(\) missing 1 required keyword-only argument: 'output_scale'$"
    ):
        ref.lookup(ref.INT8_VALUES, "relu", **missing)
    op = ew.QLookup("relu", **quant, device=device)
    xt = q8.QTensor.from_numpy(np.zeros((1, 2, 2, 2), np.int8), 0.2, 0, device=device)
    with pytest.raises(ValueError, match="x has scale 0.2.* this op expects input_scale 0.1"):
        op(xt)
    with pytest.raises(ValueError, match=r"inputs must be a sequence of 1 QTensor"):
        op.passes([xt, xt], xt)

    cq = dict(input_scales=[0.1, 0.1], input_zero_points=[0, 0], output_scale=0.1, output_zero_point=0)
    with pytest.raises(ValueError, match=r"input_zero_points must have one entry per input \(2\), got 1"):
        ew.QCat([0.1, 0.1], [0], 0.1, 0, device=device)
    with pytest.raises(ValueError, match=r"input_scales\[1\] must be > 0"):
        ew.QCat([0.1, -1.0], [0, 0], 0.1, 0, device=device)
    with pytest.raises(ValueError, match="at least one input"):
        ew.QCat([], [], 0.1, 0, device=device)
    with pytest.raises(ValueError, match="activation must be one of"):
        ew.QCat([0.1], [0], 0.1, 0, "gelu", device=device)
    cat = ew.QCat(*cq.values(), device=device)
    with pytest.raises(ValueError, match=r"inputs\[1\] has shape \(1, 2, 3, 2\); a cat along channels needs"):
        cat.output_shape((1, 2, 2, 2), (1, 2, 3, 2))
    with pytest.raises(ValueError, match=r"cat of 3 inputs; this op was made for 2 \(input_scales\)"):
        cat.output_shape((1, 2, 2, 2), (1, 2, 2, 2), (1, 2, 2, 2))
    with pytest.raises(TypeError, match=r"tensors\[1\] must have dtype int8"):
        cat([np.zeros((1, 2, 2, 2), np.int8), np.zeros((1, 2, 2, 2), np.int16)])
    with pytest.raises(TypeError, match="all QTensors or all numpy"):
        cat([xt, np.zeros((1, 2, 2, 2), np.int8)])
    with pytest.raises(
        ValueError,
        match=r"inputs\[0\] has scale 0.2\d* and zero point 0; this op expects input_scales\[0\] 0.1",
    ):
        cat([xt, q8.QTensor.from_numpy(np.zeros((1, 2, 2, 2), np.int8), 0.1, 0, device=device)])
    with pytest.raises(
        ValueError, match=r"inputs must be a sequence of 2 QTensor\(s\) \(inputs\[0\], inputs\[1\]\)"
    ):
        cat.passes([xt], xt)
    with pytest.raises(ValueError, match="dim must be 1"):
        ew.cat([xt, xt], 2, output_scale=0.1, output_zero_point=0)
    with pytest.raises(TypeError, match="input_scales and input_zero_points are required for numpy"):
        ew.cat([np.zeros((1, 2, 2, 2), np.int8)], output_scale=0.1, output_zero_point=0)
    with pytest.raises(ValueError, match=r"tensors\[1\] has shape \(1, 2, 3\); every tensor"):
        ref.cat([np.zeros((1, 2, 3, 3), np.int8), np.zeros((1, 2, 3), np.int8)], **cq)
    with pytest.raises(TypeError, match="tensors must be a non-empty list"):
        ref.cat(np.zeros((1, 2, 3, 3), np.int8), **cq)
