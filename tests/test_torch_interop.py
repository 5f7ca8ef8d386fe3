"""PyTorch interop (q8ta_wgpu.torch_interop): torch quantized conv modules become QConv2d that give
the same int8 outputs (at most 1 LSB, differing elements counted), and quantized torch tensors
round-trip through QTensor. Skipped only when torch is not installed.

torch's quantized engine is onednn where available: in our survey (tests/helpers.py) it is
within 1 LSB of the spec's math on every case; fbgemm is wrong on depthwise convs with padding.
Builds without onednn (e.g. ARM) fall back to x86, then qnnpack (also within 1 LSB, more often).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (optional dependency)")

import q8ta_wgpu as q8  # noqa: E402
from q8ta_wgpu import reference  # noqa: E402

from .helpers import assert_within_1lsb  # noqa: E402

nn = torch.nn
aq = torch.ao.quantization
nnq = torch.ao.nn.quantized
nniq = torch.ao.nn.intrinsic.quantized

ENGINE = next(
    (e for e in ("onednn", "x86", "qnnpack") if e in torch.backends.quantized.supported_engines), None
)


@pytest.fixture(autouse=True)
def _engine():
    if ENGINE is None:
        pytest.skip(f"no usable torch quantized engine in {torch.backends.quantized.supported_engines}")
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = ENGINE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's quantized tensors / eager quantization are deprecated
        yield
    torch.backends.quantized.engine = old


def _int8(t) -> np.ndarray:
    """A quantized torch tensor's stored values as int8 (quint8 shifted by -128)."""
    q = t.int_repr().numpy()
    return (q.astype(np.int16) - 128).astype(np.int8) if t.dtype == torch.quint8 else q


class Stack(nn.Module):
    """Conv2d -> ConvReLU2d (fused, stride 2) -> grouped Conv2d -> depthwise ConvReLU2d."""

    def __init__(self) -> None:
        super().__init__()
        self.quant = aq.QuantStub()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1, groups=4, bias=False)
        self.conv4 = nn.Conv2d(32, 32, 3, padding=2, dilation=2, groups=32)
        self.relu4 = nn.ReLU()
        self.dequant = aq.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.relu2(self.conv2(self.conv1(x)))
        x = self.relu4(self.conv4(self.conv3(x)))
        return self.dequant(x)


# Activations use reduce_range (7-bit, 0..127), torch's own remedy on x86: its int8 kernels without
# VNNI add u8*s8 pairs in int16 with saturation, so with full 8-bit activations torch's output is
# off by up to ~70 LSB on such CPUs (seen with ONEDNN_MAX_CPU_ISA=AVX2). q8ta_wgpu is exact either
# way; 7-bit activations keep torch exact too, so the comparison tests q8ta, not the CPU.


def _quantized_stack(qconfig) -> nn.Module:
    torch.manual_seed(0)
    m = Stack().eval()
    m = aq.fuse_modules(m, [["conv2", "relu2"], ["conv4", "relu4"]])
    m.qconfig = qconfig
    aq.prepare(m, inplace=True)
    with torch.no_grad():
        for _ in range(4):
            m(torch.randn(2, 3, 20, 18))
    aq.convert(m, inplace=True)
    return m


QCONFIGS = {
    "per_channel": lambda: aq.QConfig(
        activation=aq.HistogramObserver.with_args(dtype=torch.quint8, reduce_range=True),
        weight=aq.default_per_channel_weight_observer,
    ),
    "per_tensor": lambda: aq.QConfig(
        activation=aq.MinMaxObserver.with_args(dtype=torch.quint8, reduce_range=True),
        weight=aq.default_weight_observer,
    ),
}


@pytest.mark.parametrize("scheme", sorted(QCONFIGS))
def test_stack_matches_torch(device, scheme: str) -> None:
    m = _quantized_stack(QCONFIGS[scheme]())
    assert isinstance(m.conv2, nniq.ConvReLU2d) and type(m.conv1) is nnq.Conv2d
    want_scheme = torch.per_channel_affine if scheme == "per_channel" else torch.per_tensor_affine
    assert m.conv1.weight().qscheme() in (
        want_scheme,
        torch.per_channel_symmetric,
        torch.per_tensor_symmetric,
    )

    x = torch.randn(2, 3, 20, 18) * 1.2
    layers = [m.conv1, m.conv2, m.conv3, m.conv4]
    # torch's intermediate outputs, layer by layer
    with torch.no_grad():
        acts = [m.quant(x)]
        for layer in layers:
            acts.append(layer(acts[-1]))

    convs = []
    prev = m.quant
    for i, layer in enumerate(layers):
        conv = q8.from_torch_conv(layer, input_from=prev, device=device)
        convs.append(conv)
        prev = layer
        # each layer on torch's own input: at most 1 LSB
        got = conv(_int8(acts[i]))
        assert_within_1lsb(got, _int8(acts[i + 1]), f"torch {scheme} conv{i + 1} ({ENGINE})")
        # and exactly what q8ta_wgpu's reference computes for the same parameters
        ref = reference.conv2d(
            _int8(acts[i]),
            conv.weight,
            conv.weight_scales,
            conv.bias,
            input_scale=conv.input_scale,
            input_zero_point=conv.input_zero_point,
            output_scale=conv.output_scale,
            output_zero_point=conv.output_zero_point,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            activation=conv.activation,
        )
        assert_within_1lsb(got, ref, f"torch {scheme} conv{i + 1} vs reference")

    # the whole stack chained on the GPU (QTensor in, QTensor out), from torch's quantized input
    t = q8.to_qtensor(acts[0], device=device)
    for conv in convs:
        t = conv(t)
    out = q8.from_qtensor(t)
    assert out.dtype == torch.quint8
    assert out.q_scale() == pytest.approx(float(np.float32(m.conv4.scale)))
    assert out.q_zero_point() == m.conv4.zero_point
    what = f"torch {scheme} 4-conv stack end to end ({ENGINE})"
    if ENGINE in ("onednn", "x86"):
        assert_within_1lsb(_int8(out), _int8(acts[-1]), what)
    else:  # qnnpack rounds the bias to int32: its 1-LSB steps can compound to 2 through 4 layers
        d = np.abs(_int8(out).astype(np.int32) - _int8(acts[-1]).astype(np.int32))
        assert d.max() <= 2, f"{what}: max diff {d.max()} LSB; {np.count_nonzero(d)} of {d.size} differ"


def test_conv_module_built_directly(device) -> None:
    """nnq.Conv2d / nniq.ConvReLU2d constructed by hand, per-tensor weights, explicit input quant."""
    rng = np.random.default_rng(3)
    for cls, stride, groups in [(nnq.Conv2d, 1, 1), (nniq.ConvReLU2d, 2, 2), (nnq.Conv2d, (1, 2), 8)]:
        mod = cls(8, 8, (3, 2), stride=stride, padding=(1, 0), groups=groups)
        w = torch.from_numpy(rng.normal(0, 0.2, (8, 8 // groups, 3, 2)).astype(np.float32))
        wq = torch.quantize_per_tensor(w, 0.01, 0, torch.qint8)
        mod.set_weight_bias(wq, torch.from_numpy(rng.normal(0, 0.5, 8).astype(np.float32)))
        mod.scale, mod.zero_point = 0.07, 110
        xq = torch.quantize_per_tensor(torch.randn(1, 8, 9, 11), 0.03, 140, torch.quint8)
        conv = q8.from_torch_conv(mod, input_scale=0.03, input_zero_point=140, device=device)
        assert conv.input_zero_point == 12 and conv.output_zero_point == -18
        assert conv.activation == ("relu" if cls is nniq.ConvReLU2d else "none")
        np.testing.assert_array_equal(conv.weight_scales, np.full(8, 0.01, np.float32))
        assert_within_1lsb(conv(_int8(xq)), _int8(mod(xq)), f"direct {cls.__name__} g{groups}")


def test_from_torch_conv_errors(device) -> None:
    mod = nnq.Conv2d(4, 4, 3)
    with pytest.raises(ValueError, match="input_scale"):
        q8.from_torch_conv(mod)
    with pytest.raises(TypeError, match="torch.ao.nn.quantized.Conv2d"):
        q8.from_torch_conv(nn.Conv2d(4, 4, 3), input_scale=0.1, input_zero_point=128)
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        q8.from_torch_conv(mod, input_scale=0.1, input_zero_point=-1)
    with pytest.raises(TypeError, match="not both"):
        q8.from_torch_conv(mod, input_scale=0.1, input_zero_point=1, input_from=mod)
    # asymmetric (non-zero zero point) weights are rejected (onednn refuses them in
    # set_weight_bias, so the module's weight() is replaced)
    w = torch.quantize_per_tensor(torch.randn(4, 4, 3, 3), 0.02, 3, torch.qint8)
    mod.weight = lambda: w
    with pytest.raises(ValueError, match="zero point must be 0"):
        q8.from_torch_conv(mod, input_scale=0.1, input_zero_point=128, device=device)
    wc = torch.quantize_per_channel(
        torch.randn(4, 4, 3, 3), torch.full((4,), 0.02), torch.tensor([0, 0, 1, 0]), 0, torch.qint8
    )
    mod.weight = lambda: wc
    with pytest.raises(ValueError, match="zero points must all be 0"):
        q8.from_torch_conv(mod, input_scale=0.1, input_zero_point=128, device=device)


@pytest.mark.parametrize("layout", q8.LAYOUTS)
@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
def test_tensor_round_trip(device, dtype: str, layout: str) -> None:
    tdtype = getattr(torch, dtype)
    zp = 200 if tdtype == torch.quint8 else -30
    x = torch.randn(2, 5, 7, 6) * 3
    t = torch.quantize_per_tensor(x, 0.025, zp, tdtype)
    qt = q8.to_qtensor(t, layout=layout, device=device)
    assert qt.shape == (2, 5, 7, 6) and qt.layout == layout
    assert qt.zero_point == (zp - 128 if tdtype == torch.quint8 else zp)
    assert qt.scale == float(np.float32(0.025))
    np.testing.assert_array_equal(qt.numpy(), _int8(t))
    # the same real values
    np.testing.assert_array_equal(
        q8.dequantize(qt.numpy(), qt.scale, qt.zero_point), t.dequantize().numpy().astype(np.float32)
    )
    back = q8.from_qtensor(qt, dtype=tdtype)
    assert back.dtype == tdtype and back.q_zero_point() == zp
    assert back.q_scale() == pytest.approx(0.025, rel=1e-7)
    np.testing.assert_array_equal(back.int_repr().numpy(), t.int_repr().numpy())
    # default dtype is quint8; converting between the two keeps the real values
    other = q8.from_qtensor(qt)
    assert other.dtype == torch.quint8
    np.testing.assert_allclose(other.dequantize().numpy(), t.dequantize().numpy(), rtol=0, atol=1e-6)


def test_to_qtensor_channels_last_and_errors(device) -> None:
    t = torch.quantize_per_tensor(torch.randn(1, 6, 4, 5), 0.1, 128, torch.quint8)
    cl = t.contiguous(memory_format=torch.channels_last)
    np.testing.assert_array_equal(q8.to_qtensor(cl, device=device).numpy(), _int8(t))
    with pytest.raises(TypeError, match="quantized"):
        q8.to_qtensor(torch.randn(1, 2, 3, 4))
    with pytest.raises(ValueError, match="4 dimensions"):
        q8.to_qtensor(torch.quantize_per_tensor(torch.randn(2, 3), 0.1, 0, torch.quint8))
    pc = torch.quantize_per_channel(
        torch.randn(1, 2, 3, 3), torch.tensor([0.1, 0.2]), torch.tensor([0, 0]), 1, torch.qint8
    )
    with pytest.raises(ValueError, match="per tensor"):
        q8.to_qtensor(pc)
    with pytest.raises(TypeError, match="QTensor"):
        q8.from_qtensor(t)
    with pytest.raises(TypeError, match="quint8 or torch.qint8"):
        q8.from_qtensor(q8.to_qtensor(t, device=device), dtype=torch.int8)


def test_import_does_not_import_torch() -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, q8ta_wgpu, q8ta_wgpu.torch_interop; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
