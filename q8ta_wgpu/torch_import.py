"""PyTorch int8 models made GPU nets: `from_torch(model)`.

A PT2E graph (torch.export, then torchao's `prepare_pt2e` / `convert_pt2e` with a quantizer of
the q8ta scheme: int8 per-tensor affine activations, int8 symmetric per-channel weights) holds
aten ops between `quantized_decomposed` quantize / dequantize nodes. The import walks it once,
giving each node a symbolic value:

- `QVal`: an int8 tensor the GPU holds (a quantize node, or an op whose output is quantized);
- `FloatOf(QVal)`: its dequantized float view (a dequantize node; views like flatten keep it);
- `Weight`: a dequantize_per_channel of int8 weights (constant);
- `Pending`: a float op (conv, linear, add, pools, cat, an elementwise function) whose inputs
  are dequantized int8 tensors, made a GPU step when the quantize after it gives its output's
  scale and zero point; a relu or relu6 between them is fused into the op. An elementwise
  function of a dequantized tensor (hardswish, hardsigmoid, sigmoid, tanh, hardtanh, relu, relu6)
  up to its quantize is one table (`elementwise.QLookup`).

Anything else raises `UnsupportedError` naming the node and its op, before any GPU work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .conv import QConv2d
from .net import ConvOp, FlattenOp, Net, Step
from .runtime import Device, get_device


class UnsupportedError(ValueError):
    """A model (node or module) the GPU net cannot run, named with its op and why."""


@dataclass(frozen=True)
class QVal:
    name: str
    scale: float
    zero_point: int
    rank: int = 4


@dataclass(frozen=True)
class FloatOf:
    q: QVal


@dataclass(frozen=True)
class Weight:
    q: np.ndarray  # int8
    scales: np.ndarray  # float32 [C_out]
    axis: int = 0  # the per-channel axis: the output channels' (0; 1 for a transposed conv)


@dataclass
class Pending:
    kind: str
    node: str
    inputs: tuple[QVal, ...]
    params: dict[str, Any] = field(default_factory=dict)
    activation: str = "none"
    rank: int = 4
    # Inputs that are still float ops (each read by this op only), when the graph quantizes only
    # after this op: made steps quantized with this op's output parameters when it becomes one,
    # exactly what the graph computes where this op is a cat or a clamp (hardtanh).
    parts: tuple[QVal | Pending, ...] = ()


def _targets() -> dict[str, Any]:
    import torch

    try:  # registers torch.ops.quantized_decomposed
        import torch.ao.quantization.fx._decomposed  # noqa: F401
    except ImportError:  # pragma: no cover - torch without torch.ao
        import torchao.quantization.pt2e  # noqa: F401
    qd = torch.ops.quantized_decomposed
    aten = torch.ops.aten
    return {
        "quantize": {qd.quantize_per_tensor.default, qd.quantize_per_tensor.tensor},
        "dequantize": {qd.dequantize_per_tensor.default, qd.dequantize_per_tensor.tensor},
        "dequantize_per_channel": {qd.dequantize_per_channel.default},
        "quantize_per_channel": {qd.quantize_per_channel.default},
        "conv2d": {aten.conv2d.default},
        "linear": {aten.linear.default},
        "add": {aten.add.Tensor, aten.add_.Tensor},
        "relu": {aten.relu.default, aten.relu_.default},
        "hardtanh": {aten.hardtanh.default, aten.hardtanh_.default},
        "lookup": {
            aten.hardswish.default,
            aten.hardswish_.default,
            aten.hardsigmoid.default,
            aten.hardsigmoid_.default,
            aten.sigmoid.default,
            aten.sigmoid_.default,
            aten.tanh.default,
            aten.tanh_.default,
        },
        "cat": {aten.cat.default},
        "upsample_nearest2d": {aten.upsample_nearest2d.vec, aten.upsample_nearest2d.default},
        "pixel_shuffle": {aten.pixel_shuffle.default, aten.pixel_unshuffle.default},
        "conv_transpose2d": {aten.conv_transpose2d.input},
        "max_pool2d": {aten.max_pool2d.default},
        "avg_pool2d": {aten.avg_pool2d.default},
        "adaptive_avg_pool2d": {aten.adaptive_avg_pool2d.default},
        "mean": {aten.mean.dim},
        "flatten": {aten.flatten.using_ints},
        "view": {aten.view.default, aten.reshape.default, aten._unsafe_view.default},
        "identity": {aten.dropout.default, aten.clone.default, aten.contiguous.default, aten.alias.default},
        "size": {aten.sym_size.int},
    }


def _kind(targets: dict[str, Any], target: Any) -> str | None:
    for kind, ts in targets.items():
        if target in ts:
            return kind
    return None


def _fake_value(node: Any) -> Any:
    """The example value export recorded for `node` (its shape), through the quantize and
    dequantize nodes convert_pt2e inserts without one."""
    for _ in range(4):
        val = node.meta.get("val")
        if val is not None or not node.args or not hasattr(node.args[0], "meta"):
            return val
        node = node.args[0]
    return None


def _arg(node: Any, i: int, name: str, default: Any = None) -> Any:
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(name, default)


def _attr(gm: Any, target: str) -> Any:
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


# hardtanh(0, 6) is relu6: a clamp the op before it fuses (other bounds: a table).
_RELU6_BOUNDS = (0.0, 6.0)


def _hardtanh_bounds(node: Any) -> tuple[float, float]:
    """(min_val, max_val) of a hardtanh call: aten.hardtanh's and F.hardtanh's arguments alike."""
    return float(_arg(node, 1, "min_val", -1.0)), float(_arg(node, 2, "max_val", 1.0))


def _pair(v: Any, default: int) -> tuple[int, int]:
    if v is None or (isinstance(v, list | tuple) and len(v) == 0):
        return (default, default)
    if isinstance(v, int):
        return (v, v)
    v = [int(e) for e in v]
    return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])


# The options of convs and pools, from aten's arguments (PT2E) or a torch module's attributes
# (eager) alike: an int or a sequence each.
def _conv_options(stride: Any, padding: Any, dilation: Any, groups: Any) -> dict[str, Any]:
    """A conv's stride, padding, dilation (pairs) and groups."""
    return dict(
        stride=_pair(stride, 1), padding=_pair(padding, 0), dilation=_pair(dilation, 1), groups=int(groups)
    )


def _conv_transpose_params(
    weight: np.ndarray, group_scales: np.ndarray, bias: np.ndarray | None, *, stride: Any, padding: Any,
    output_padding: Any, dilation: Any, groups: Any,
) -> dict[str, Any]:  # fmt: skip
    """A conv_transpose2d Pending's params: its weight [C_in, C_out/groups, kh, kw], the scales of
    one group's output channels (the same in each group), its bias, and its options."""
    options = dict(_conv_options(stride, padding, dilation, groups), output_padding=_pair(output_padding, 0))
    return dict(
        weight=weight, weight_scales=np.tile(group_scales, options["groups"]), bias=bias, options=options
    )


def _pool_options(kernel_size: Any, stride: Any, padding: Any, ceil_mode: Any) -> dict[str, Any]:
    """A pool's window: the stride is the kernel size where none is given (None, or aten's [])."""
    k = _pair(kernel_size, 1)
    return dict(kernel_size=k, stride=_pair(stride, 1) if stride else k, padding=_pair(padding, 0),
                ceil_mode=bool(ceil_mode))  # fmt: skip


def from_torch(model: Any, device: Device | None = None, *, fuse: bool = True) -> Net:
    """A GPU net running `model`, a PT2E-converted graph (torch.export + torchao's prepare_pt2e /
    convert_pt2e with `Q8taQuantizer` or another quantizer of the same scheme) or a torch.ao
    eager-converted model. Raises UnsupportedError naming the node (or module) and its op that
    the GPU cannot run, before any GPU work. `fuse`: residual adds run in the epilogue of the
    conv before them (`Net.fuse`)."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module (a converted PT2E graph module), got {type(model).__name__}"
        )
    graph = getattr(model, "graph", None)
    if graph is None or not any(_is_q_node(n) for n in graph.nodes):
        from .torch_eager import from_eager

        return from_eager(model, device, fuse=fuse)
    return _Importer(model, get_device(device)).run(fuse=fuse)


def _is_q_node(node: Any) -> bool:
    return "quantized_decomposed" in str(getattr(node, "target", ""))


class _Host:
    """What the pieces of `_Importer` use of one another, declared for mypy (nothing at run time)."""

    device: Device
    steps: list[Step]

    if TYPE_CHECKING:

        def fail(self, node: Any, why: str) -> UnsupportedError: ...
        def value(self, node: Any, arg: Any) -> Any: ...
        def float_input(self, node: Any, arg: Any, what: str) -> QVal: ...
        def float_input_or_part(self, node: Any, arg: Any, what: str) -> QVal | Pending: ...
        def new_name(self, base: str) -> str: ...
        def make_step(self, p: Pending, out_name: str, scale: float, zp: int) -> QVal: ...
        def weight_and_bias(
            self, node: Any, w_arg: Any, b_arg: Any, axis: int = 0
        ) -> tuple[Weight, np.ndarray | None]: ...
        def resample_op(self, p: Pending, x: QVal, scale: float, zp: int) -> tuple[Any, str]: ...


class _Walk(_Host):
    """The walk over the graph, the value and quantization-parameter helpers, and the
    per-tensor quantize / dequantize nodes."""

    def __init__(self, gm: Any, device: Device) -> None:
        self.gm = gm
        self.device = device
        self.targets = _targets()
        self.env: dict[str, Any] = {}
        self.steps: list[Step] = []
        self.input: QVal | None = None
        self.input_channels: int | None = None
        self.example_shape: tuple[int, ...] | None = None
        self._n = 0

    # -- helpers --
    def fail(self, node: Any, why: str) -> UnsupportedError:
        return UnsupportedError(f"node {node.name!r} ({node.op} {node.target}): {why}")

    def value(self, node: Any, arg: Any) -> Any:
        import torch.fx

        if isinstance(arg, torch.fx.Node):
            return self.env[arg.name]
        return arg

    def scalar(self, node: Any, arg: Any) -> Any:
        v = self.value(node, arg)
        if hasattr(v, "item"):
            v = v.item()
        return v

    def qparams(self, node: Any) -> tuple[float, int]:
        """(scale, int8 zero point) of a per-tensor quantize/dequantize node; uint8 [0, 255]
        tensors are the same reals as int8 ones with the zero point shifted by -128."""
        import torch

        scale = float(self.scalar(node, node.args[1]))
        zp = int(self.scalar(node, node.args[2]))
        qmin, qmax, dtype = int(node.args[3]), int(node.args[4]), node.args[5]
        if dtype == torch.uint8 and (qmin, qmax) == (0, 255):
            return scale, zp - 128
        if dtype == torch.int8 and (qmin, qmax) == (-128, 127):
            return scale, zp
        raise self.fail(
            node,
            f"activations must be int8 in [-128, 127] (or uint8 in [0, 255]), got {dtype} in [{qmin}, {qmax}]",
        )

    def float_input(self, node: Any, arg: Any, what: str) -> QVal:
        v = self.value(node, arg)
        if isinstance(v, FloatOf):
            return v.q
        raise self.fail(
            node, f"its {what} must be a dequantized int8 tensor (a dequantize node), got {type(v).__name__}"
        )

    def float_input_or_part(self, node: Any, arg: Any, what: str) -> QVal | Pending:
        """A float op that only node reads (a quantizer that quantizes after node only), to be made
        a step quantized with node's output parameters (`Pending.parts`), else `float_input`."""
        v = self.value(node, arg)
        if isinstance(v, Pending) and len(arg.users) == 1:
            return v
        return self.float_input(node, arg, what)

    def new_name(self, base: str) -> str:
        self._n += 1
        return f"{base}#{self._n}"

    # -- the walk --
    def run(self, *, fuse: bool = True) -> Net:
        for node in self.gm.graph.nodes:
            self.env[node.name] = self.visit(node)
        if self.input is None:
            raise UnsupportedError(
                "the graph's input is never quantized (no quantize_per_tensor on a placeholder)"
            )
        steps = self._live_steps()
        return Net(
            steps,
            input_name=self.input.name,
            input_scale=self.input.scale,
            input_zero_point=self.input.zero_point,
            input_channels=self.input_channels or 0,
            device=self.device,
            example_shape=self.example_shape,
            fuse=fuse,
        )

    def _live_steps(self) -> list[Step]:
        out = self.output_value
        needed = {out.name}
        live = []
        for s in reversed(self.steps):
            if s.output in needed:
                live.append(s)
                needed.update(s.inputs)
        live.reverse()
        if not live or live[-1].output != out.name:
            raise UnsupportedError("the graph's output is its input: there is nothing to run on the GPU")
        return live

    def visit(self, node: Any) -> Any:
        if node.op == "placeholder":
            return ("placeholder", node)
        if node.op == "get_attr":
            return _attr(self.gm, node.target)
        if node.op == "call_module":
            if str(node.target).startswith("_guards"):
                return None
            raise self.fail(node, "submodule calls are not supported in a PT2E graph")
        if node.op == "output":
            outs = node.args[0]
            outs = outs if isinstance(outs, list | tuple) else (outs,)
            if len(outs) != 1:
                raise self.fail(node, f"the graph must have one output, it has {len(outs)}")
            v = self.value(node, outs[0])
            if not isinstance(v, FloatOf):
                raise self.fail(
                    node,
                    "the graph's output must be a dequantized int8 tensor (end the graph with a quantized op)",
                )
            self.output_value = v.q
            return None
        if node.op != "call_function":
            raise self.fail(node, "unsupported node kind")
        kind = _kind(self.targets, node.target)
        if kind is None:
            raise self.fail(
                node,
                "this op is not supported by the GPU net (supported: conv2d, linear, add, relu, "
                "relu6/hardtanh, hardswish, hardsigmoid, sigmoid, tanh, cat along channels, max_pool2d, "
                "avg_pool2d, adaptive_avg_pool2d, mean over H and W, flatten/view/reshape, "
                "dropout/identity, upsample_nearest2d, pixel_shuffle/pixel_unshuffle, conv_transpose2d, "
                "between quantize and dequantize nodes)",
            )
        return getattr(self, "op_" + kind)(node)

    # -- quantization nodes --
    def op_quantize(self, node: Any) -> QVal:
        scale, zp = self.qparams(node)
        src = self.value(node, node.args[0])
        if isinstance(src, tuple) and src[0] == "placeholder":
            if self.input is not None:
                raise self.fail(node, "the graph has more than one quantized input")
            ph = src[1]
            val = ph.meta.get("val")
            if val is not None:
                if val.dim() != 4:
                    raise self.fail(node, f"the input must be [N, C, H, W], got {list(val.shape)}")
                self.example_shape = tuple(int(s) for s in val.shape)
                self.input_channels = int(val.shape[1])
            self.input = QVal(ph.name, scale, zp)
            return self.input
        if isinstance(src, FloatOf):  # a requantize (or the same parameters again)
            q = src.q
            if (q.scale, q.zero_point) == (scale, zp):
                return q
            return self.make_step(Pending("requantize", node.name, (q,), rank=q.rank), node.name, scale, zp)
        if isinstance(src, Pending):
            return self.make_step(src, node.name, scale, zp)
        raise self.fail(node, f"quantizes a {type(src).__name__}, not the output of a supported op")

    def op_dequantize(self, node: Any) -> FloatOf:
        q = self.value(node, node.args[0])
        if not isinstance(q, QVal):
            raise self.fail(node, "dequantizes something that is not an int8 tensor of the graph")
        scale, zp = self.qparams(node)
        if (scale, zp) != (q.scale, q.zero_point):
            raise self.fail(
                node,
                f"dequantizes with scale {scale}, zero point {zp}, but the tensor was quantized "
                f"with {q.scale}, {q.zero_point}",
            )
        return FloatOf(q)


class _ConvOps(_Host):
    """Weights (per-channel quantize / dequantize), conv2d and linear."""

    def op_quantize_per_channel(self, node: Any) -> Any:
        import torch

        args = [self.value(node, a) for a in node.args]
        return torch.ops.quantized_decomposed.quantize_per_channel.default(*args)

    def op_dequantize_per_channel(self, node: Any) -> Weight:
        import torch

        q, scales, zps = (self.value(node, a) for a in node.args[:3])
        axis, qmin, qmax, dtype = (node.args[3:7] + (None,) * 4)[:4]
        if not isinstance(q, torch.Tensor) or q.dtype != torch.int8 or dtype not in (None, torch.int8):
            raise self.fail(node, "weights must be int8 tensors")
        if int(axis) not in (0, 1):  # which axis the op's output channels are: weight_and_bias
            raise self.fail(
                node, f"weights must be quantized per output channel (axis 0 or 1), got axis {axis}"
            )
        if torch.any(zps != 0):
            raise self.fail(node, "weights must be symmetric (zero points 0)")
        if qmin is not None and int(qmin) < -128 or qmax is not None and int(qmax) > 127:
            raise self.fail(node, f"weight range [{qmin}, {qmax}] is not int8")
        return Weight(
            q.detach().cpu().numpy().astype(np.int8),
            scales.detach().cpu().numpy().astype(np.float32),
            int(axis),
        )

    def weight_and_bias(
        self, node: Any, w_arg: Any, b_arg: Any, axis: int = 0
    ) -> tuple[Weight, np.ndarray | None]:
        """The op's weight, int8 per-channel quantized along `axis` (its output channels: 0 for
        conv2d and linear, 1 for conv_transpose2d), and its float bias or None."""
        w = self.value(node, w_arg)
        if not isinstance(w, Weight):
            raise self.fail(
                node, "its weight must be int8 per-channel quantized (a dequantize_per_channel node)"
            )
        if w.axis != axis:
            raise self.fail(
                node,
                f"its weight must be quantized per output channel (axis {axis} of its weight), got axis "
                f"{w.axis}: per-channel scales on another axis cannot be applied after the int32 sums",
            )
        b = self.value(node, b_arg)
        if b is not None:
            if isinstance(b, FloatOf | Weight | Pending | QVal):
                raise self.fail(node, "its bias must be a float tensor")
            b = b.detach().cpu().numpy().astype(np.float32)
        return w, b

    def op_conv2d(self, node: Any) -> Pending:
        x = self.float_input(node, node.args[0], "input")
        w, b = self.weight_and_bias(node, node.args[1], _arg(node, 2, "bias"))
        if w.q.ndim != 4:
            raise self.fail(node, f"conv2d weight must be 4-D, got {w.q.shape}")
        padding = _arg(node, 4, "padding", 0)
        if isinstance(padding, str):
            raise self.fail(node, f"padding={padding!r} is not supported; give explicit padding")
        options = _conv_options(_arg(node, 3, "stride", 1), padding, _arg(node, 5, "dilation", 1),
                                _arg(node, 6, "groups", 1))  # fmt: skip
        params = dict(weight=w, bias=b, **options)
        if x.rank != 4:
            raise self.fail(node, f"conv2d needs a 4-D input, got rank {x.rank}")
        return Pending("conv2d", node.name, (x,), params)

    def op_linear(self, node: Any) -> Pending:
        x = self.float_input(node, node.args[0], "input")
        w, b = self.weight_and_bias(node, node.args[1], _arg(node, 2, "bias"))
        if x.rank != 2:
            raise self.fail(node, f"linear runs on [N, features] inputs (flatten first), got rank {x.rank}")
        return Pending("linear", node.name, (x,), dict(weight=w, bias=b), rank=2)


class _PoolOps(_Host):
    """Pools, mean over H and W, and the views (flatten, view / reshape, sizes, identity)."""

    def op_max_pool2d(self, node: Any) -> Pending:
        x = self.float_input(node, node.args[0], "input")
        window = _pool_options(_arg(node, 1, "kernel_size"), _arg(node, 2, "stride"), _arg(node, 3, "padding", 0),
                               _arg(node, 5, "ceil_mode", False))  # fmt: skip
        params = dict(window, dilation=_pair(_arg(node, 4, "dilation", 1), 1))
        return Pending("max_pool2d", node.name, (x,), params)

    def op_avg_pool2d(self, node: Any) -> Pending:
        x = self.float_input(node, node.args[0], "input")
        window = _pool_options(_arg(node, 1, "kernel_size"), _arg(node, 2, "stride"), _arg(node, 3, "padding", 0),
                               _arg(node, 4, "ceil_mode", False))  # fmt: skip
        params = dict(window, count_include_pad=bool(_arg(node, 5, "count_include_pad", True)),
                      divisor_override=_arg(node, 6, "divisor_override", None))  # fmt: skip
        return Pending("avg_pool2d", node.name, (x,), params)

    def op_adaptive_avg_pool2d(self, node: Any) -> Pending:
        x = self.float_input(node, node.args[0], "input")
        return Pending("adaptive_avg_pool2d", node.name, (x,), dict(output_size=_pair(node.args[1], 1)))

    def op_mean(self, node: Any) -> Pending:
        x = self.float_input(node, node.args[0], "input")
        dims = sorted(int(d) % 4 for d in _arg(node, 1, "dim"))
        keep = bool(_arg(node, 2, "keepdim", False))
        if x.rank != 4 or dims != [2, 3]:
            raise self.fail(node, f"mean is supported over H and W of an NCHW tensor only, got dims {dims}")
        return Pending(
            "adaptive_avg_pool2d", node.name, (x,), dict(output_size=(1, 1)), rank=4 if keep else 2
        )

    def op_flatten(self, node: Any) -> FloatOf:
        x = self.float_input(node, node.args[0], "input")
        start, end = int(_arg(node, 1, "start_dim", 0)), int(_arg(node, 2, "end_dim", -1))
        if x.rank == 2 and start in (1, -1) and end in (-1, 1):
            return FloatOf(x)
        if x.rank != 4 or start != 1 or end not in (-1, 3):
            raise self.fail(
                node,
                f"flatten({start}, {end}) of a rank-{x.rank} tensor: only flatten(x, 1) of NCHW is supported",
            )
        return FloatOf(self.flatten(node, x))

    def op_size(self, node: Any) -> tuple[str, Any]:
        # x.shape[i] of a dynamic dimension (the batch): a host-side size, read only by views.
        return ("size", node)

    def op_view(self, node: Any) -> FloatOf:
        x = self.float_input(node, node.args[0], "input")
        shape = [s if isinstance(s, int) else str(s) for s in node.args[1]]  # sizes: x.shape[i] nodes
        val = node.meta.get("val")
        n_in = _fake_value(node.args[0])
        if (
            len(shape) == 2
            and x.rank == 4
            and val is not None
            and n_in is not None
            and val.shape[0] == n_in.shape[0]
        ):
            return FloatOf(self.flatten(node, x))
        if val is not None and n_in is not None and list(val.shape) == list(n_in.shape):
            return FloatOf(x)
        raise self.fail(node, f"view/reshape to {shape}: only the flatten of NCHW to [N, C*H*W] is supported")

    def op_identity(self, node: Any) -> Any:
        if node.target.__name__.startswith("dropout") and _arg(node, 2, "train", False):
            raise self.fail(node, "dropout in training mode (export the model in eval mode)")
        return self.value(node, node.args[0])

    def flatten(self, node: Any, x: QVal) -> QVal:
        out = QVal(self.new_name(node.name), x.scale, x.zero_point, rank=2)
        self.steps.append(Step("flatten", FlattenOp(self.device), (x.name,), out.name, x.scale, x.zero_point,
                               rank=2, source=node.name))  # fmt: skip
        return out


_CatInput = TypeVar("_CatInput", bound=QVal | Pending)


def _cat_inputs(
    host: _Host, node: Any, input_of: Callable[[Any, Any, str], _CatInput]
) -> tuple[list[_CatInput], int]:
    """A cat's inputs (PT2E's and eager's), each `input_of(node, arg, "input i")`, and their rank,
    checked: at least one, one rank, along channels (dim 1)."""
    tensors = node.args[0]
    if not isinstance(tensors, list | tuple) or not tensors:
        raise host.fail(node, "cat of no tensors")
    parts = [input_of(node, t, f"input {i}") for i, t in enumerate(tensors)]
    rank = int(parts[0].rank)
    dim = int(_arg(node, 1, "dim", 0))
    if any(v.rank != rank for v in parts):
        raise host.fail(node, "cat of tensors of different ranks")
    if dim % rank != 1:
        raise host.fail(node, f"cat along dim {dim} of rank-{rank} tensors: only along channels (dim 1)")
    return parts, rank


class _ElementwiseOps(_Host):
    """add, cat, relu / relu6 fusion, hardtanh and the elementwise lookups."""

    def op_add(self, node: Any) -> Pending:
        a = self.float_input(node, node.args[0], "first input")
        b = self.float_input(node, node.args[1], "second input")
        if _arg(node, 2, "alpha", 1) != 1:
            raise self.fail(node, "add with alpha != 1 is not supported")
        if a.rank != b.rank:
            raise self.fail(node, "add of tensors of different ranks")
        return Pending("add", node.name, (a, b), rank=a.rank)

    def op_relu(self, node: Any) -> Pending:
        src = self.value(node, node.args[0])
        return self.fuse_activation(node, src, "relu")

    def op_hardtanh(self, node: Any) -> Pending:
        lo, hi = _hardtanh_bounds(node)
        if (lo, hi) == _RELU6_BOUNDS:
            return self.fuse_activation(node, self.value(node, node.args[0]), "relu6")
        params = dict(function="hardtanh", min_val=lo, max_val=hi)
        x = self.float_input_or_part(node, node.args[0], "input")  # a clamp commutes with quantizing
        return Pending("lookup", node.name, (), params, rank=x.rank, parts=(x,))

    def op_lookup(self, node: Any) -> Pending:
        """hardswish, hardsigmoid, sigmoid, tanh of a dequantized int8 tensor: a table (QLookup)
        once the quantize after it gives the output's parameters."""
        x = self.float_input(node, node.args[0], "input")
        function = node.target.name().split("::")[-1].rstrip("_")
        return Pending("lookup", node.name, (x,), dict(function=function), rank=x.rank)

    def op_cat(self, node: Any) -> Pending:
        """cat along channels of dequantized int8 tensors, or of float ops that only this cat
        reads (a quantizer that quantizes after the cat only): each such op becomes a step of its
        own quantized with the cat's output parameters (what the graph computes), then copied."""
        parts, rank = _cat_inputs(self, node, self.float_input_or_part)
        return Pending("cat", node.name, (), rank=rank, parts=tuple(parts))

    def fuse_activation(self, node: Any, src: Any, act: str) -> Pending:
        """relu / relu6 fused into the op it follows (a clamp of its quantized output, or the
        tables of a cat); after a dequantize (a quantizer that quantizes between the two), a
        requantizing step of its own (a table)."""
        if isinstance(src, FloatOf):
            return Pending("requantize", node.name, (src.q,), activation=act, rank=src.q.rank)
        fusable = ("conv2d", "linear", "add", "avg_pool2d", "adaptive_avg_pool2d", "requantize", "cat",
                   *RESAMPLE_KINDS)  # fmt: skip
        if not isinstance(src, Pending) or src.activation != "none" or src.kind not in fusable:
            raise self.fail(
                node, f"{act} must follow a conv2d, linear, add, average pool, cat or a dequantize"
            )
        src.activation = act
        return src


# The Pending kinds of _ResampleOps.
RESAMPLE_KINDS = ("upsample_nearest2d", "pixel_shuffle", "conv_transpose2d")


class _ResampleOps(_Host):
    """Nearest upsampling and pixel (un)shuffle (index maps: copies where the graph shares the
    qparams) and conv_transpose2d (q8ta_wgpu/resample.py)."""

    def index_map(self, node: Any, kind: str, params: dict[str, Any]) -> Pending:
        """An index map of a dequantized int8 tensor, or of a float op that only it reads (a
        quantizer that quantizes after the map only): that op becomes a step quantized with the
        map's output parameters, exactly what the graph computes (a map commutes with quantizing)."""
        x = self.float_input_or_part(node, node.args[0], "input")
        if x.rank != 4:
            raise self.fail(node, f"{kind} needs an NCHW input, got rank {x.rank}")
        return Pending(kind, node.name, (), params, parts=(x,))

    def op_upsample_nearest2d(self, node: Any) -> Pending:
        """.vec (output_size or scale_factors, as F.interpolate gives them) or .default (output_size,
        scales_h, scales_w)."""
        size = _arg(node, 1, "output_size")
        if "vec" in str(node.target):
            scales = _arg(node, 2, "scale_factors")
        else:
            sh, sw = _arg(node, 2, "scales_h"), _arg(node, 3, "scales_w")
            if (sh is None) != (sw is None):
                raise self.fail(node, "scales_h and scales_w must be given together")
            scales = None if sh is None else (sh, sw)
        if size is not None and not all(isinstance(v, int) for v in size):
            raise self.fail(node, f"output_size must be constant ints, got {size}")
        params = dict(size=None if size is None else tuple(size),
                      scale_factor=None if scales is None else tuple(float(v) for v in scales))  # fmt: skip
        return self.index_map(node, "upsample_nearest2d", params)

    def op_pixel_shuffle(self, node: Any) -> Pending:
        unshuffle = "unshuffle" in str(node.target)
        return self.index_map(node, "pixel_shuffle", dict(factor=int(node.args[1]), unshuffle=unshuffle))

    def op_conv_transpose2d(self, node: Any) -> Pending:
        """conv_transpose2d.input(x, weight, bias, stride, padding, output_padding, groups,
        dilation): weights per-channel along axis 1 (C_out/groups scales, the same in each group)."""
        x = self.float_input(node, node.args[0], "input")
        w, b = self.weight_and_bias(node, node.args[1], _arg(node, 2, "bias"), axis=1)
        if w.q.ndim != 4 or x.rank != 4:
            raise self.fail(
                node, f"conv_transpose2d needs a 4-D weight and input, got {w.q.shape}, rank {x.rank}"
            )
        params = _conv_transpose_params(
            w.q, w.scales, b, stride=_arg(node, 3, "stride", 1), padding=_arg(node, 4, "padding", 0),
            output_padding=_arg(node, 5, "output_padding", 0), groups=_arg(node, 6, "groups", 1),
            dilation=_arg(node, 7, "dilation", 1),
        )  # fmt: skip
        return Pending("conv_transpose2d", node.name, (x,), params)

    def resample_op(self, p: Pending, x: QVal, scale: float, zp: int) -> tuple[Any, str]:
        """The GPU op of a RESAMPLE_KINDS step reading x, quantized with (scale, zp), and its detail."""
        from . import resample

        prm = p.params
        quant: dict[str, Any] = dict(output_scale=scale, output_zero_point=zp, activation=p.activation)
        op: Any
        try:
            if p.kind == "conv_transpose2d":
                op = resample.QConvTranspose2d(prm["weight"], prm["weight_scales"], prm["bias"], input_scale=x.scale,
                                               input_zero_point=x.zero_point, device=self.device, **prm["options"],
                                               **quant)  # fmt: skip
                c_in, _, kh, kw = prm["weight"].shape
                (sh, _), (ph, _), (oph, _) = op.stride, op.padding, op.output_padding
                extra = (f" d{op.dilation[0]}" if op.dilation != (1, 1) else "") + (
                    f" g{op.groups}" if op.groups > 1 else ""
                )
                return op, f"{c_in}->{op.args.c_out} {kh}x{kw} s{sh} p{ph} op{oph}{extra}"
            quant.update(input_scale=x.scale, input_zero_point=x.zero_point)
            if p.kind == "upsample_nearest2d":
                resize = (prm["size"], prm["scale_factor"], prm.get("recompute"))
                op = resample.QUpsampleNearest2d(*resize, device=self.device, **quant)
                detail = f"size {prm['size']}" if prm["size"] else f"scale {prm['scale_factor']}"
            else:
                op = resample.QPixelShuffle(
                    prm["factor"], unshuffle=prm["unshuffle"], device=self.device, **quant
                )
                detail = ("unshuffle" if prm["unshuffle"] else "shuffle") + f" r{prm['factor']}"
        except (TypeError, ValueError) as e:
            raise UnsupportedError(f"node {p.node!r} ({p.kind}): {e}") from None
        return op, detail + (" copy" if op.copy else "")


class _Steps(_Host):
    """Pending ops made GPU steps, once the quantize after them gives their output parameters."""

    def make_step(self, p: Pending, out_name: str, scale: float, zp: int) -> QVal:
        from . import elementwise, ops

        out = QVal(out_name, scale, zp, p.rank)
        if p.parts:  # its float-op inputs first, quantized with its output's parameters
            p.inputs = tuple(
                v if isinstance(v, QVal) else self.make_step(v, self.new_name(v.node), scale, zp)
                for v in p.parts
            )
        x = p.inputs[0]
        src = p.node if p.node == out_name else f"{p.node} -> {out_name}"
        detail = ""
        op: Any
        if p.kind in ("conv2d", "linear"):
            w: Weight = p.params["weight"]
            wq = w.q if p.kind == "conv2d" else w.q.reshape(*w.q.shape, 1, 1)
            extra: dict[str, Any] = {
                k: p.params[k] for k in ("stride", "padding", "dilation", "groups") if k in p.params
            }
            try:
                conv = QConv2d(
                    wq,
                    w.scales,
                    p.params["bias"],
                    input_scale=x.scale,
                    input_zero_point=x.zero_point,
                    output_scale=scale,
                    output_zero_point=zp,
                    activation=p.activation,
                    device=self.device,
                    **extra,
                )
            except (TypeError, ValueError) as e:
                raise UnsupportedError(f"node {p.node!r} ({p.kind}): {e}") from None
            op = ConvOp(conv)
            c_out, cpg, kh, kw_ = wq.shape
            if p.kind == "conv2d":
                detail = (f"{cpg * conv.groups}->{c_out} {kh}x{kw_} s{conv.stride[0]} p{conv.padding[0]}"
                          + (f" d{conv.dilation[0]}" if conv.dilation != (1, 1) else "")
                          + (f" g{conv.groups}" if conv.groups > 1 else ""))  # fmt: skip
            else:
                detail = f"{cpg}->{c_out}"
        elif p.kind == "add":
            b = p.inputs[1]
            op = ops.QAdd(x.scale, x.zero_point, b.scale, b.zero_point, scale, zp, activation=p.activation,
                          device=self.device)  # fmt: skip
        elif p.kind == "max_pool2d":
            if (scale, zp) != (x.scale, x.zero_point):
                # Max commutes with the monotonic requantization: pool, then requantize.
                pooled = QVal(self.new_name(p.node), x.scale, x.zero_point)
                self.steps.append(Step("max_pool2d", ops.QMaxPool2d(device=self.device, **p.params), (x.name,),
                                       pooled.name, x.scale, x.zero_point, source=p.node))  # fmt: skip
                return self.make_step(Pending("requantize", p.node, (pooled,)), out_name, scale, zp)
            op = ops.QMaxPool2d(device=self.device, **p.params)
            detail = f"{p.params['kernel_size'][0]}x{p.params['kernel_size'][1]} s{p.params['stride'][0]} p{p.params['padding'][0]}"
        elif p.kind == "avg_pool2d":
            op = ops.QAvgPool2d(input_scale=x.scale, input_zero_point=x.zero_point, output_scale=scale,
                                output_zero_point=zp, activation=p.activation, device=self.device,
                                **p.params)  # fmt: skip
            detail = f"{p.params['kernel_size'][0]}x{p.params['kernel_size'][1]} s{p.params['stride'][0]}"
        elif p.kind == "adaptive_avg_pool2d":
            op = ops.QAdaptiveAvgPool2d(p.params["output_size"], input_scale=x.scale, input_zero_point=x.zero_point,
                                        output_scale=scale, output_zero_point=zp, activation=p.activation,
                                        device=self.device)  # fmt: skip
            detail = f"-> {p.params['output_size'][0]}x{p.params['output_size'][1]}"
        elif p.kind in ("requantize", "lookup"):  # elementwise: a table (any rank: [N, C, 1, 1])
            act = "identity" if p.activation == "none" else p.activation
            fn = p.params if p.kind == "lookup" else {"function": act}
            op = elementwise.QLookup(input_scale=x.scale, input_zero_point=x.zero_point, output_scale=scale,
                                     output_zero_point=zp, device=self.device, **fn)  # fmt: skip
            detail = fn["function"] if p.kind == "lookup" else ""
        elif p.kind in RESAMPLE_KINDS:
            op, detail = self.resample_op(p, x, scale, zp)
        elif p.kind == "cat":
            op = elementwise.QCat([v.scale for v in p.inputs], [v.zero_point for v in p.inputs], scale, zp,
                                  activation=p.activation, device=self.device)  # fmt: skip
            detail = f"{len(p.inputs)} inputs"
        else:  # pragma: no cover - every Pending kind is above
            raise UnsupportedError(f"node {p.node!r}: internal: no step for {p.kind}")
        if p.activation != "none":
            detail = f"{detail} {p.activation}".strip()
        in_names = tuple(v.name for v in p.inputs)
        self.steps.append(
            Step(p.kind, op, in_names, out.name, scale, zp, rank=p.rank, source=src, detail=detail)
        )
        return out


class _Importer(_Walk, _ConvOps, _PoolOps, _ElementwiseOps, _ResampleOps, _Steps):
    """A PT2E graph walked once into a GPU net (see the module doc)."""
