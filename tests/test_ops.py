"""The non-conv ops (q8ta_wgpu/ops.py): add, max_pool2d, avg_pool2d, adaptive_avg_pool2d and
quantize_pack on the GPU against their numpy references (q8ta_wgpu/reference.py), and the
references against PyTorch's float path (PT2E: torch.nn.functional on the dequantized float32
tensor, then quantized_decomposed.quantize_per_tensor). Small shapes: odd C, W not a multiple of
4, N = 2; every layout in and out; the padding slots of the output words."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import q8ta_wgpu as q8
from q8ta_wgpu import ops
from q8ta_wgpu import reference as ref
from q8ta_wgpu.layouts import LAYOUTS, packed_words

from .helpers import assert_within_1lsb

SHAPES = [(2, 5, 6, 9), (2, 3, 7, 5), (1, 8, 4, 4)]
# (input zero point, output zero point): the int8 extremes included.
ZPS = [(-128, 127), (127, -128), (3, -7)]


def _seed(*parts: Any) -> int:
    return sum((i + 1) * ord(ch) for i, ch in enumerate(repr(parts))) % 2**32  # stable across runs


def _scale(rng: np.random.Generator, lo: float = 0.005, hi: float = 0.05) -> float:
    return float(np.float32(rng.uniform(lo, hi)))


# ---- PyTorch's float path -------------------------------------------------------------------
def _torch() -> Any:
    torch = pytest.importorskip("torch", reason="PyTorch is needed for the float-path check")
    pytest.importorskip("torch.ao.quantization.fx._decomposed", reason="quantized_decomposed ops")
    return torch


def _t_dequant(q: np.ndarray, scale: float, zp: int) -> Any:
    torch = _torch()
    qd = torch.ops.quantized_decomposed
    return qd.dequantize_per_tensor(torch.from_numpy(q), scale, zp, -128, 127, torch.int8)


def _t_quant(y: Any, scale: float, zp: int) -> np.ndarray:
    torch = _torch()
    return torch.ops.quantized_decomposed.quantize_per_tensor(y, scale, zp, -128, 127, torch.int8).numpy()


def _t_F() -> Any:
    _torch()
    import torch.nn.functional as F

    return F


# ---- add --------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["none", "relu", "relu6"])
@pytest.mark.parametrize("zps", ZPS)
@pytest.mark.parametrize("shape", SHAPES)
def test_add_matches_reference_and_torch(device, shape, zps, activation):
    rng = np.random.default_rng(_seed("add", shape, zps, activation))
    a = rng.integers(-128, 128, shape, dtype=np.int8)
    b = rng.integers(-128, 128, shape, dtype=np.int8)
    q = dict(
        a_scale=_scale(rng), a_zero_point=zps[0], b_scale=_scale(rng), b_zero_point=int(rng.integers(-128, 128)),
        output_scale=_scale(rng, 0.01, 0.08), output_zero_point=zps[1],
    )  # fmt: skip
    want = ref.add(a, b, **q, activation=activation)
    op = ops.QAdd(**q, activation=activation, device=device)
    got = op(a, b)
    assert_within_1lsb(got, want, f"add {shape} {zps} {activation}: GPU vs reference")
    y = _t_dequant(a, q["a_scale"], q["a_zero_point"]) + _t_dequant(b, q["b_scale"], q["b_zero_point"])
    if activation == "relu":
        y = _t_F().relu(y)
    if activation == "relu6":
        y = _t_F().hardtanh(y, 0.0, 6.0)
    torch_q = _t_quant(y, q["output_scale"], q["output_zero_point"])
    assert_within_1lsb(want, torch_q, f"add {shape} {zps} {activation}: reference vs torch")
    assert_within_1lsb(got, torch_q, f"add {shape} {zps} {activation}: GPU vs torch")


def test_add_saturates_and_ties(device):
    """Sums far past the output range saturate; exact .5 ties round to even like torch."""
    a = np.arange(-128, 128, dtype=np.int8).reshape(1, 4, 8, 8)
    b = a.copy()  # y = 0.75*a - 0.25: quarter steps, so half the y/0.5 are .5 ties
    q = dict(
        a_scale=0.5, a_zero_point=0, b_scale=0.25, b_zero_point=1, output_scale=0.5, output_zero_point=-3
    )
    want = ref.add(a, b, **q)
    assert_within_1lsb(ops.add(a, b, **q, device=device), want, "add ties: GPU vs reference", exact=True)
    y = _t_dequant(a, 0.5, 0) + _t_dequant(b, 0.25, 1)
    assert_within_1lsb(want, _t_quant(y, 0.5, -3), "add ties: reference vs torch", exact=True)
    assert (want == 127).any() and (want == -128).any()


# ---- max pool -----------------------------------------------------------------------------------
# (kernel_size, stride, padding, dilation, ceil_mode)
MAX_CFGS = [
    (2, None, 0, 1, False),
    (3, 2, 1, 1, False),
    (3, 2, 1, 1, True),
    (3, 1, 1, 2, False),
    ((3, 2), (2, 1), (1, 0), (1, 2), True),
    (2, 3, 1, 1, True),
    (1, 2, 0, 1, False),
]


@pytest.mark.parametrize("cfg", MAX_CFGS, ids=str)
@pytest.mark.parametrize("shape", SHAPES)
def test_max_pool2d_exact(device, shape, cfg):
    k, s, p, d, cm = cfg
    rng = np.random.default_rng(_seed("max", shape, cfg))
    x = rng.integers(-128, 128, shape, dtype=np.int8)
    op = ops.QMaxPool2d(k, s, p, d, cm, device=device)
    try:
        want = ref.max_pool2d(x, k, s, p, d, cm)
    except ValueError:  # window larger than this padded input: torch refuses too
        with pytest.raises(RuntimeError):
            _t_F().max_pool2d(_t_dequant(x, 0.1, 0), k, s, p, d, cm)
        return
    assert op.output_shape(shape) == want.shape
    got = op(x)
    assert_within_1lsb(got, want, f"max_pool2d {shape} {cfg}: GPU vs reference", exact=True)
    zp = int(rng.integers(-128, 128))
    scale = _scale(rng)
    torch_q = _t_quant(_t_F().max_pool2d(_t_dequant(x, scale, zp), k, s, p, d, cm), scale, zp)
    assert_within_1lsb(want, torch_q, f"max_pool2d {shape} {cfg}: reference vs torch", exact=True)
    # On a QTensor: the output keeps the input's quantization.
    t = op(q8.QTensor.from_numpy(x, scale, zp, device=device))
    assert (t.scale, t.zero_point, t.layout) == (scale, zp, "4W4C")
    assert t.words().tobytes() == q8.pack(want, "4W4C", zp).tobytes()


# ---- average pools ------------------------------------------------------------------------------
# (kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
AVG_CFGS = [
    (2, None, 0, False, True, None),
    (3, 2, 1, False, True, None),
    (3, 2, 1, True, True, None),  # H = 6: the last window is clipped to the padded input
    (3, 2, 1, True, False, None),
    ((3, 2), (2, 1), (1, 1), True, True, None),
    (3, 1, 1, False, False, None),
    (3, 2, 1, False, True, 5),
    (4, 3, 2, True, True, None),
    (2, 1, 1, False, False, -3),  # torch takes a negative divisor_override
]


def _avg_quant(rng: np.random.Generator, zps: tuple[int, int]) -> dict[str, Any]:
    s_in = _scale(rng)
    return dict(
        input_scale=s_in,
        input_zero_point=zps[0],
        output_scale=float(np.float32(s_in * rng.uniform(0.3, 1.2))),
        output_zero_point=zps[1],
    )


@pytest.mark.parametrize("cfg", AVG_CFGS, ids=str)
@pytest.mark.parametrize("zps", ZPS)
@pytest.mark.parametrize("shape", SHAPES)
def test_avg_pool2d_matches_reference_and_torch(device, shape, zps, cfg):
    k, s, p, cm, cip, div = cfg
    rng = np.random.default_rng(_seed("avg", shape, zps, cfg))
    x = rng.integers(-128, 128, shape, dtype=np.int8)
    q = _avg_quant(rng, zps)
    want = ref.avg_pool2d(x, k, s, p, cm, cip, div, **q)
    op = ops.QAvgPool2d(k, s, p, cm, cip, div, **q, device=device)
    assert op.output_shape(shape) == want.shape
    what = f"avg_pool2d {shape} {zps} {cfg}"
    got = op(x)
    assert_within_1lsb(got, want, f"{what}: GPU vs reference")
    y = _t_F().avg_pool2d(_t_dequant(x, q["input_scale"], zps[0]), k, s, p, cm, cip, div)
    torch_q = _t_quant(y, q["output_scale"], zps[1])
    assert_within_1lsb(want, torch_q, f"{what}: reference vs torch")
    assert_within_1lsb(got, torch_q, f"{what}: GPU vs torch")


@pytest.mark.parametrize("output_size", [1, (3, 4), (2, None), (5, 7), (None, 1)], ids=str)
@pytest.mark.parametrize("zps", ZPS)
@pytest.mark.parametrize("shape", SHAPES)
def test_adaptive_avg_pool2d_matches_reference_and_torch(device, shape, zps, output_size):
    rng = np.random.default_rng(_seed("adaptive", shape, zps, output_size))
    x = rng.integers(-128, 128, shape, dtype=np.int8)
    q = _avg_quant(rng, zps)
    want = ref.adaptive_avg_pool2d(x, output_size, **q)
    op = ops.QAdaptiveAvgPool2d(output_size, **q, device=device)
    assert op.output_shape(shape) == want.shape
    what = f"adaptive_avg_pool2d {shape} {zps} {output_size}"
    got = op(x)
    assert_within_1lsb(got, want, f"{what}: GPU vs reference")
    xf = _t_dequant(x, q["input_scale"], zps[0])
    torch_q = _t_quant(_t_F().adaptive_avg_pool2d(xf, output_size), q["output_scale"], zps[1])
    assert_within_1lsb(want, torch_q, f"{what}: reference vs torch")
    assert_within_1lsb(got, torch_q, f"{what}: GPU vs torch")
    if output_size == 1:  # the mean over H and W
        mean_q = _t_quant(xf.mean(dim=(2, 3), keepdim=True), q["output_scale"], zps[1])
        assert_within_1lsb(got, mean_q, f"{what}: GPU vs torch mean(H, W)")


@pytest.mark.parametrize("ratio", [1.0, 0.5, 1 / 3, 0.1])
def test_avg_pool2d_near_ties_within_1lsb_of_torch(device, ratio):
    """Output scale a simple fraction of the input scale: many averages land on or next to a .5
    tie. The reference sums integers exactly, PyTorch sums the dequantized float32 values (each
    rounded), so near a tie they round apart: 1 LSB, never more (~2-6% of outputs here)."""
    rng = np.random.default_rng(_seed("ties", ratio))
    s_in = _scale(rng)
    zp = int(rng.integers(-60, 60))
    x = (zp + rng.integers(-60, 60, (2, 16, 8, 10))).astype(np.int8)
    q = dict(
        input_scale=s_in,
        input_zero_point=zp,
        output_scale=float(np.float32(s_in * ratio)),
        output_zero_point=0,
    )
    for k, p, cip in [(2, 0, True), (3, 1, False), ((2, 3), 1, True)]:
        what = f"avg_pool2d ties ratio={ratio:.3g} k={k} p={p} cip={cip}"
        want = ref.avg_pool2d(x, k, None, p, True, cip, **q)
        got = ops.avg_pool2d(x, k, None, p, True, cip, **q, device=device)
        assert_within_1lsb(got, want, f"{what}: GPU vs reference")
        y = _t_F().avg_pool2d(_t_dequant(x, s_in, zp), k, None, p, True, cip)
        assert_within_1lsb(want, _t_quant(y, q["output_scale"], 0), f"{what}: reference vs torch")


# ---- layouts and padding slots ------------------------------------------------------------------
def _cases(
    rng: np.random.Generator, dev: q8.Device
) -> list[tuple[str, Any, int, list[np.ndarray], list[tuple[float, int]]]]:
    """(name, op, output zero point, inputs, inputs' (scale, zp)) for one op of each kind."""
    shape = (2, 6, 5, 7)
    x = rng.integers(-128, 128, shape, dtype=np.int8)
    b = rng.integers(-128, 128, shape, dtype=np.int8)
    avg_q = dict(input_scale=0.03, input_zero_point=-128, output_scale=0.02, output_zero_point=127)
    return [
        (
            "add",
            ops.QAdd(0.03, -128, 0.05, 9, 0.04, 127, "relu", dev),
            127,
            [x, b],
            [(0.03, -128), (0.05, 9)],
        ),
        ("max_pool2d", ops.QMaxPool2d(3, 2, 1, ceil_mode=True, device=dev), -128, [x], [(0.03, -128)]),
        ("avg_pool2d", ops.QAvgPool2d(3, 2, 1, True, False, **avg_q, device=dev), 127, [x], [(0.03, -128)]),
        (
            "adaptive_avg_pool2d",
            ops.QAdaptiveAvgPool2d((2, 3), **avg_q, device=dev),
            127,
            [x],
            [(0.03, -128)],
        ),
    ]


def _padding_mask(shape: tuple[int, ...], layout: str) -> np.ndarray:
    """bool per byte of the packed tensor: True where no element lives (the padding slots)."""
    probe = q8.pack(np.zeros(shape, np.int8), layout, zero_point=-1).view(np.int8)
    return probe == -1


def test_layouts_in_and_out_give_the_same_bytes(device):
    """Inputs in 4W4C, 4C and 4C1W give the same output; outputs written by `passes` in every
    layout equal the host pack of the reference, padding slots included (the output buffer is
    filled with garbage first, so every word must be written)."""
    rng = np.random.default_rng(7)
    for name, op, zp_out, xs, quants in _cases(rng, device):
        want = None
        for in_layout in LAYOUTS:
            ts = [
                q8.QTensor.from_numpy(x, s, zp, in_layout, device)
                for x, (s, zp) in zip(xs, quants, strict=True)
            ]
            out_shape = op.output_shape(*(x.shape for x in xs))
            got = op(*ts)
            assert got.layout == "4W4C" and got.shape == out_shape
            if want is None:
                want = got.words()
                np.testing.assert_array_equal(got.numpy(), op(*xs), err_msg=name)
            assert got.words().tobytes() == want.tobytes(), f"{name}: input layout {in_layout} differs"
            host = got.numpy()
            for out_layout in LAYOUTS:
                nbytes = 4 * packed_words(out_shape, out_layout)
                buf = device.buffer(nbytes)
                device.write(buf, np.full(nbytes, 0xAB, np.uint8))
                out = q8.QTensor(buf, out_shape, out_layout, got.scale, got.zero_point, device)
                device.run(op.passes(ts, out))
                assert out.words().tobytes() == q8.pack(host, out_layout, zp_out).tobytes(), (
                    f"{name}: {in_layout} -> {out_layout}"
                )


@pytest.mark.parametrize("shape", [(2, 5, 3, 7), (1, 3, 2, 5), (1, 1, 1, 1)])
def test_padding_slots_hold_the_output_zero_point(device, shape):
    """Slots past C and past W (4W4C's padded widths) of every output word hold zp_out, read from
    the words as stored (unpacking would drop them)."""
    rng = np.random.default_rng(_seed("padding", shape))
    x = rng.integers(-128, 128, shape, dtype=np.int8)
    b = rng.integers(-128, 128, shape, dtype=np.int8)
    zp_in, zp_out = 11, -77
    xt = q8.QTensor.from_numpy(x, 0.02, zp_in, device=device)
    bt = q8.QTensor.from_numpy(b, 0.03, -5, device=device)
    outs = [
        ops.QAdd(0.02, zp_in, 0.03, -5, 0.05, zp_out, device=device)(xt, bt),
        ops.QAvgPool2d(
            3,
            1,
            1,
            input_scale=0.02,
            input_zero_point=zp_in,
            output_scale=0.01,
            output_zero_point=zp_out,
            device=device,
        )(xt),  # fmt: skip
        ops.QAdaptiveAvgPool2d(
            (1, 3),
            input_scale=0.02,
            input_zero_point=zp_in,
            output_scale=0.01,
            output_zero_point=zp_out,
            device=device,
        )(xt),  # fmt: skip
        ops.QMaxPool2d(2, 1, 1, device=device)(q8.QTensor.from_numpy(x, 0.02, zp_out, device=device)),
        ops.quantize_to_qtensor(rng.standard_normal(shape).astype(np.float32), 0.01, zp_out, device=device),
    ]
    for t in outs:
        assert t.zero_point == zp_out and t.layout == "4W4C"
        words = t.words().view(np.int8)
        pad = _padding_mask(t.shape, "4W4C")
        if t.shape[1] % 4 or t.shape[3] % 4:
            assert pad.any()
        assert np.all(words[pad] == zp_out), f"{t.shape}: padding slots hold {np.unique(words[pad])}"


# ---- quantize_pack ------------------------------------------------------------------------------
def _quantize_inputs(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    """Random floats: in range, far out of range, exact and near .5 ties, infinities, -0.0."""
    s = np.float32(scale)
    n = int(np.prod(shape))
    vals = [
        (rng.standard_normal(n) * 60 * s).astype(np.float32),
        ((rng.integers(-300, 300, n) + np.float32(0.5)) * s).astype(np.float32),
        (rng.uniform(-1e30, 1e30, n)).astype(np.float32),
    ]
    x = np.choose(rng.integers(0, 3, n), vals).astype(np.float32)
    special = np.array([np.inf, -np.inf, -0.0, 3.4e38, -3.4e38, 0.5 * s, -0.5 * s, 1.5 * s], np.float32)
    x[: special.size] = special
    return x.reshape(shape)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    ("scale", "zp"), [(0.125, 0), (2.0**-7, -128), (0.0371, 127), (0.1, 5), (3.0, -1)], ids=str
)
def test_quantize_pack_exact_vs_torch(device, scale, zp, layout):
    """The GPU's quantize equals the exact rounding of x / scale (checked against Python's
    Fraction arithmetic on every element), and torch's float32 one within 1 LSB; the values near
    .5 ties (x built as (k + 0.5) * scale in float32) are where they part."""
    from fractions import Fraction

    shape = (2, 5, 3, 6)
    rng = np.random.default_rng(_seed("quantize", scale, zp, layout))
    x = _quantize_inputs(rng, shape, scale)
    assert not np.isnan(x).any()
    torch = _torch()
    want_torch = _t_quant(torch.from_numpy(x), scale, zp)
    want = ref.quantize_exact(x, scale, zp)
    s = Fraction(float(np.float32(scale)))
    fractions = [
        max(-128, min(127, round(Fraction(float(v)) / s) + zp))
        if np.isfinite(v)
        else (127 if v > 0 else -128)
        for v in x.ravel()
    ]
    assert want.ravel().tolist() == fractions
    what = f"quantize scale={scale} zp={zp} {layout}"
    assert_within_1lsb(want, want_torch, f"{what}: reference vs torch")
    t = ops.quantize_to_qtensor(x, scale, zp, layout, device=device)
    assert (t.shape, t.layout, t.zero_point) == (shape, layout, zp)
    assert t.words().tobytes() == q8.pack(want, layout, zp).tobytes(), what  # padding = zp
    assert_within_1lsb(t.numpy(), want, f"{what}: GPU vs reference", exact=True)


def test_quantize_pass_into_a_given_buffer(device):
    x = np.linspace(-3, 3, 2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    src = device.upload(x)
    dst = device.buffer(4 * packed_words(x.shape, "4C1W"))
    device.run([ops.quantize_pass(device, src, dst, x.shape, "4C1W", 0.05, -2)])
    words = np.frombuffer(device.read(dst, 4 * packed_words(x.shape, "4C1W")), np.uint32)
    assert words.tobytes() == q8.pack(ref.quantize_per_tensor(x, 0.05, -2), "4C1W", -2).tobytes()


# ---- passes() as a network runner uses them -----------------------------------------------------
def test_passes_chain_recorded_in_one_submit(device):
    """quantize -> max pool -> add (residual) -> global average, every pass recorded into
    preallocated outputs and submitted once; equal to the references chained."""
    rng = np.random.default_rng(11)
    xf = rng.standard_normal((2, 6, 8, 7)).astype(np.float32)
    s0, z0 = 0.03, -4
    mp = ops.QMaxPool2d(3, 1, 1, device=device)
    addop = ops.QAdd(s0, z0, s0, z0, 0.05, 10, "relu", device=device)
    gap = ops.QAdaptiveAvgPool2d(
        1, input_scale=0.05, input_zero_point=10, output_scale=0.01, output_zero_point=-100, device=device
    )

    def alloc(shape: tuple[int, int, int, int], scale: float, zp: int, layout: str) -> q8.QTensor:
        return q8.QTensor(device.buffer(4 * packed_words(shape, layout)), shape, layout, scale, zp, device)

    src = device.upload(xf)
    xq = alloc(xf.shape, s0, z0, "4C")
    pooled = alloc(mp.output_shape(xq.shape), s0, z0, "4W4C")
    summed = alloc(addop.output_shape(xq.shape, pooled.shape), 0.05, 10, "4C1W")
    out = alloc(gap.output_shape(summed.shape), 0.01, -100, "4W4C")
    with device.recording():
        device.run([ops.quantize_pass(device, src, xq.buffer, xf.shape, "4C", s0, z0)])
        device.run(mp.passes([xq], pooled))
        device.run(addop.passes([xq, pooled], summed))
        device.run(gap.passes([summed], out))
    r0 = ref.quantize_per_tensor(xf, s0, z0)
    r1 = ref.max_pool2d(r0, 3, 1, 1)
    r2 = ref.add(r0, r1, a_scale=s0, a_zero_point=z0, b_scale=s0, b_zero_point=z0, output_scale=0.05,
                 output_zero_point=10, activation="relu")  # fmt: skip
    r3 = ref.adaptive_avg_pool2d(
        r2, 1, input_scale=0.05, input_zero_point=10, output_scale=0.01, output_zero_point=-100
    )
    assert_within_1lsb(out.numpy(), r3, "chain: GPU vs reference")
    np.testing.assert_array_equal(summed.numpy(), r2)


# ---- functional wrappers ----------------------------------------------------------------------
def test_functional_wrappers_take_quantization_from_qtensors(device):
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, (1, 5, 6, 6), dtype=np.int8)
    t = q8.QTensor.from_numpy(x, 0.04, 3, device=device)
    y = ops.avg_pool2d(t, 2)
    assert (y.scale, y.zero_point) == (t.scale, 3)  # defaults to the input's
    want = ref.avg_pool2d(
        x, 2, input_scale=t.scale, input_zero_point=3, output_scale=t.scale, output_zero_point=3
    )
    np.testing.assert_array_equal(y.numpy(), want)
    z = ops.add(t, y if y.shape == t.shape else t, output_scale=0.08, output_zero_point=0)
    assert isinstance(z, q8.QTensor) and z.scale == np.float32(0.08)
    g = ops.adaptive_avg_pool2d(x, (2, 2), input_scale=0.04, input_zero_point=3)
    assert isinstance(g, np.ndarray) and g.shape == (1, 5, 2, 2)
    m = ops.max_pool2d(t, 2, ceil_mode=True)
    assert m.shape == (1, 5, 3, 3) and (m.scale, m.zero_point) == (t.scale, 3)


# ---- argument checks ----------------------------------------------------------------------------
def test_bad_arguments_name_the_argument(device):
    x = np.zeros((1, 3, 5, 5), np.int8)
    with pytest.raises(ValueError, match="activation"):
        ops.QAdd(0.1, 0, 0.1, 0, 0.1, 0, activation="gelu")
    with pytest.raises(ValueError, match="output_scale must be > 0"):
        ops.QAdd(0.1, 0, 0.1, 0, 0.0, 0)
    with pytest.raises(ValueError, match=r"b_zero_point must be in \[-128, 127\]"):
        ops.QAdd(0.1, 0, 0.1, 128, 0.1, 0)
    with pytest.raises(ValueError, match="padding must be at most half of kernel_size"):
        ops.QMaxPool2d(3, padding=2)
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        ops.QMaxPool2d(0)
    with pytest.raises(TypeError, match="ceil_mode must be a bool"):
        ops.QMaxPool2d(2, ceil_mode="yes")
    with pytest.raises(ValueError, match="divisor_override must not be zero"):
        ops.QAvgPool2d(2, divisor_override=0, input_scale=0.1, input_zero_point=0, output_scale=0.1,
                       output_zero_point=0)  # fmt: skip
    with pytest.raises(TypeError, match="count_include_pad must be a bool"):
        ops.QAvgPool2d(2, count_include_pad=None, input_scale=0.1, input_zero_point=0, output_scale=0.1,
                       output_zero_point=0)  # fmt: skip
    with pytest.raises(ValueError, match="output_size must be >= 1"):
        ops.QAdaptiveAvgPool2d(0, input_scale=0.1, input_zero_point=0, output_scale=0.1, output_zero_point=0)
    with pytest.raises(ValueError, match="same shape"):
        ops.QAdd(0.1, 0, 0.1, 0, 0.1, 0).output_shape((1, 3, 5, 5), (1, 3, 5, 4))
    with pytest.raises(ValueError, match="larger than the padded input"):
        ops.QMaxPool2d(4, dilation=2).output_shape((1, 3, 5, 5))
    with pytest.raises(TypeError, match="x must have dtype int8"):
        ops.QMaxPool2d(2, device=device)(x.astype(np.float32))
    with pytest.raises(TypeError, match="input_scale and input_zero_point are required"):
        ops.avg_pool2d(x, 2)
    with pytest.raises(ValueError, match="must not contain NaN"):
        ops.quantize_to_qtensor(np.full((1, 1, 1, 1), np.nan, np.float32), 0.1, 0, device=device)
    with pytest.raises(ValueError, match="x must have 4 dimensions"):
        ref.max_pool2d(x[0], 2)


def test_passes_check_their_tensors(device):
    x = np.zeros((1, 3, 5, 5), np.int8)
    a = q8.QTensor.from_numpy(x, 0.1, 0, device=device)
    b = q8.QTensor.from_numpy(x, 0.2, 1, device=device)
    addop = ops.QAdd(0.1, 0, 0.1, 0, 0.1, 0, device=device)
    out = q8.QTensor(device.buffer(a.nbytes), a.shape, "4W4C", 0.1, 0, device)
    with pytest.raises(ValueError, match="b has scale 0.2.*expects b_scale 0.1"):
        addop.passes([a, b], out)
    with pytest.raises(ValueError, match="out must not share its buffer"):
        addop.passes([a, out], out)
    with pytest.raises(ValueError, match="inputs must be a sequence of 2"):
        addop.passes([a], out)
    mp = ops.QMaxPool2d(2, device=device)
    with pytest.raises(ValueError, match=r"out has shape \(1, 3, 5, 5\)"):
        mp.passes([a], out)
    small = q8.QTensor(device.buffer(16), (1, 3, 2, 2), "4W4C", 0.1, 0, device)
    with pytest.raises(ValueError, match="out has scale 0.1 and zero point 0; this op expects x_scale 0.2"):
        mp.passes([b], small)  # max pooling keeps x's quantization
    tiny = q8.QTensor(device.buffer(16), (1, 3, 5, 5), "4W4C", 0.1, 0, device)
    with pytest.raises(ValueError, match="out.buffer holds 16 bytes"):
        addop.passes([a, a], tiny)
    with pytest.raises(TypeError, match="must both be QTensors or both numpy"):
        addop(a, x)


# (kernel_size, stride, padding, dilation, ceil_mode) that torch refuses or takes, on 5 x 5
TORCH_RULES = [
    (3, 1, 2, 1, False),
    (4, 1, 2, 1, False),
    (5, 1, 2, 3, False),
    (3, 3, 1, 1, True),
    (6, 1, 0, 1, True),
]


@pytest.mark.parametrize("cfg", TORCH_RULES, ids=str)
def test_pool_argument_rules_agree_with_torch(cfg):
    k, s, p, d, cm = cfg
    F = _t_F()
    xf = _t_dequant(np.zeros((1, 2, 5, 5), np.int8), 0.1, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            want = tuple(F.max_pool2d(xf, k, s, p, d, cm).shape)
        except RuntimeError:
            want = None
    try:
        got = ops.QMaxPool2d(k, s, p, d, cm).output_shape((1, 2, 5, 5))
    except ValueError:
        got = None
    assert got == want


# ---- bigger shapes (ResNet's stem pool and head) ------------------------------------------------
@pytest.mark.slow
def test_resnet_sized_pools(device):
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, (2, 64, 56, 56), dtype=np.int8)
    assert_within_1lsb(
        ops.max_pool2d(x, 3, 2, 1, device=device), ref.max_pool2d(x, 3, 2, 1), "maxpool 56x56", exact=True
    )
    h = rng.integers(-128, 128, (2, 512, 7, 7), dtype=np.int8)
    q = dict(input_scale=0.05, input_zero_point=-20, output_scale=0.01, output_zero_point=3)
    assert_within_1lsb(
        ops.adaptive_avg_pool2d(h, 1, **q, device=device),
        ref.adaptive_avg_pool2d(h, 1, **q),
        "global avg 7x7",
    )


@pytest.mark.parametrize("activation", ["relu", "relu6"])
@pytest.mark.parametrize("zps", [(-128, -128), (5, -20), (0, 127)])
def test_requantize_with_activation_matches_torch(device, zps, activation):
    """A relu / relu6 on a dequantized tensor, quantized again (what a quantizer that does not
    fuse the activation into its producer leaves): a 1x1 average pool with the activation's
    bounds as a clamp of the quantized output, against the float64 evaluation (exact) and
    torch's float32 path (within 1 LSB: float32 rounds the near-ties its own way)."""
    rng = np.random.default_rng(_seed("requant", zps, activation))
    x = rng.integers(-128, 128, (2, 9, 5, 6), dtype=np.int8)
    q = dict(input_scale=0.07, input_zero_point=zps[0], output_scale=0.1, output_zero_point=zps[1])
    want = ref.avg_pool2d(x, 1, **q, activation=activation)
    got = ops.QAvgPool2d(1, **q, activation=activation, device=device)(x)
    assert_within_1lsb(got, want, f"requantize {zps} {activation}: GPU vs reference", exact=True)
    y = _t_dequant(x, q["input_scale"], zps[0])
    y = _t_F().relu(y) if activation == "relu" else _t_F().hardtanh(y, 0.0, 6.0)
    torch_q = _t_quant(y, q["output_scale"], zps[1])
    assert_within_1lsb(got, torch_q, f"requantize {zps} {activation}: GPU vs torch")
    y64 = (x.astype(np.float64) - zps[0]) * float(np.float32(q["input_scale"]))
    y64 = np.clip(y64, 0.0, 6.0 if activation == "relu6" else np.inf)
    want64 = np.clip(np.rint(y64 / float(np.float32(q["output_scale"]))) + zps[1], -128, 127).astype(np.int8)
    assert_within_1lsb(got, want64, f"requantize {zps} {activation}: GPU vs float64", exact=True)
    if zps[1] < 0 and activation == "relu6":  # 6 is inside the output's range: the clamp is used
        assert (want == 60 + zps[1]).any()
