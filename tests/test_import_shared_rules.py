"""The rules the PT2E importer (torch_import) and the torch.ao eager importer (torch_eager*) share,
written once: a cat's inputs (quantized, one rank, along channels) and hardtanh's
bounds (hardtanh(0, 6) is relu6, fused into the op before it). Their messages name the node and
the rule it broke."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.ao.nn.quantized as nnq  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import q8ta_wgpu as q8  # noqa: E402
from q8ta_wgpu.torch_import import _RELU6_BOUNDS, _conv_transpose_params, _pool_options  # noqa: E402


class _Cat(nn.Module):
    """A hand-built eager-converted model (Quantize ... DeQuantize) whose cat reads `inputs`."""

    def __init__(self, inputs: str, dim: int = 1) -> None:
        super().__init__()
        self.q, self.dq = nnq.Quantize(0.05, 128, torch.quint8), nnq.DeQuantize()
        self.inputs, self.dim = inputs, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.q(x)
        tensors = {"float": [q, x], "ranks": [q, torch.flatten(q, 1)], "two": [q, q]}
        return self.dq(torch.cat(tensors[self.inputs], self.dim))


@pytest.mark.parametrize(
    ("inputs", "dim", "match"),
    [
        ("float", 1, r"node 'cat' \(call_function .*\): its input 1 must be a quantized tensor, got tuple"),
        ("ranks", 1, r"node 'cat' .*: cat of tensors of different ranks"),
        ("two", 2, r"node 'cat' .*: cat along dim 2 of rank-4 tensors: only along channels \(dim 1\)"),
    ],
)
def test_eager_cat_checks_name_the_node(device, inputs, dim, match):
    with pytest.raises(q8.UnsupportedError, match=match):
        q8.from_torch(_Cat(inputs, dim), device=device)


class _Clamp(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.q, self.dq = nnq.Quantize(0.05, 128, torch.quint8), nnq.DeQuantize()
        self.how = how
        self.ht = nn.Hardtanh(0.0, 6.0) if how == "module" else nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.q(x)
        if self.how == "function":
            return self.dq(F.hardtanh(q, *_RELU6_BOUNDS))
        if self.how == "bounds":
            return self.dq(F.hardtanh(q, -0.5, 0.25))
        return self.dq(self.ht(q))


@pytest.mark.parametrize("how", ["module", "function", "relu6"])
def test_eager_hardtanh_0_6_is_relu6(device, how):
    """nn.Hardtanh(0, 6), F.hardtanh(x, 0, 6) and nn.ReLU6 read after a Quantize: a relu6 table."""
    net = q8.from_torch(_Clamp(how), device=device)
    assert [(s.kind, s.detail) for s in net.steps] == [("lookup", "relu6")]
    assert net.steps[0].op.function == "relu6"


def test_eager_hardtanh_keeps_its_bounds(device):
    net = q8.from_torch(_Clamp("bounds"), device=device)
    op = net.steps[0].op
    assert (op.function, op.min_val, op.max_val) == ("hardtanh", -0.5, 0.25)


def test_options_from_arguments_and_modules_alike():
    """aten's arguments (ints, lists, [] for no stride) and a module's attributes give the same."""
    assert _pool_options(3, [], [1], False) == _pool_options((3, 3), None, 1, 0)
    assert _pool_options([2, 3], [1, 2], 0, True)["stride"] == (1, 2)
    params = _conv_transpose_params(
        np.zeros((6, 2, 3, 3), np.int8), np.array([0.5, 0.25], np.float32), None,
        stride=[2], padding=1, output_padding=(1, 0), dilation=1, groups=3,
    )  # fmt: skip
    assert params["options"] == dict(
        stride=(2, 2), padding=(1, 1), dilation=(1, 1), groups=3, output_padding=(1, 0)
    )
    assert params["weight_scales"].tolist() == [0.5, 0.25] * 3
