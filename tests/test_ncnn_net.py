"""bench/peers/ncnn_net.py, the whole-network peer: q8ta_wgpu's tiny ResNet and MobileNetV2 (PT2E with
Q8taQuantizer, as the demo quantizes them) written as ncnn int8 models and run by ncnn.

- On ncnn's CPU path (fp32 between layers) the output equals, to float rounding, a float64 numpy
  emulation of the int8 scheme the model asks of ncnn (each int8 layer's input quantized
  symmetrically with its bottom scale, round half away from zero, clamped to [-127, 127]; int32
  sums dequantized with bottom and weight scales; everything else in float): the conversion
  (layout of weights and scales, params, splits, activations) is what was meant.
- On Vulkan (lavapipe here; fp16 storage and arithmetic between layers, as ncnn runs on a GPU)
  the output agrees with PyTorch's int8 graph as closely as int8 itself allows: ncnn's int8 is
  symmetric where the graph's is asymmetric (a ReLU output's step is about twice the graph's) and
  it neither rounds nor clamps between its float layers, so it is no bit-exact peer. Its float
  output is put on the graph's output grid first (`on_output_grid`: the int8 graph's last quantize
  saturates logits beyond its calibrated range, which ncnn's float InnerProduct does not). The
  bound: its relative error against PyTorch's int8 output is at most 2.5x that of the float model
  (put on the same grid) against PyTorch's int8 output, i.e. ncnn's int8 is off PyTorch's by no
  more than a small multiple of what int8 quantization itself costs (measured 1.2x - 1.8x over
  256 inputs, here and with bench/networks.py's quantization), and under 15%; top-1 agrees on at
  least 75% of the inputs (measured 95 - 100%: these random nets' top-1 margins are small, and
  PyTorch's own int8 graph agrees with its float model on 96 - 100%).

ncnn is an optional bench dependency: without it this module is skipped; with ncnn but no Vulkan
GPU the Vulkan tests fail (as tests/test_ncnn_peer.py's do).
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import q8ta_wgpu as q8
from q8ta_wgpu.net import ConvOp

torch = pytest.importorskip("torch")
pytest.importorskip("torchao")
pytest.importorskip("ncnn")
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning)

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.peers import ncnn_int8, ncnn_net  # noqa: E402

MODELS = ("tiny_resnet", "tiny_mobilenet_v2")
HW, INPUTS = 32, 16

# The tests on models are slow (~25 s in all on lavapipe: PT2E exports, ncnn's Vulkan shader builds).


def _quantized(name: str):
    """The model quantized as `python -m q8ta_wgpu demo --model` does: PT2E with Q8taQuantizer,
    calibrated on two random batches."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    model = q8.models.build(name, seed=0)
    gen = torch.Generator().manual_seed(0)
    calib = [torch.randn(2, 3, HW, HW, generator=gen) for _ in range(2)]
    m = torch.export.export(model, (calib[0],), dynamic_shapes=({0: torch.export.Dim.AUTO},)).module()
    m = prepare_pt2e(m, q8.Q8taQuantizer())
    for c in calib:
        m(c)
    return model, convert_pt2e(m)


@pytest.fixture(scope="module")
def nets(device):
    out = {}
    x = np.random.default_rng(1).standard_normal((INPUTS, 3, HW, HW)).astype(np.float32)
    for name in MODELS:
        fmodel, qmodel = _quantized(name)
        with torch.no_grad():
            y_int8 = qmodel(torch.from_numpy(x)).numpy()
            y_float = fmodel(torch.from_numpy(x)).numpy()
        out[name] = (q8.from_torch(qmodel, device=device), x, y_int8, y_float)
    return out


@pytest.fixture(scope="module")
def vulkan():
    if ncnn_int8.ncnn_info() is None:
        pytest.fail(
            "ncnn imports but sees no Vulkan GPU: install a Vulkan driver (on Linux without a GPU, "
            "Mesa's lavapipe: apt-get install mesa-vulkan-drivers libvulkan1; setup.sh does)",
            pytrace=False,
        )


# ---- an independent emulation of what the ncnn model asks for ---------------------------------
def _round_away(v: np.ndarray) -> np.ndarray:
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def _act(y, activation: str):
    if activation == "relu":
        return torch.clamp(y, min=0)
    if activation == "relu6":
        return torch.clamp(y, 0, 6)
    return y


def emulate(net: q8.Net, x: np.ndarray) -> np.ndarray:
    """The net as ncnn's int8 scheme computes it, in float64: int8 layers quantize their input with
    ncnn_scale (symmetric, round half away from zero, [-127, 127]), sum in integers, dequantize with
    the bottom scale and 1 / the weight scales (float32, as the model stores them), add the bias
    and apply the activation; adds, pools and flatten in float; requantize steps only their
    activation."""
    F = torch.nn.functional
    vals = {net.input_name: torch.from_numpy(x.astype(np.float64))}
    for s in net.graph_steps:
        ins = [vals[v] for v in s.inputs]
        act = getattr(s.op, "activation", "none")
        if isinstance(s.op, ConvOp):
            c = s.op.conv
            sb = np.float32(ncnn_net.ncnn_scale(c.input_scale, c.input_zero_point))
            sw = (1.0 / c.weight_scales.astype(np.float64)).astype(np.float32).astype(np.float64)
            q = torch.from_numpy(np.clip(_round_away(ins[0].numpy() * float(sb)), -127, 127))
            w = torch.from_numpy(c.weight.astype(np.float64))
            if s.kind == "linear":
                acc = q.reshape(len(q), -1) @ w.reshape(len(w), -1).T
                scale = torch.from_numpy(1.0 / (float(sb) * sw))
            else:
                acc = F.conv2d(q, w, None, c.stride, c.padding, c.dilation, c.groups)
                scale = torch.from_numpy(1.0 / (float(sb) * sw))[:, None, None]
            y = acc * scale
            if c.bias is not None:
                b = torch.from_numpy(c.bias.astype(np.float64))
                y = y + (b if s.kind == "linear" else b[:, None, None])
            vals[s.output] = _act(y, c.activation)
        elif s.kind == "add":
            vals[s.output] = _act(ins[0] + ins[1], act)
        elif s.kind == "requantize":  # an average of 1 (activation) or a table (function)
            vals[s.output] = _act(ins[0], getattr(s.op, "function", act))
        elif s.kind == "max_pool2d":
            vals[s.output] = F.max_pool2d(ins[0], s.op.kernel_size, s.op.stride, s.op.padding)
        elif s.kind == "adaptive_avg_pool2d":
            y = F.adaptive_avg_pool2d(ins[0], 1)
            vals[s.output] = _act(y.flatten(1) if s.rank == 2 else y, act)
        elif s.kind == "flatten":
            vals[s.output] = ins[0].flatten(1)
        else:
            raise AssertionError(f"emulate: no {s.kind}")
    return vals[net.output.output].numpy()


# ---- tests -------------------------------------------------------------------------------------
def test_ncnn_scale():
    assert ncnn_net.ncnn_scale(0.5, 0) == 2.0  # the net's grid where it covers the range
    assert ncnn_net.ncnn_scale(0.5, -1) == 2.0
    assert ncnn_net.ncnn_scale(0.5, -128) == pytest.approx(127 / (255 * 0.5))  # a ReLU's [0, 255 s]
    assert ncnn_net.ncnn_scale(0.5, 20) == pytest.approx(127 / (148 * 0.5))


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_model_layers(nets, name):
    net = nets[name][0]
    m = ncnn_net.convert(net, (1, 3, HW, HW))
    lines = m.param.splitlines()
    assert lines[0] == "7767517"
    n_layers, n_blobs = map(int, lines[1].split())
    body = [ln.split() for ln in lines[2:]]
    assert len(body) == n_layers
    tops = [t for ln in body for t in ln[4 + int(ln[2]) : 4 + int(ln[2]) + int(ln[3])]]
    assert len(tops) == len(set(tops)) == n_blobs
    bottoms = [b for ln in body for b in ln[4 : 4 + int(ln[2])]]
    assert len(bottoms) == len(set(bottoms)), "a blob read twice needs a Split"
    types = [ln[0] for ln in body]
    convs = sum(isinstance(s.op, ConvOp) and s.kind == "conv2d" for s in net.graph_steps)
    assert types.count("Convolution") + types.count("ConvolutionDepthWise") == convs
    assert types.count("InnerProduct") == sum(s.kind == "linear" for s in net.graph_steps)
    assert types.count("BinaryOp") == sum(s.kind == "add" for s in net.graph_steps)
    int8 = ("Convolution", "ConvolutionDepthWise", "InnerProduct")
    terms = [p for ln in body if ln[0] in int8 for p in ln if p.startswith("8=")]
    assert len(terms) == convs + types.count("InnerProduct")  # every conv and linear is int8
    assert any(t in ("8=101", "8=102") for t in terms)  # requantize fused somewhere
    assert all("-23330=" in ln[-1] for ln in body)  # shape hints everywhere
    assert m.output_shape == (10,) and not m.notes
    if name == "tiny_mobilenet_v2":
        assert "ConvolutionDepthWise" in types and any("9=3" in ln for ln in body)  # relu6 = clip


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_cpu_equals_emulation(nets, name):
    """ncnn's CPU path: with its packing layout off, the emulation to float32 rounding (requantize
    fused or not: the same int8 values either way in fp32); with ncnn's defaults within its x86
    packed depthwise conv's approximate reciprocal (_mm_rcp_ps, relative error up to 2**-11 on
    each dequantize, which can move a later quantization by one step)."""
    net, x, _, _ = nets[name]
    want = emulate(net, x)
    for requantize in (True, False):
        model = ncnn_net.convert(net, x.shape, requantize=requantize)
        got = ncnn_net.NcnnNet(model, vulkan=False, options={"use_packing_layout": False})(x)
        r = ncnn_net.compare(got, want)
        assert r["top1_agree"] == 1.0 and r["max_abs_rel"] < 1e-5, (requantize, r)
    r = ncnn_net.compare(ncnn_net.NcnnNet(model, vulkan=False)(x), want)
    assert r["top1_agree"] == 1.0 and r["max_abs_rel"] < 1e-2, r


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_vulkan_agrees_with_pytorch_int8(nets, vulkan, name):  # noqa: ARG001
    net, x, y_int8, y_float = nets[name]
    runner = ncnn_net.NcnnNet(ncnn_net.convert(net, x.shape), gpu_name=net.device.name)
    assert runner.options["use_vulkan_compute"] and runner.options["use_int8_inference"]
    assert runner.cpu_layers == [], f"layers ncnn runs on the CPU: {runner.cpu_layers}"
    got = runner(x)
    assert got.shape == (INPUTS, 10) and np.isfinite(got).all()
    grid = (net.output_scale, net.output_zero_point)  # ncnn's float output, as the graph ends
    r = ncnn_net.compare(ncnn_net.on_output_grid(got, *grid), y_int8)
    own = ncnn_net.compare(y_int8, ncnn_net.on_output_grid(y_float, *grid))  # what int8 itself costs
    assert r["top1_agree"] >= 0.75, (r, own)
    assert r["rel_err"] <= min(2.5 * own["rel_err"], 0.15), (r, own)
    # and close to its CPU path's scheme: fp16 between layers flips some int8 roundings
    e = ncnn_net.compare(got, emulate(net, x))
    assert e["rel_err"] < 0.05, e


@pytest.mark.slow
def test_ncnn_int8_bench_fields(nets, vulkan):  # noqa: ARG001
    net, x, _, _ = nets["tiny_mobilenet_v2"]
    r = ncnn_net.ncnn_int8(net, x[:2], repeats=3, warm_s=0.0)
    assert "ncnn_int8_error" not in r, r.get("ncnn_int8_error")
    assert r["ncnn_int8_s"] is None  # no GPU time: the Python API cannot time the GPU alone
    st = r["ncnn_int8_wall_stats"]
    assert st["min"] <= r["ncnn_int8_wall_s"] == st["median"] <= st["max"] and st["min"] > 0
    assert math.isfinite(r["ncnn_int8_floor_wall_s"]) and r["ncnn_int8_floor_wall_s"] > 0
    assert "upload" in r["ncnn_int8_includes"]
    assert r["ncnn_int8_vs_net"]["inputs"] == 2 and r["ncnn_int8_vs_net"]["rel_err"] < 0.15
    info = r["ncnn_int8_info"]
    assert info["gpu"] == net.device.name and info["cpu_layers"] == [] and info["int8_layers"] > 0


def test_ncnn_int8_failure_is_recorded():
    class Broken:
        device = None

        def shapes(self, shape):
            raise ValueError("no shapes here")

    r = ncnn_net.ncnn_int8(Broken(), np.zeros((1, 3, 8, 8), np.float32))
    assert r["ncnn_int8_wall_s"] is None and r["ncnn_int8_s"] is None
    assert "no shapes here" in r["ncnn_int8_error"]


# ---- the other ops the converter writes -------------------------------------------------------
class _Pools(torch.nn.Module):
    """relu6 convs, a grouped conv of 4 output channels per group (ncnn has one weight scale per
    group: its weights are requantized), average pooling without the padding in the count, ceil-mode
    max pooling, flatten, linear."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.a = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1), nn.ReLU6())
        self.g = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1, groups=4), nn.ReLU())
        self.b = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        F = torch.nn.functional
        y = F.avg_pool2d(self.g(self.a(x)), 3, 2, 1, count_include_pad=False)
        y = F.max_pool2d(self.b(y), 3, 2, 0, ceil_mode=True)  # 8 -> 4 (3 without ceil)
        return self.fc(torch.flatten(y, 1))


class _Functions(torch.nn.Module):
    """cat along channels and the elementwise functions: hardswish, sigmoid, tanh, hardsigmoid."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.a, self.b = nn.Conv2d(3, 8, 3, 1, 1), nn.Conv2d(3, 8, 3, 1, 1)
        self.c, self.d = nn.Conv2d(16, 8, 3, 2, 1), nn.Conv2d(16, 8, 3, 2, 1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        F = torch.nn.functional
        y = torch.cat([F.hardswish(self.a(x)), torch.sigmoid(self.b(x))], 1)
        y = torch.tanh(self.c(y)) + F.hardsigmoid(self.d(y))
        return self.fc(y.mean((2, 3)))


@pytest.mark.slow
@pytest.mark.parametrize("make", [_Pools, _Functions], ids=lambda m: m.__name__.strip("_"))
@pytest.mark.parametrize("use_vulkan", [False, True], ids=["cpu", "vulkan"])
def test_other_ops_agree(device, vulkan, make, use_vulkan):  # noqa: ARG001
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    torch.manual_seed(0)
    model = make().eval()
    gen = torch.Generator().manual_seed(0)
    calib = [torch.randn(4, 3, 16, 16, generator=gen) for _ in range(4)]
    m = torch.export.export(model, (calib[0],), dynamic_shapes=({0: torch.export.Dim.AUTO},)).module()
    m = prepare_pt2e(m, q8.Q8taQuantizer())
    for c in calib:
        m(c)
    m = convert_pt2e(m)
    try:
        net = q8.from_torch(m, device=device)
    except q8.UnsupportedError as e:  # an older q8ta_wgpu without cat / elementwise functions
        pytest.skip(f"q8ta_wgpu does not import it: {e}")
    x = torch.randn(32, 3, 16, 16, generator=gen).numpy()
    model_nc = ncnn_net.convert(net, x.shape)
    if make is _Pools:
        assert len(model_nc.notes) == 1 and "requantized to one scale per group" in model_nc.notes[0]
    runner = ncnn_net.NcnnNet(model_nc, vulkan=use_vulkan, gpu_name=net.device.name)
    assert runner.cpu_layers == []
    with torch.no_grad():
        y_int8 = m(torch.from_numpy(x)).numpy()
        y_float = model(torch.from_numpy(x)).numpy()
    grid = (net.output_scale, net.output_zero_point)
    r = ncnn_net.compare(ncnn_net.on_output_grid(runner(x), *grid), y_int8)
    own = ncnn_net.compare(y_int8, ncnn_net.on_output_grid(y_float, *grid))
    assert r["top1_agree"] >= 0.75, (r, own)
    assert r["rel_err"] <= min(2.5 * own["rel_err"], 0.15), (r, own)
