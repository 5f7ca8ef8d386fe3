"""The elementwise ops and concatenations of a torch.ao eager-converted model, mixed into
`torch_eager._EagerImporter`, each mapped onto the existing steps (`elementwise.QLookup`,
`elementwise.QCat`, a conv's / linear's / add's / cat's fused clamp):

- torch.ao.nn.quantized.Hardswish (what convert makes of nn.Hardswish): a table into its own
  scale and zero point; torch.ao.nn.quantized.Sigmoid likewise;
- nn.Sigmoid / nn.Hardsigmoid / nn.Tanh (left as they are by convert) and torch.sigmoid,
  torch.tanh, F.sigmoid, F.tanh, F.hardsigmoid, x.sigmoid(), x.tanh(): torch's quantized kernels
  give fixed output parameters (sigmoid, hardsigmoid: scale 1/256, int8 zero point -128; tanh:
  scale 1/128, zero point 0, for quint8 and qint8 alike): a table;
- relu / relu6 (nn.ReLU, nn.ReLU6, torch.ao.nn.quantized.ReLU6, nn.Hardtanh(0, 6), torch.relu,
  F.relu, F.relu6, F.hardtanh(x, 0, 6), x.relu()): torch clamps the int8 values, output parameters
  the input's, which commutes with quantizing: fused as the clamp of the conv / linear / add / cat
  before it when that op's output is read by the clamp only, else a table; any other hardtanh
  (nn.Hardtanh, F.hardtanh) a table too;
- QFunctional.cat (torch.ops.quantized.cat: the FloatFunctional's scale and zero point) and
  torch.cat of quantized tensors (torch requantizes every input to the first input's parameters):
  a QCat along channels.

The tables of hardswish, hardsigmoid, sigmoid and tanh compute what torch's kernels of the engine
selected at import (torch.backends.quantized.engine) compute (`reference.LookupOptions`
torch_kernel): x86 / fbgemm / onednn dequantize with an fma; QNNPACK's quint8 tables add the zero
point before rounding. Exact on every table entry measured but x86's sigmoid (its SLEEF exp).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .torch_import import Pending, QVal, _arg, _cat_inputs, _Host

# The functions whose tables follow torch's quantized kernels (reference.LookupOptions torch_kernel).
_KERNEL_FUNCTIONS = ("hardswish", "hardsigmoid", "sigmoid", "tanh")
# (scale, int8 zero point) of the quantized kernels' outputs that ignore the input's parameters.
_FIXED_QPARAMS = {"sigmoid": (1.0 / 256, -128), "hardsigmoid": (1.0 / 256, -128), "tanh": (1.0 / 128, 0)}


class _EagerElementwise(_Host):
    """Activations and concatenations of the eager importer (see the module doc)."""

    gm: Any
    shift: int  # torch zero point - int8 zero point (128 for quint8)
    fused: set[str]  # clamp nodes already applied by the op before them

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fused = set()

    if TYPE_CHECKING:

        def qinput(self, node: Any, i: int = 0) -> QVal: ...
        def qinput_of(self, node: Any, arg: Any, what: str) -> QVal: ...
        def scalar(self, node: Any, arg: Any) -> Any: ...

    # -- relu / relu6 --
    def clamp_of(self, node: Any) -> str | None:
        """The clamp "relu" or "relu6" when node is torch's clamp of a quantized tensor to [0, inf) or
        [0, 6] (output parameters its input's), else None."""
        import torch
        import torch.ao.nn.quantized as nnq
        import torch.nn.functional as F

        if node.op == "call_module":
            mod = self.gm.get_submodule(node.target)
            if isinstance(mod, nnq.ReLU6 | torch.nn.ReLU6):  # nnq.ReLU6 subclasses nn.ReLU
                return "relu6"
            if isinstance(mod, torch.nn.ReLU):
                return "relu"
            if isinstance(mod, torch.nn.Hardtanh) and (mod.min_val, mod.max_val) == (0.0, 6.0):
                return "relu6"
        elif node.op == "call_function":
            if node.target in (torch.relu, torch.relu_, F.relu):
                return "relu"
            if node.target is F.relu6 or (node.target is F.hardtanh and self._bounds(node) == (0.0, 6.0)):
                return "relu6"
        elif node.op == "call_method" and node.target in ("relu", "relu_"):
            return "relu"
        return None

    @staticmethod
    def _bounds(node: Any) -> tuple[float, float]:
        return float(_arg(node, 1, "min_val", -1.0)), float(_arg(node, 2, "max_val", 1.0))

    def fused_activation(self, node: Any) -> str:
        """The clamp (relu / relu6) that alone reads node's output (through Identity / Dropout
        modules, contiguous / clone), fused into node's op, which quantizes the clamped value;
        "none" if there is none."""
        import torch

        user = node
        while True:
            users = list(user.users)
            if len(users) != 1 or users[0].args[:1] != (user,):
                return "none"
            user = users[0]
            through = (user.op == "call_method" and user.target in ("contiguous", "clone")) or (
                user.op == "call_module"
                and isinstance(self.gm.get_submodule(user.target), torch.nn.Identity | torch.nn.Dropout)
            )
            if not through:
                break
        act = self.clamp_of(user)
        if act is None:
            return "none"
        self.fused.add(user.name)
        return act

    # -- tables --
    def table(self, node: Any, x: QVal, function: str, scale: float, zp: int, **bounds: float) -> QVal:
        """A QLookup step of `function` from x's parameters to (scale, int8 zp)."""
        import torch

        params: dict[str, Any] = {"function": function, **bounds}
        if function in _KERNEL_FUNCTIONS:  # QNNPACK's own tables for quint8, else x86's kernels
            qnnpack = torch.backends.quantized.engine == "qnnpack" and self.shift == 128
            params["torch_kernel"] = "qnnpack" if qnnpack else ("x86_quint8" if self.shift else "x86_qint8")
        return self.make_step(Pending("lookup", node.name, (x,), params, rank=x.rank), node.name, scale, zp)

    def fixed(self, node: Any, x: QVal, function: str) -> QVal:
        return self.table(node, x, function, *_FIXED_QPARAMS[function])

    def activation_module(self, node: Any, mod: Any, x: QVal) -> QVal | None:
        """The step of an activation module reading x, or None if mod is none."""
        import torch
        import torch.ao.nn.quantized as nnq

        if isinstance(mod, nnq.Hardswish | nnq.Sigmoid):  # their own output parameters
            hardswish = isinstance(mod, nnq.Hardswish)
            scale = self.scalar(node, mod.scale if hardswish else mod.output_scale)
            zp = self.scalar(node, mod.zero_point if hardswish else mod.output_zero_point)
            return self.table(
                node, x, "hardswish" if hardswish else "sigmoid", float(scale), int(zp) - self.shift
            )
        for cls, function in ((torch.nn.Sigmoid, "sigmoid"), (torch.nn.Hardsigmoid, "hardsigmoid"), (torch.nn.Tanh, "tanh")):  # fmt: skip
            if isinstance(mod, cls):
                return self.fixed(node, x, function)
        act = self.clamp_of(node)
        if act is not None:  # not fused: the op before it has other readers, or cannot clamp
            return self.table(node, x, act, x.scale, x.zero_point)
        if isinstance(mod, torch.nn.Hardtanh):
            return self.table(
                node, x, "hardtanh", x.scale, x.zero_point, min_val=mod.min_val, max_val=mod.max_val
            )
        return None

    def activation_function(self, node: Any) -> QVal | None:
        """The step of an activation function or method (or a cat) of quantized tensors, or
        None if node is none."""
        import torch
        import torch.nn.functional as F

        t = node.target
        if t in (torch.ops.quantized.cat, torch.cat):
            return self.cat(node)
        # (F.sigmoid and F.tanh trace as the tensor methods "sigmoid" and "tanh".)
        fixed = {torch.sigmoid: "sigmoid", "sigmoid": "sigmoid", torch.tanh: "tanh", "tanh": "tanh",
                 F.hardsigmoid: "hardsigmoid"}  # fmt: skip
        if t in fixed:
            return self.fixed(node, self.qinput(node), fixed[t])
        act = self.clamp_of(node)
        if act is not None:
            x = self.qinput(node)
            return self.table(node, x, act, x.scale, x.zero_point)
        if t is F.hardtanh:
            x = self.qinput(node)
            lo, hi = self._bounds(node)
            return self.table(node, x, "hardtanh", x.scale, x.zero_point, min_val=lo, max_val=hi)
        return None

    # -- cat --
    def cat(self, node: Any) -> QVal:
        """QFunctional.cat (quantized.cat: its own output parameters, default the first
        input's) or torch.cat of quantized tensors (the first input's), along channels."""
        import torch

        xs, rank = _cat_inputs(self, node, self.qinput_of)
        scale, zp = xs[0].scale, xs[0].zero_point
        if node.target is torch.ops.quantized.cat:
            s, z = _arg(node, 2, "scale"), _arg(node, 3, "zero_point")
            scale = scale if s is None else float(self.scalar(node, s))
            zp = zp if z is None else int(self.scalar(node, z)) - self.shift
        act = self.fused_activation(node)
        return self.make_step(
            Pending("cat", node.name, tuple(xs), activation=act, rank=rank), node.name, scale, zp
        )
