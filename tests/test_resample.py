"""The index maps and the transposed conv (q8ta_wgpu/resample.py): nearest upsampling, pixel
(un)shuffle and conv_transpose2d on the GPU exactly equal to the numpy references
(q8ta_wgpu.reference.upsample_nearest2d, .pixel_shuffle, .conv_transpose2d: a direct int32
scatter) on odd channel counts, batches > 1, every layout; the references against PyTorch's
float path (dequantize_per_tensor, the torch op, quantize_per_tensor): the index maps exactly,
the transposed conv within 1 LSB; PT2E nets (Q8taQuantizer) and torch.ao eager models through
q8.from_torch; and the argument checks."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import q8ta_wgpu as q8
from q8ta_wgpu import reference as ref
from q8ta_wgpu import resample as rs
from q8ta_wgpu.layouts import LAYOUTS

from .helpers import assert_within_1lsb, garbage_out, pt2e_int8

torch = pytest.importorskip("torch")
F = torch.nn.functional
nn = torch.nn
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning)

SAME = dict(input_scale=0.02, input_zero_point=-5, output_scale=0.02, output_zero_point=-5)
OWN = dict(input_scale=0.031, input_zero_point=7, output_scale=0.017, output_zero_point=-100)


def _seed(*parts: Any) -> int:
    return sum((i + 1) * ord(ch) for i, ch in enumerate(repr(parts))) % 2**32  # stable across runs


def _x(shape: tuple[int, ...], *parts: Any) -> np.ndarray:
    return np.random.default_rng(_seed(shape, *parts)).integers(-128, 128, shape, dtype=np.int8)


def _torch_path(x: np.ndarray, quant: dict[str, Any], fn: Any, activation: str = "none") -> np.ndarray:
    """PyTorch's Q/DQ graph of a float op: dequantize_per_tensor, fn, the activation,
    quantize_per_tensor (computed by torch alone)."""
    qd = torch.ops.quantized_decomposed
    xf = qd.dequantize_per_tensor(
        torch.from_numpy(x), quant["input_scale"], quant["input_zero_point"], -128, 127, torch.int8
    )
    y = fn(xf)
    y = {"none": y, "relu": torch.relu(y), "relu6": F.relu6(y)}[activation]
    return qd.quantize_per_tensor(
        y, quant["output_scale"], quant["output_zero_point"], -128, 127, torch.int8
    ).numpy()


# ---- nearest upsampling -----------------------------------------------------------------------
# (size, scale_factor, recompute_scale_factor): integer, non-integer, below-1 and mixed ratios.
RESIZES = [
    (None, 2, None), (None, (1, 3), None), ((11, 20), None, None), ((5, 7), None, None), (None, 1.7, None),
    (None, (0.6, 2.5), None), (None, 1.37, True), ((3, 4), None, None), (None, (2.05, 1.0), None),
]  # fmt: skip
UP_SHAPES = [(2, 5, 5, 7), (1, 3, 4, 9), (3, 9, 2, 3)]


@pytest.mark.parametrize("quant", [SAME, OWN], ids=["same_qparams", "own_qparams"])
@pytest.mark.parametrize("resize", RESIZES, ids=str)
@pytest.mark.parametrize("shape", UP_SHAPES, ids=str)
def test_upsample_gpu_equals_reference_and_torch(device, shape, resize, quant):
    size, scale_factor, recompute = resize
    x = _x(shape, "up", resize)
    want = ref.upsample_nearest2d(x, size, scale_factor, recompute, **quant)
    op = rs.QUpsampleNearest2d(size, scale_factor, recompute, device=device, **quant)
    assert op.copy == (quant is SAME)
    got = op(x)
    assert got.shape == op.output_shape(shape)
    assert_within_1lsb(got, want, f"upsample {shape} {resize}: GPU vs reference", exact=True)
    fn = lambda t: F.interpolate(t, size, scale_factor, mode="nearest", recompute_scale_factor=recompute)  # noqa: E731
    assert_within_1lsb(
        want, _torch_path(x, quant, fn), f"upsample {shape} {resize}: reference vs torch", exact=True
    )


def test_nearest_indices_equal_torch():
    """torch's source indices on a grid of sizes and scale factors (non-integer ratios, downscales,
    the 2x and same-size special cases): the upsampled arange equals reference.nearest_indices."""
    rng = np.random.default_rng(5)
    cases = [(i, o, None) for i in range(1, 24) for o in range(1, 50)]
    cases += [(int(rng.integers(1, 60)), None, float(np.float32(rng.uniform(0.2, 5)))) for _ in range(400)]
    cases += [(i, None, s) for i in (3, 7, 10, 13) for s in (2.0, 2.05, 1.999, 0.5, 1.0, 3.3333333)]
    for size_in, size_out, sf in cases:
        t = torch.arange(size_in, dtype=torch.float32).reshape(1, 1, 1, size_in)
        if sf is not None and int(np.floor(size_in * sf)) < 1:
            continue
        y = F.interpolate(t, size=None if size_out is None else (1, size_out), scale_factor=None if sf is None else (1.0, sf),
                          mode="nearest")  # fmt: skip
        r = ref.NearestResize(None if size_out is None else (1, size_out), None if sf is None else (1.0, sf))
        _, ow = r.output_hw(1, size_in)
        mine = ref.nearest_indices(size_in, ow, r.scales(1, size_in)[1])
        np.testing.assert_array_equal(
            mine, y.reshape(-1).numpy().astype(np.int64), err_msg=str((size_in, size_out, sf))
        )


@pytest.mark.parametrize("activation", ["relu", "relu6"])
def test_upsample_fused_activation(device, activation):
    x = _x((2, 6, 3, 5), "act", activation)
    quant = dict(input_scale=0.05, input_zero_point=20, output_scale=0.03, output_zero_point=-128)
    got = rs.QUpsampleNearest2d(scale_factor=2.5, activation=activation, device=device, **quant)(x)
    want = ref.upsample_nearest2d(x, scale_factor=2.5, activation=activation, **quant)
    assert_within_1lsb(got, want, f"upsample {activation}: GPU vs reference", exact=True)
    fn = lambda t: F.interpolate(t, scale_factor=2.5, mode="nearest")  # noqa: E731
    assert_within_1lsb(
        want, _torch_path(x, quant, fn, activation), f"upsample {activation}: vs torch", exact=True
    )


# ---- pixel shuffle ----------------------------------------------------------------------------
# (shape, r, unshuffle): odd channel counts in or out, batch > 1, r = 1.
SHUFFLES = [
    ((2, 9, 3, 5), 3, False), ((1, 20, 2, 3), 2, False), ((3, 4, 5, 1), 1, False), ((2, 18, 4, 3), 3, False),
    ((2, 5, 4, 6), 2, True), ((1, 3, 6, 9), 3, True), ((3, 7, 2, 2), 2, True), ((1, 1, 4, 8), 4, True),
]  # fmt: skip


@pytest.mark.parametrize("quant", [SAME, OWN], ids=["same_qparams", "own_qparams"])
@pytest.mark.parametrize("case", SHUFFLES, ids=str)
def test_pixel_shuffle_gpu_equals_reference_and_torch(device, case, quant):
    shape, r, unshuffle = case
    x = _x(shape, "ps", r, unshuffle)
    want = ref.pixel_shuffle(x, r, unshuffle=unshuffle, **quant)
    got = rs.QPixelShuffle(r, unshuffle=unshuffle, device=device, **quant)(x)
    assert_within_1lsb(got, want, f"pixel_shuffle {case}: GPU vs reference", exact=True)
    fn = (lambda t: F.pixel_unshuffle(t, r)) if unshuffle else (lambda t: F.pixel_shuffle(t, r))
    assert_within_1lsb(
        want, _torch_path(x, quant, fn), f"pixel_shuffle {case}: reference vs torch", exact=True
    )


@pytest.mark.parametrize("out_layout", LAYOUTS)
@pytest.mark.parametrize("in_layout", LAYOUTS)
def test_index_maps_layouts_and_padding_slots(device, in_layout, out_layout):
    """Every layout in and out, into garbage, both index maps chained in one submit: the words
    equal the host pack of the references (padding slots: the output zero point)."""
    x = _x((2, 9, 3, 5), "layouts")
    up = rs.QUpsampleNearest2d(scale_factor=(1.5, 0.8), device=device, **OWN)
    ps = rs.QPixelShuffle(3, device=device, input_scale=OWN["output_scale"], input_zero_point=-100,
                          output_scale=0.01, output_zero_point=9)  # fmt: skip
    xt = q8.QTensor.from_numpy(x, OWN["input_scale"], OWN["input_zero_point"], in_layout, device)
    mid = garbage_out(device, up.output_shape(x.shape), out_layout, OWN["output_scale"], -100)
    out = garbage_out(device, ps.output_shape(mid.shape), out_layout, 0.01, 9)
    with q8.recording():
        device.run(up.passes([xt], mid) + ps.passes([mid], out))
    want_up = ref.upsample_nearest2d(x, scale_factor=(1.5, 0.8), **OWN)
    assert mid.words().tobytes() == q8.pack(want_up, out_layout, -100).tobytes()
    want = ref.pixel_shuffle(want_up, 3, input_scale=OWN["output_scale"], input_zero_point=-100, output_scale=0.01,
                             output_zero_point=9)  # fmt: skip
    assert out.words().tobytes() == q8.pack(want, out_layout, 9).tobytes()


# ---- the transposed conv ----------------------------------------------------------------------
# (id, N, C_in, C_out, H, W, kernel, stride, padding, output_padding, dilation, groups)
CT_CASES = [
    ("k3_s2_p1_op1", 2, 8, 6, 5, 7, 3, 2, 1, 1, 1, 1),
    ("k2_s2", 1, 4, 4, 6, 6, 2, 2, 0, 0, 1, 1),
    ("odd_c_k3_s1", 3, 5, 7, 4, 6, 3, 1, 0, 0, 1, 1),
    ("k4_s2_p1_groups2", 2, 6, 10, 5, 5, 4, 2, 1, 0, 1, 2),
    ("dilation2_op1", 1, 3, 5, 5, 4, 3, 1, 1, 1, 2, 1),
    ("rect_k_s_p", 2, 7, 3, 4, 5, (3, 2), (2, 3), (1, 0), (1, 2), 1, 1),
    ("pad_over_kernel", 1, 4, 4, 7, 7, 3, 3, 3, 0, 1, 1),  # the border crops: padding > KH - 1
    ("depthwise_s2", 2, 6, 6, 5, 6, 3, 2, 1, 1, 1, 6),
    ("groups3_odd", 1, 9, 3, 3, 4, 3, 2, 0, 1, 1, 3),
    ("c1_k5_s3_d2", 2, 1, 2, 3, 3, 5, 3, 2, 2, 2, 1),
]


def _ct_data(case: tuple, with_bias: bool) -> dict[str, Any]:
    cid, n, c_in, c_out, h, w, k, s, p, op, d, g = case
    rng = np.random.default_rng(_seed("ct", cid))
    kh, kw = k if isinstance(k, tuple) else (k, k)
    x = rng.integers(-128, 128, (n, c_in, h, w), dtype=np.int8)
    weight = rng.integers(-127, 128, (c_in, c_out // g, kh, kw), dtype=np.int8)
    w_scales = rng.uniform(0.002, 0.006, c_out).astype(np.float32)
    bias = rng.uniform(-1, 1, c_out).astype(np.float32) if with_bias else None
    opts = dict(stride=s, padding=p, output_padding=op, dilation=d, groups=g)
    return dict(x=x, weight=weight, w_scales=w_scales, bias=bias, opts=opts)


def _torch_conv_transpose(d: dict[str, Any], quant: dict[str, Any], activation: str) -> np.ndarray:
    """PyTorch's PT2E float path: dequantized input and weights (w * scale of its output
    channel), F.conv_transpose2d, bias, activation, quantize_per_tensor."""
    weight, o = d["weight"], d["opts"]
    c_in, cop, kh, kw = weight.shape
    g = o["groups"]
    scales = d["w_scales"].reshape(g, 1, cop, 1, 1)  # output channel j*cop + o of group j
    w_real = torch.from_numpy((weight.reshape(g, c_in // g, cop, kh, kw) * scales).reshape(weight.shape))
    bias = None if d["bias"] is None else torch.from_numpy(d["bias"])

    def fn(t: Any) -> Any:
        return F.conv_transpose2d(t, w_real.float(), bias, o["stride"], o["padding"], o["output_padding"], g,
                                  o["dilation"])  # fmt: skip

    return _torch_path(d["x"], quant, fn, activation)


@pytest.mark.parametrize("activation", ["none", "relu"])
@pytest.mark.parametrize("case", CT_CASES, ids=lambda c: c[0])
def test_conv_transpose_gpu_equals_reference_within_1lsb_of_torch(device, case, activation):
    d = _ct_data(case, with_bias=activation == "relu")
    quant = dict(input_scale=0.03, input_zero_point=6, output_scale=0.04, output_zero_point=-3)
    want = ref.conv_transpose2d(d["x"], d["weight"], d["w_scales"], d["bias"], input_scale=0.03, input_zero_point=6,
                                output_scale=0.04, output_zero_point=-3, activation=activation, **d["opts"])  # fmt: skip
    op = rs.QConvTranspose2d(d["weight"], d["w_scales"], d["bias"], input_scale=0.03, input_zero_point=6,
                             output_scale=0.04, output_zero_point=-3, activation=activation, device=device,
                             **d["opts"])  # fmt: skip
    got = op(d["x"])
    assert got.shape == tuple(op.output_shape(d["x"].shape)) == want.shape
    assert_within_1lsb(got, want, f"conv_transpose2d {case[0]} {activation}: GPU vs reference", exact=True)
    torch_q = _torch_conv_transpose(d, quant, activation)
    assert torch_q.shape == want.shape
    assert_within_1lsb(want, torch_q, f"conv_transpose2d {case[0]} {activation}: reference vs torch")


def test_conv_transpose_qtensor_chain_layouts_and_functional(device):
    """QTensor in (4C1W) -> QTensor out in output_layout "4C", recorded with an upsample after it;
    the functional wrappers with a QTensor's own quantization."""
    d = _ct_data(CT_CASES[0], with_bias=True)
    op = rs.QConvTranspose2d(d["weight"], d["w_scales"], d["bias"], input_scale=0.03, input_zero_point=6,
                             output_scale=0.04, output_zero_point=-3, output_layout="4C", device=device,
                             **d["opts"])  # fmt: skip
    want = ref.conv_transpose2d(d["x"], d["weight"], d["w_scales"], d["bias"], input_scale=0.03, input_zero_point=6,
                                output_scale=0.04, output_zero_point=-3, **d["opts"])  # fmt: skip
    xt = q8.QTensor.from_numpy(d["x"], 0.03, 6, "4C1W", device)
    with q8.recording():
        y = op(xt)
        z = rs.upsample_nearest(y, scale_factor=2)
    assert y.layout == "4C" and (y.scale, y.zero_point) == (np.float32(0.04), -3)
    np.testing.assert_array_equal(y.numpy(), want)
    np.testing.assert_array_equal(z.numpy(), want.repeat(2, 2).repeat(2, 3))
    f = rs.conv_transpose2d(xt, d["weight"], d["w_scales"], d["bias"], output_scale=0.04, output_zero_point=-3,
                            **d["opts"])  # fmt: skip
    np.testing.assert_array_equal(f.numpy(), want)
    ps = rs.pixel_shuffle(d["x"], 2, input_scale=0.03, input_zero_point=6)  # the output's: the input's
    same = dict(input_scale=0.03, input_zero_point=6, output_scale=0.03, output_zero_point=6)
    np.testing.assert_array_equal(ps, ref.pixel_shuffle(d["x"], 2, **same))
    assert {"QConvTranspose2d", "QPixelShuffle", "QUpsampleNearest2d"} <= set(q8.__all__)
    assert "QConvTranspose2d(8, 6, kernel=(3, 3), stride=(2, 2)" in repr(op)


def test_bad_arguments_name_the_argument(device):
    with pytest.raises(ValueError, match="either size or scale_factor must be given"):
        rs.QUpsampleNearest2d(device=device, **SAME)
    with pytest.raises(ValueError, match=r"scale_factor must be finite and > 0, got -2"):
        rs.QUpsampleNearest2d(scale_factor=-2, device=device, **SAME)
    with pytest.raises(TypeError, match="scale_factor must be a real number"):
        ref.upsample_nearest2d(np.zeros((1, 1, 2, 2), np.int8), scale_factor="2", **SAME)
    with pytest.raises(ValueError, match="size must be >= 1"):
        rs.QUpsampleNearest2d((0, 3), device=device, **SAME)
    with pytest.raises(ValueError, match="recompute_scale_factor=True needs scale_factor and no size"):
        rs.QUpsampleNearest2d((2, 3), recompute_scale_factor=True, device=device, **SAME)
    with pytest.raises(ValueError, match="only one of size or scale_factor"):
        rs.upsample_nearest(np.zeros((1, 1, 2, 2), np.int8), 4, 2.0, input_scale=0.1, input_zero_point=0)
    with pytest.raises(ValueError, match=r"the upsampled H must be in \[1, 2\*\*24\), got 0"):
        rs.QUpsampleNearest2d(scale_factor=0.3, device=device, **SAME).output_shape((1, 1, 3, 3))
    with pytest.raises(TypeError, match="input_scale and input_zero_point are required for a numpy input"):
        rs.upsample_nearest(np.zeros((1, 1, 2, 2), np.int8), scale_factor=2)
    with pytest.raises(
        TypeError, match=r"QUpsampleNearest2d\.__init__\(\) got an unexpected keyword argument 'zp'"
    ):
        rs.QUpsampleNearest2d(scale_factor=2, zp=3, device=device, **SAME)
    with pytest.raises(ValueError, match="activation must be one of"):
        rs.QPixelShuffle(2, activation="gelu", device=device, **SAME)
    with pytest.raises(ValueError, match="upscale_factor must be >= 1"):
        rs.QPixelShuffle(0, device=device, **SAME)
    with pytest.raises(TypeError, match="unshuffle must be a bool"):
        rs.QPixelShuffle(2, unshuffle=1, device=device, **SAME)
    with pytest.raises(
        ValueError, match=r"pixel_shuffle needs C divisible by upscale_factor\^2 = 4, got C = 6"
    ):
        rs.QPixelShuffle(2, device=device, **SAME)(np.zeros((1, 6, 2, 2), np.int8))
    with pytest.raises(
        ValueError, match="pixel_unshuffle needs H and W divisible by downscale_factor 2, got H = 3"
    ):
        ref.pixel_shuffle(np.zeros((1, 1, 3, 4), np.int8), 2, unshuffle=True, **SAME)
    xt = q8.QTensor.from_numpy(np.zeros((1, 4, 2, 2), np.int8), 0.5, 0, device=device)
    with pytest.raises(
        ValueError, match="x has scale 0.5 and zero point 0; this op expects input_scale 0.0199"
    ):
        rs.QPixelShuffle(2, device=device, **SAME)(xt)

    w, s = np.zeros((4, 3, 3, 3), np.int8), np.full(6, 0.01, np.float32)
    ct = dict(input_scale=0.1, input_zero_point=0, output_scale=0.1, output_zero_point=0, device=device)
    with pytest.raises(ValueError, match=r"output_padding must be smaller than stride or dilation"):
        rs.QConvTranspose2d(w, s, stride=2, output_padding=2, groups=2, **ct)
    with pytest.raises(
        ValueError, match=r"groups must be >= 1 and divide C_in = weight.shape\[0\] \(4\), got 3"
    ):
        rs.QConvTranspose2d(w, np.full(9, 0.01, np.float32), groups=3, **ct)
    with pytest.raises(TypeError, match="groups must be an int"):
        rs.QConvTranspose2d(w, s, groups=2.0, **ct)
    with pytest.raises(ValueError, match=r"weight_scales must have shape \(6,\)"):
        rs.QConvTranspose2d(w, np.full(3, 0.01, np.float32), groups=2, **ct)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        rs.QConvTranspose2d(w, s, stride=0, groups=2, **ct)
    with pytest.raises(TypeError, match="weight must have dtype int8"):
        rs.QConvTranspose2d(w.astype(np.int16), s, groups=2, **ct)
    with pytest.raises(TypeError, match=r"missing 1 required keyword-only argument: 'output_zero_point'"):
        ref.conv_transpose2d(np.zeros((1, 4, 2, 2), np.int8), w, s, input_scale=0.1, input_zero_point=0,
                             output_scale=0.1, groups=2)  # fmt: skip
    op = rs.QConvTranspose2d(w, s, groups=2, padding=3, **ct)
    with pytest.raises(
        ValueError, match=r"x has 5 channels; the weight \[C_in, C_out/groups, KH, KW\] takes C_in = 4"
    ):
        op.output_shape((1, 5, 4, 4))
    with pytest.raises(ValueError, match=r"gives an output size of -2 < 1: padding \(3, 3\) is too large"):
        op(np.zeros((1, 4, 2, 2), np.int8))
    with pytest.raises(ValueError, match="output_layout must be one of"):
        rs.QConvTranspose2d(w, s, groups=2, output_layout="NCHW", **ct)


def test_conv_transpose_scratch_too_big_is_refused(device):
    """A scratch over max-buffer-size (or one binding) is refused, naming it, before any GPU work."""
    op = rs.QConvTranspose2d(np.ones((4, 4, 3, 3), np.int8), np.full(4, 0.01, np.float32), input_scale=0.1,
                             input_zero_point=0, output_scale=0.1, output_zero_point=0, stride=40000,
                             device=device)  # fmt: skip
    xt = q8.QTensor.from_numpy(np.zeros((1, 4, 3, 3), np.int8), 0.1, 0, device=device)
    shape = op.output_shape(xt.shape)
    out = q8.QTensor(device.buffer(16), shape, "4W4C", 0.1, 0, device)  # never written: refused first
    with pytest.raises(
        ValueError, match=r"conv_transpose2d's zero-inserted input \[1, 4, 80005, 80005\] needs"
    ):
        op.passes([xt], out)


# ---- networks: PT2E (Q8taQuantizer, XNNPACK's quantizer) and torch.ao eager -------------------
pytest.importorskip("torchao")


class TinyUNet(nn.Module):
    """Encoder-decoder: convs down (stride 2), a transposed conv up (stride 2, output_padding,
    with relu), nearest upsampling by a non-integer factor, a cat with a skip, pixel shuffle and
    unshuffle, a grouped dilated transposed conv, a 1x1 conv head."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, 1, 1), nn.Conv2d(8, 12, 3, 2, 1)
        self.up = nn.ConvTranspose2d(12, 8, 3, stride=2, padding=1, output_padding=1)
        self.mix = nn.Conv2d(16, 12, 1)
        self.t2 = nn.ConvTranspose2d(12, 6, (3, 2), stride=(1, 2), dilation=(2, 1), groups=3)
        self.head = nn.Conv2d(6, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.c1(x))
        b = torch.relu(self.c2(a))
        u = torch.relu(self.up(b))
        y = self.mix(torch.cat([u, a], 1))
        y = F.pixel_unshuffle(F.pixel_shuffle(F.interpolate(y, scale_factor=1.5), 2), 2)
        return self.head(self.t2(y))


def _run_compare(m: Any, x: np.ndarray, what: str, *, exact: bool = False) -> q8.Net:
    net = q8.from_torch(m)
    got = net.run_int8(x)
    with torch.no_grad():
        y = m(torch.from_numpy(x)).numpy()
    want = ref.quantize_per_tensor(y, net.output_scale, net.output_zero_point)
    assert_within_1lsb(got.reshape(want.shape), want, what, exact=exact)
    return net


def test_pt2e_unet_within_1lsb_of_pytorch(device):
    m = pt2e_int8(TinyUNet(seed=4), q8.Q8taQuantizer(), torch.randn(1, 3, 16, 16))
    x = np.random.default_rng(3).standard_normal((4, 3, 16, 16)).astype(np.float32)
    net = _run_compare(m, x, "net/unet/q8ta")
    kinds = [s.kind for s in net.steps]
    assert kinds.count("conv_transpose2d") == 2 and kinds.count("pixel_shuffle") == 2, kinds
    assert all(
        s.detail.endswith("copy") for s in net.steps if s.kind in ("upsample_nearest2d", "pixel_shuffle")
    )
    # Q8taQuantizer's transposed-conv weights: per channel along axis 1 (torch's output channels).
    dq = [n for n in m.graph.nodes if "dequantize_per_channel" in str(n.target)]
    assert sorted(int(n.args[3]) for n in dq) == [0, 0, 0, 0, 1, 1]


class IndexOnly(nn.Module):
    """Only index maps: Q8taQuantizer quantizes the input before the first and shares its
    parameters through all of them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.interpolate(F.interpolate(F.pixel_shuffle(x, 2), size=(13, 9)), size=(12, 8))
        return F.interpolate(F.pixel_unshuffle(y, 2), scale_factor=(1.7, 2.0))


def test_pt2e_index_maps_only_are_exact(device):
    """The input's quantize, then index maps only (copies on the GPU): every element equal to
    PyTorch's."""
    m = pt2e_int8(IndexOnly(), q8.Q8taQuantizer(), torch.randn(1, 8, 6, 5))
    x = np.random.default_rng(4).standard_normal((3, 8, 6, 5)).astype(np.float32)
    net = _run_compare(m, x, "net/index-maps/q8ta", exact=True)
    assert [s.kind for s in net.steps] == ["pixel_shuffle", *["upsample_nearest2d"] * 2, "pixel_shuffle",
                                           "upsample_nearest2d"]  # fmt: skip
    assert all(s.detail.endswith("copy") for s in net.steps)


def test_pt2e_aten_default_upsample_and_xnnpack(device):
    """upsample_nearest2d.default (a decomposed graph: output_size with the scales) runs; under
    XNNPACK's quantizer the index maps stay float between a dequantize and the next quantize (each
    made a step with that quantize's parameters), and a transposed conv whose weights it quantized
    per input channel (axis 0) is refused naming the axis."""
    from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(1)
            self.c, self.d = nn.Conv2d(3, 8, 3), nn.Conv2d(2, 4, 1)

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.d(F.pixel_shuffle(F.interpolate(torch.relu(self.c(t)), scale_factor=1.5), 2))

    xnn = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    x = np.random.default_rng(6).standard_normal((2, 3, 10, 10)).astype(np.float32)
    net = _run_compare(pt2e_int8(M(), xnn, torch.randn(1, 3, 10, 10)), x, "net/index-maps/xnnpack")
    assert {"upsample_nearest2d", "pixel_shuffle"} <= {s.kind for s in net.steps}

    class D(M):  # aten.upsample_nearest2d.default: an output size and the scales (decomposed graphs)
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            y = torch.ops.aten.upsample_nearest2d.default(torch.relu(self.c(t)), [12, 11], 1.5, 1.4)
            return self.d(F.pixel_shuffle(y, 2))

    m = pt2e_int8(D(), q8.Q8taQuantizer(), torch.randn(1, 3, 10, 10))
    assert any(n.target == torch.ops.aten.upsample_nearest2d.default for n in m.graph.nodes)
    _run_compare(m, x[:2], "net/upsample.default/q8ta")

    class T(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c, self.t = nn.Conv2d(3, 8, 3), nn.ConvTranspose2d(8, 4, 3, 2)

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.t(self.c(t)))

    m = pt2e_int8(T(), xnn, torch.randn(1, 3, 10, 10))
    with pytest.raises(
        q8.UnsupportedError, match=r"conv_transpose2d.*per output channel \(axis 1 .*got axis 0"
    ):
        q8.from_torch(m)


class EagerUNet(nn.Module):
    """torch.ao eager: QuantStub, conv, nn.Upsample, F.interpolate, nn.PixelShuffle /
    PixelUnshuffle, a quantized ConvTranspose2d (per-tensor weights: torch.ao's eager flow takes
    no per-channel observer for transposed convs), DeQuantStub."""

    def __init__(self) -> None:
        super().__init__()
        from torch.ao.quantization import DeQuantStub, QuantStub

        torch.manual_seed(5)
        self.q, self.dq = QuantStub(), DeQuantStub()
        self.c = nn.Conv2d(3, 8, 3, 2, 1)
        self.up, self.ps, self.pu = nn.Upsample(scale_factor=2), nn.PixelShuffle(2), nn.PixelUnshuffle(2)
        self.t = nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pu(self.ps(F.interpolate(self.up(self.c(self.q(x))), scale_factor=0.75)))
        return self.dq(self.t(y))


def test_eager_index_maps_and_conv_transpose_match_pytorch(device):
    from torch.ao.quantization import QConfig, convert, default_weight_observer, get_default_qconfig, prepare

    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = "x86"
    try:
        m = EagerUNet().eval()
        m.qconfig = get_default_qconfig("x86")
        m.t.qconfig = QConfig(activation=m.qconfig.activation, weight=default_weight_observer)
        prepare(m, inplace=True)
        gen = torch.Generator().manual_seed(0)
        for _ in range(4):
            m(torch.randn(4, 3, 12, 12, generator=gen))
        convert(m, inplace=True)
        x = np.random.default_rng(8).standard_normal((3, 3, 12, 12)).astype(np.float32)
        net = _run_compare(m, x, "net/eager/unet")
    finally:
        torch.backends.quantized.engine = old
    kinds = [s.kind for s in net.steps]
    assert kinds.count("upsample_nearest2d") == 2 and "conv_transpose2d" in kinds, kinds
