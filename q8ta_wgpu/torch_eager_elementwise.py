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

from .torch_import import _RELU6_BOUNDS, Pending, QVal, _arg, _cat_inputs, _hardtanh_bounds, _Host

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

        if self.hardtanh_bounds(node) == _RELU6_BOUNDS:  # nn.ReLU6, nn.Hardtanh(0, 6), F.hardtanh(x, 0, 6)
            return "relu6"
        if node.op == "call_module":
            mod = self.gm.get_submodule(node.target)
            if isinstance(mod, nnq.ReLU6):  # a subclass of nn.ReLU
                return "relu6"
            if isinstance(mod, torch.nn.ReLU):
                return "relu"
        elif node.op == "call_function":
            if node.target in (torch.relu, torch.relu_, F.relu):
                return "relu"
            if node.target is F.relu6:
                return "relu6"
        elif node.op == "call_method" and node.target in ("relu", "relu_"):
            return "relu"
        return None

    def hardtanh_bounds(self, node: Any) -> tuple[float, float] | None:
        """(min_val, max_val) when node is nn.Hardtanh (nn.ReLU6 is one) or F.hardtanh, else None."""
        import torch
        import torch.nn.functional as F

        if node.op == "call_module":
            mod = self.gm.get_submodule(node.target)
            return (float(mod.min_val), float(mod.max_val)) if isinstance(mod, torch.nn.Hardtanh) else None
        if node.op == "call_function" and node.target is F.hardtanh:
            return _hardtanh_bounds(node)
        return None

    def fused_activation(self, node: Any, own_relu: bool = False) -> str:
        """The clamp node's op applies to the value it quantizes: "relu" where the op has its own
        (`own_relu`: ConvReLU2d, LinearReLU, add_relu; a clamp after it stays a step), else the
        clamp (relu / relu6) that alone reads node's output (through Identity / Dropout modules,
        contiguous / clone); "none" if there is none."""
        import torch

        if own_relu:
            return "relu"
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

    def fixed_function_of(self, node: Any) -> str | None:
        """The table's function when node is an activation whose quantized kernel gives fixed output
        parameters (_FIXED_QPARAMS; nn.Sigmoid, nn.Hardsigmoid, nn.Tanh, torch.sigmoid, torch.tanh,
        F.hardsigmoid, x.sigmoid(), x.tanh()), else None."""
        import torch
        import torch.nn.functional as F

        if node.op == "call_module":
            mod = self.gm.get_submodule(node.target)
            classes = (
                (torch.nn.Sigmoid, "sigmoid"),
                (torch.nn.Hardsigmoid, "hardsigmoid"),
                (torch.nn.Tanh, "tanh"),
            )
            return next((function for cls, function in classes if isinstance(mod, cls)), None)
        if node.op == "call_function":
            return {torch.sigmoid: "sigmoid", torch.tanh: "tanh", F.hardsigmoid: "hardsigmoid"}.get(
                node.target
            )
        if node.op == "call_method" and node.target in ("sigmoid", "tanh"):  # F.sigmoid and F.tanh trace so
            return str(node.target)
        return None

    def table_of(self, node: Any) -> tuple[dict[str, Any], tuple[float, int] | None] | None:
        """The table of an activation node (module, function or tensor method): its function (and
        bounds), and its output's (scale, int8 zero point), None for its input's (a clamp); None
        if node is none."""
        import torch.ao.nn.quantized as nnq

        mod = self.gm.get_submodule(node.target) if node.op == "call_module" else None
        if isinstance(mod, nnq.Hardswish | nnq.Sigmoid):  # their own output parameters
            hardswish = isinstance(mod, nnq.Hardswish)
            scale = self.scalar(node, mod.scale if hardswish else mod.output_scale)
            zp = self.scalar(node, mod.zero_point if hardswish else mod.output_zero_point)
            return {"function": "hardswish" if hardswish else "sigmoid"}, (float(scale), int(zp) - self.shift)
        function = self.fixed_function_of(node)
        if function is not None:
            return {"function": function}, _FIXED_QPARAMS[function]
        act = self.clamp_of(node)
        if act is not None:  # not fused: the op before it has other readers, or cannot clamp
            return {"function": act}, None
        bounds = self.hardtanh_bounds(node)
        if bounds is not None:
            return {"function": "hardtanh", "min_val": bounds[0], "max_val": bounds[1]}, None
        return None

    def activation(self, node: Any, x: QVal | None = None) -> QVal | None:
        """The table step (table_of) of an activation node reading x (None: node's first
        argument), or None if node is none."""
        table = self.table_of(node)
        if table is None:
            return None
        params, qparams = table
        x = self.qinput(node) if x is None else x
        scale, zp = (x.scale, x.zero_point) if qparams is None else qparams
        return self.table(node, x, scale=scale, zp=zp, **params)

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
