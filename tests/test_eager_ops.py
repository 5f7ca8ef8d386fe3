"""torch.ao eager-converted models with hardswish, relu6, sigmoid, hardsigmoid, tanh, hardtanh,
relu and channel cats (q8ta_wgpu/torch_eager_elementwise.py), imported with `q8.from_torch` and
run on the GPU, checked against torch's own quantized CPU model: the tables against torch's
quantized kernels on every int8 value, and whole MobileNetV3-style nets on random inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import q8ta_wgpu as q8

from .helpers import assert_within_1lsb, random_bn

torch = pytest.importorskip("torch")
nn = torch.nn
F = nn.functional
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning)

ENGINES = ["x86", "qnnpack"]


@pytest.fixture
def engine(request):
    """torch's quantized engine for the test, restored after it."""
    old = torch.backends.quantized.engine
    if request.param not in torch.backends.quantized.supported_engines:
        pytest.fail(f"torch {torch.__version__} lacks the {request.param} quantized engine")
    torch.backends.quantized.engine = request.param
    yield request.param
    torch.backends.quantized.engine = old


# ---- the tables against torch's quantized kernels ---------------------------------------------
def _torch_table(function: str, scale: float, zp: int, out_scale: float, out_zp: int) -> tuple:
    """torch's quantized op on every quint8 value (one vectorized tensor), as int8 values, and its
    output parameters (int8 zero point)."""
    qx = torch._make_per_tensor_quantized_tensor(torch.arange(256, dtype=torch.uint8), scale, zp)
    if function == "hardswish":
        y = torch.ao.nn.quantized.Hardswish(out_scale, out_zp)(qx)
    else:
        y = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "hardsigmoid": F.hardsigmoid}[function](qx)
    return (y.int_repr().numpy().astype(np.int16) - 128).astype(np.int8), y.q_scale(), y.q_zero_point() - 128


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("function", ["hardswish", "hardsigmoid", "sigmoid", "tanh"])
def test_tables_are_torch_quantized_kernels(engine, function):
    """reference.lookup with the importer's torch_kernel (x86: torch's vectorized fma dequantize
    of quint8; QNNPACK: its quint8 tables) against torch's quantized op, 300 random parameter
    sets. Exact but sigmoid on x86, whose SLEEF exp can differ in its last bit (1 LSB, rare)."""
    rng = np.random.default_rng(7)
    kernel = "qnnpack" if engine == "qnnpack" else "x86_quint8"
    got, want = [], []
    for _ in range(300):
        s, so = (float(np.float32(10 ** rng.uniform(lo, hi))) for lo, hi in ((-3, -0.5), (-3, -1)))
        zp, zo = (int(v) for v in rng.integers(0, 256, 2))
        t, so2, zo2 = _torch_table(function, s, zp, so, zo)
        want.append(t)
        got.append(q8.reference.lookup(q8.reference.INT8_VALUES, function, input_scale=s, input_zero_point=zp - 128,
                                       output_scale=so2, output_zero_point=zo2, torch_kernel=kernel))  # fmt: skip
    exact = not (function == "sigmoid" and engine == "x86")
    assert_within_1lsb(np.stack(got), np.stack(want), f"eager table {function}/{engine}", exact=exact)


def test_torch_kernel_is_checked():
    with pytest.raises(ValueError, match="torch_kernel must be one of"):
        q8.reference.lookup(q8.reference.INT8_VALUES, "tanh", input_scale=0.1, input_zero_point=0,
                            output_scale=0.1, output_zero_point=0, torch_kernel="arm")  # fmt: skip


# ---- networks ---------------------------------------------------------------------------------
class EagerMobileV3(nn.Module):
    """MobileNetV3-style: stem conv + BN + hardswish; an inverted residual (1x1 expand + BN +
    relu6, depthwise 3x3 + BN + hardswish, 1x1 project + BN, FloatFunctional add); two branches
    (1x1 conv + BN + relu fused, 6 channels; 3x3 conv + hardswish, 5 channels) concatenated with
    the block's output (16) by a FloatFunctional cat (inputs at channels 0, 6 and 11, mid-word),
    relu after it; 1x1 conv + BN + relu6, average pool, flatten, linear. `contiguous`: relu6 reads
    NCHW-contiguous tensors (torch's QNNPACK clamp mislabels channels_last ones, see below)."""

    def __init__(self, seed: int = 0, contiguous: bool = False) -> None:
        super().__init__()
        from torch.ao.nn.quantized import FloatFunctional
        from torch.ao.quantization import DeQuantStub, QuantStub

        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        self.contiguous = contiguous
        self.quant, self.dequant = QuantStub(), DeQuantStub()
        self.stem, self.stem_bn, self.stem_hs = (
            nn.Conv2d(3, 16, 3, 2, 1, bias=False),
            random_bn(16, gen),
            nn.Hardswish(),
        )
        self.expand, self.expand_bn, self.expand_r6 = (
            nn.Conv2d(16, 32, 1, bias=False),
            random_bn(32, gen),
            nn.ReLU6(),
        )
        self.dw, self.dw_bn, self.dw_hs = (
            nn.Conv2d(32, 32, 3, 1, 1, groups=32, bias=False),
            random_bn(32, gen),
            nn.Hardswish(),
        )
        self.project, self.project_bn = nn.Conv2d(32, 16, 1, bias=False), random_bn(16, gen)
        self.add = FloatFunctional()
        self.a, self.a_bn, self.a_relu = nn.Conv2d(16, 6, 1, bias=False), random_bn(6, gen), nn.ReLU()
        self.b, self.b_hs = nn.Conv2d(16, 5, 3, padding=1), nn.Hardswish()
        self.cat, self.cat_relu = FloatFunctional(), nn.ReLU()
        self.mix, self.mix_bn, self.mix_r6 = nn.Conv2d(27, 24, 1, bias=False), random_bn(24, gen), nn.ReLU6()
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(24, 10)  # fmt: skip

    def _nchw(self, t: torch.Tensor) -> torch.Tensor:
        return t.contiguous() if self.contiguous else t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_hs(self.stem_bn(self.stem(self.quant(x))))
        y = self.expand_r6(self._nchw(self.expand_bn(self.expand(x))))
        y = self.project_bn(self.project(self.dw_hs(self.dw_bn(self.dw(y)))))
        x = self.add.add(y, x)
        a = self.a_relu(self.a_bn(self.a(x)))
        x = self.cat_relu(self.cat.cat([a, self.b_hs(self.b(x)), x], 1))
        x = self.mix_r6(self._nchw(self.mix_bn(self.mix(x))))
        return self.dequant(self.fc(torch.flatten(self.pool(x), 1)))

    def fuse(self) -> None:
        from torch.ao.quantization import fuse_modules

        fuse_modules(self, [["stem", "stem_bn"], ["expand", "expand_bn"], ["dw", "dw_bn"], ["project", "project_bn"],
                            ["a", "a_bn", "a_relu"], ["mix", "mix_bn"]], inplace=True)  # fmt: skip


class EagerActivations(nn.Module):
    """Convs with nn.Sigmoid, nn.Tanh, nn.Hardsigmoid, F.hardtanh(-0.5, 0.5) and nn.Hardtanh(0, 6)
    after them (left float modules by convert: torch's quantized kernels give sigmoid's,
    hardsigmoid's and tanh's output parameters), torch.cat of two tensors (requantized to the
    first's parameters), x.relu() after it (fused into the cat), torch.sigmoid, F.relu6 (a table:
    after a sigmoid), a 1x1 conv, average pool, linear."""

    def __init__(self, seed: int = 0, contiguous: bool = False) -> None:
        super().__init__()
        from torch.ao.quantization import DeQuantStub, QuantStub

        torch.manual_seed(seed)
        self.contiguous = contiguous
        self.quant, self.dequant = QuantStub(), DeQuantStub()
        self.c1, self.c2, self.c3 = nn.Conv2d(3, 8, 3, 2, 1), nn.Conv2d(8, 8, 3, 1, 1), nn.Conv2d(8, 3, 1)
        self.c4, self.c5, self.c6 = nn.Conv2d(8, 5, 1), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 1)
        self.sig, self.tanh, self.hsig, self.r6 = (
            nn.Sigmoid(),
            nn.Tanh(),
            nn.Hardsigmoid(),
            nn.Hardtanh(0.0, 6.0),
        )
        self.fc = nn.Linear(8, 10)

    def _nchw(self, t: torch.Tensor) -> torch.Tensor:
        return t.contiguous() if self.contiguous else t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.sig(self.c1(self.quant(x)))
        x = self.tanh(self.c2(x))
        y = torch.cat([self.hsig(self.c3(x)), F.hardtanh(self._nchw(self.c4(x)), -0.5, 0.5)], 1).relu()
        y = F.relu6(self._nchw(torch.sigmoid(self.c5(y))))
        y = self.r6(self._nchw(self.c6(y)))
        return self.dequant(self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1)))


def _converted(model: nn.Module, engine: str) -> nn.Module:
    from torch.ao.quantization import convert, get_default_qconfig, prepare

    m = model.eval()
    if hasattr(m, "fuse"):
        m.fuse()
    m.qconfig = get_default_qconfig(engine)
    prepare(m, inplace=True)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(4):
            m(torch.randn(8, 3, 32, 32, generator=gen))
    convert(m, inplace=True)
    return m


def _compare(net: q8.Net, m: nn.Module, x: np.ndarray, what: str) -> None:
    """The GPU's int8 output within 1 LSB of torch's (its float output quantized again with the
    output's parameters: exactly its int8 values), top-1 equal on >= 99% of inputs."""
    got = net.run_int8(x)
    with torch.no_grad():
        y = m(torch.from_numpy(x)).numpy()
    want = q8.reference.quantize_per_tensor(y, net.output_scale, net.output_zero_point)
    got = got.reshape(want.shape)
    assert_within_1lsb(got, want, what)
    top1 = float(np.mean(got.argmax(1) == want.argmax(1)))
    assert top1 >= 0.99, f"{what}: top-1 agrees on {100 * top1:.1f}% of inputs"


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("model", [EagerMobileV3, EagerActivations], ids=lambda c: c.__name__)
def test_eager_activations_and_cat_match_pytorch(device, engine, model):
    """Every output within 1 LSB of torch's eager-converted model (measured: x86 exact; QNNPACK,
    whose conv, add and pools requantize in fixed point, 1 of 160 off by 1 on EagerMobileV3);
    relu6 after a conv and relu after a cat fused as their clamps."""
    # torch's QNNPACK clamp (relu6, hardtanh) of a channels_last tensor returns its NHWC bytes
    # labelled NCHW (torch 2.13: scrambled values), so there the model clamps contiguous tensors.
    m = _converted(model(seed=3, contiguous=engine == "qnnpack"), engine)
    net = q8.from_torch(m, device=device)
    x = np.random.default_rng(5).standard_normal((16, 3, 32, 32)).astype(np.float32)
    _compare(net, m, x, f"net/eager/{model.__name__}/{engine}")
    details = [(s.kind, s.detail) for s in net.steps]
    lookups = {d for k, d in details if k == "lookup"}
    if model is EagerMobileV3:
        assert lookups == {"hardswish"}, details  # relu6 and relu: all fused
        assert ("cat", "3 inputs relu") in details, details
        assert sum("relu6" in d for k, d in details if k == "conv2d") == 2, details
    else:
        assert {"sigmoid", "tanh", "hardsigmoid", "hardtanh", "relu6"} <= lookups, details
        assert ("cat", "2 inputs relu") in details, details


def test_qnnpack_clamp_of_channels_last_is_scrambled_in_torch():
    """Why the QNNPACK models above clamp contiguous tensors: torch's own result is wrong."""
    if "qnnpack" not in torch.backends.quantized.supported_engines:
        pytest.skip("no qnnpack engine")
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = "qnnpack"
    try:
        x = torch.quantize_per_tensor(torch.randn(2, 3, 4, 5) * 5, 0.05, 100, torch.quint8)
        y = F.hardtanh(x.contiguous(memory_format=torch.channels_last), -0.7, 1.3)
        want = torch.quantize_per_tensor(x.dequantize().clamp(-0.7, 1.3), 0.05, 100, torch.quint8).int_repr()
        if torch.equal(y.int_repr(), want):
            pytest.fail(
                "torch's QNNPACK clamp is right now: the models above can clamp channels_last tensors"
            )
        assert torch.equal(y.int_repr().flatten(), want.permute(0, 2, 3, 1).flatten())
    finally:
        torch.backends.quantized.engine = old


# ---- what is not supported --------------------------------------------------------------------
class _Tail(nn.Module):
    def __init__(self, tail: nn.Module | None = None, how: str = "") -> None:
        super().__init__()
        from torch.ao.nn.quantized import FloatFunctional
        from torch.ao.quantization import DeQuantStub, QuantStub

        self.quant, self.dequant, self.conv, self.ff = (
            QuantStub(),
            DeQuantStub(),
            nn.Conv2d(3, 4, 3),
            FloatFunctional(),
        )
        self.tail, self.how = tail or nn.Identity(), how

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(self.quant(x))
        if self.how == "cat_h":
            y = self.ff.cat([y, y], 2)
        elif self.how == "add_scalar":
            y = self.ff.add_scalar(y, 0.5)
        return self.dequant(self.tail(y))


@pytest.mark.parametrize("engine", ["x86"], indirect=True)
@pytest.mark.parametrize(
    ("tail", "how", "match"),
    [
        (nn.LeakyReLU(0.1), "", r"module 'tail' \(LeakyReLU\): not supported .*Hardswish.*Sigmoid.*Tanh"),
        (None, "cat_h", r"node 'cat' .*only along channels \(dim 1\)"),
        (None, "add_scalar", r"node 'add_scalar' .*not supported .*quantized add / add_relu / cat"),
    ],
)
def test_unsupported_eager_ops_name_the_module(device, engine, tail, how, match):
    m = _converted(_Tail(tail, how), engine)
    with pytest.raises(q8.UnsupportedError, match=match):
        q8.from_torch(m, device=device)


@pytest.mark.parametrize("engine", ["x86"], indirect=True)
def test_quantized_sigmoid_module_takes_its_own_parameters(device, engine):
    """torch.ao.nn.quantized.Sigmoid (not made by eager convert, but a module of its own output
    parameters) in place of the float nn.Sigmoid."""
    m = _converted(EagerActivations(seed=4), engine)
    m.sig = torch.ao.nn.quantized.Sigmoid(0.0045, 3)
    net = q8.from_torch(m, device=device)
    assert (net.steps[1].scale, net.steps[1].zero_point) == (0.0045, 3 - 128), net.steps[1]
    _compare(
        net,
        m,
        np.random.default_rng(6).standard_normal((8, 3, 32, 32)).astype(np.float32),
        "net/eager/nnq.Sigmoid",
    )


class _ActivationFirst(nn.Module):
    """An eager model whose input goes into an activation before any conv (the importer cannot
    learn the input's channel count from a conv's in_channels)."""

    def __init__(self) -> None:
        super().__init__()
        self.quant, self.dequant = torch.ao.quantization.QuantStub(), torch.ao.quantization.DeQuantStub()
        self.act = nn.Hardswish()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.conv(self.act(self.quant(x))))


@pytest.mark.parametrize("engine", ["x86"], indirect=True)
def test_input_into_an_activation_first(device, engine):
    """The channel count is then unknown to the import: the net takes the input the ops accept
    (here 3 channels) and the conv refuses another count, naming itself."""
    torch.manual_seed(0)
    m = _converted(_ActivationFirst(), engine)
    net = q8.from_torch(m, device=device)
    x = np.random.default_rng(2).standard_normal((4, 3, 32, 32)).astype(np.float32)
    _compare(net, m, x, "net/eager/activation-first")
    with pytest.raises(ValueError, match="conv2d .*channels"):
        net(np.zeros((1, 5, 8, 8), np.float32))
