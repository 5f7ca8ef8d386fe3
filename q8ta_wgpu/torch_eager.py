"""torch.ao eager-converted models (fuse, prepare, calibrate, convert) made GPU nets, while torch
ships that flow: the modules torchvision's quantizable ResNet and MobileNetV2 hold after
conversion (Quantize, quantized Conv2d / ConvReLU2d, Linear / LinearReLU, QFunctional add /
add_relu, pools, flatten, Identity / Dropout, DeQuantize), and MobileNetV3's (hardswish, relu6,
sigmoid / hardsigmoid / tanh / hardtanh, QFunctional cat, torch.cat: torch_eager_elementwise.py).
The model is traced with torch.fx;
values are int8 tensors from the Quantize to the DeQuantize (quint8 activations are the same
reals as int8 with the zero point shifted by -128).
"""

from __future__ import annotations

import operator
from typing import Any

from .net import Net
from .runtime import Device, get_device
from .torch_eager_elementwise import _EagerElementwise
from .torch_eager_resample import _EagerResample
from .torch_import import (
    FloatOf,
    Pending,
    QVal,
    UnsupportedError,
    Weight,
    _conv_options,
    _Importer,
    _pair,
    _pool_options,
)
from .torch_interop import _shift_for, quantized_weight


def from_eager(model: Any, device: Device | None = None, *, fuse: bool = True) -> Net:
    """A GPU net running a torch.ao eager-converted model (see the module doc); `fuse` as
    `from_torch`'s."""
    import torch.fx

    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as e:  # noqa: BLE001 - tracing errors are many kinds; say which model failed
        raise UnsupportedError(
            f"{type(model).__name__} is neither a PT2E-converted graph (no quantize/dequantize nodes) nor "
            f"a torch.ao eager-converted model torch.fx can trace: {type(e).__name__}: {e}"
        ) from None
    return _EagerImporter(gm, get_device(device)).run(fuse=fuse)


class _EagerImporter(_EagerElementwise, _EagerResample, _Importer):
    shift = 0  # torch zero point - int8 zero point of every activation (128 for quint8)

    def visit(self, node: Any) -> Any:
        if node.name in self.fused:  # a clamp the op before it applies (fused_activation)
            return self.value(node, node.args[0])
        if node.op == "placeholder":
            return ("placeholder", node)
        if node.op == "get_attr":
            return super().visit(node)
        if node.op == "output":
            return super().visit(node)
        if node.op == "call_module":
            return self.module(node, self.gm.get_submodule(node.target))
        if node.op == "call_function":
            return self.function(node)
        if node.op == "call_method":
            return self.method(node)
        raise self.fail(node, "unsupported node kind")

    def qinput(self, node: Any, i: int = 0) -> QVal:
        return self.qinput_of(node, node.args[i], "input")

    def qinput_of(self, node: Any, arg: Any, what: str) -> QVal:
        """arg, an input of node, as the quantized tensor it must be (`what` names it in the error)."""
        v = self.value(node, arg)
        if not isinstance(v, QVal):
            raise self.fail(node, f"its {what} must be a quantized tensor, got {type(v).__name__}")
        return v

    def module(self, node: Any, mod: Any) -> Any:
        import torch
        import torch.ao.nn.intrinsic.quantized as nniq
        import torch.ao.nn.quantized as nnq

        name = f"module {node.target!r} ({type(mod).__name__})"
        if isinstance(mod, nnq.Quantize):
            src = self.value(node, node.args[0])
            if not (isinstance(src, tuple) and src[0] == "placeholder"):
                raise UnsupportedError(f"{name}: only the model's input may be quantized")
            if self.input is not None:
                raise UnsupportedError(f"{name}: the model quantizes more than one input")
            self.input = QVal(src[1].name, float(mod.scale), int(mod.zero_point) + _shift_for(mod.dtype))
            # Quantized ops give outputs of their input's dtype: every zero point shifts alike.
            self.shift = int(mod.zero_point) - self.input.zero_point
            return self.input
        if isinstance(mod, nnq.DeQuantize):
            return FloatOf(self.qinput(node))
        if isinstance(mod, torch.nn.Identity | torch.nn.Dropout):
            return self.value(node, node.args[0])
        x = self.qinput(node)
        if isinstance(mod, nnq.Conv2d):  # ConvReLU2d is a subclass
            if mod.padding_mode != "zeros":
                raise UnsupportedError(f"{name}: padding_mode {mod.padding_mode!r} (only zeros)")
            if self.input_channels is None and x is self.input:
                self.input_channels = int(mod.in_channels)
            act = self.fused_activation(node, own_relu=isinstance(mod, nniq.ConvReLU2d))
            options = _conv_options(mod.stride, mod.padding, mod.dilation, mod.groups)
            params = dict(weight=self.weight(mod, name), bias=self.bias(mod), **options)
            return self.out(Pending("conv2d", str(node.target), (x,), params, act), mod, node)
        if isinstance(mod, nnq.Linear):  # LinearReLU is a subclass
            act = self.fused_activation(node, own_relu=isinstance(mod, nniq.LinearReLU))
            if x.rank != 2:
                raise UnsupportedError(f"{name}: linear runs on [N, features] inputs (flatten first)")
            p = Pending(
                "linear",
                str(node.target),
                (x,),
                dict(weight=self.weight(mod, name), bias=self.bias(mod)),
                act,
                2,
            )
            return self.out(p, mod, node)
        if isinstance(mod, torch.nn.MaxPool2d):
            window = _pool_options(mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode)
            params = dict(window, dilation=_pair(mod.dilation, 1))
            return self.make_step(
                Pending("max_pool2d", str(node.target), (x,), params), node.name, x.scale, x.zero_point
            )
        if isinstance(mod, torch.nn.AdaptiveAvgPool2d):
            return self.adaptive(node, x, mod.output_size, str(node.target))
        if isinstance(mod, torch.nn.AvgPool2d):
            window = _pool_options(mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode)
            params = dict(
                window, count_include_pad=bool(mod.count_include_pad), divisor_override=mod.divisor_override
            )
            p = Pending("avg_pool2d", str(node.target), (x,), params)
            return self.make_step(p, node.name, x.scale, x.zero_point)
        if isinstance(mod, torch.nn.Flatten):
            if (mod.start_dim, mod.end_dim) != (1, -1):
                raise UnsupportedError(f"{name}: only Flatten(1, -1) is supported")
            return self.flatten(node, x) if x.rank == 4 else x
        if (q := self.activation(node, x)) is not None:
            return q
        if (q := self.resample_module(node, mod, x)) is not None:  # Upsample, PixelShuffle, ConvTranspose2d
            return q
        raise UnsupportedError(
            f"{name}: not supported by the GPU net (supported: Quantize, DeQuantize, quantized Conv2d / "
            "ConvReLU2d, Linear / LinearReLU, QFunctional add / add_relu / cat, quantized Hardswish / "
            "ReLU6 / Sigmoid, ReLU, ReLU6, Hardtanh, Sigmoid, Hardsigmoid, Tanh, MaxPool2d, AvgPool2d, "
            "AdaptiveAvgPool2d, Flatten, Identity, Dropout)"
        )

    def weight(self, mod: Any, name: str) -> Weight:
        try:
            return Weight(*quantized_weight(mod.weight()))
        except ValueError as e:
            raise UnsupportedError(f"{name}: {e}") from None

    @staticmethod
    def bias(mod: Any) -> Any:
        import numpy as np

        b = mod.bias()
        return None if b is None else b.detach().numpy().astype(np.float32)

    def out(self, p: Pending, mod: Any, node: Any) -> QVal:
        return self.make_step(p, node.name, float(mod.scale), int(mod.zero_point) - self.shift)

    def adaptive(self, node: Any, x: QVal, size: Any, src: str) -> QVal:
        out = _pair(size, 1)
        p = Pending("adaptive_avg_pool2d", src, (x,), dict(output_size=out))
        return self.make_step(p, node.name, x.scale, x.zero_point)

    def function(self, node: Any) -> Any:
        import torch
        import torch.nn.functional as F

        t = node.target
        if t in (torch.ops.quantized.add, torch.ops.quantized.add_relu):
            a, b = self.qinput(node, 0), self.qinput(node, 1)
            scale = float(
                self.scalar(node, node.kwargs.get("scale", node.args[2] if len(node.args) > 2 else None))
            )
            zp = int(
                self.scalar(node, node.kwargs.get("zero_point", node.args[3] if len(node.args) > 3 else None))
            )
            act = self.fused_activation(node, own_relu=t is torch.ops.quantized.add_relu)
            return self.make_step(Pending("add", node.name, (a, b), activation=act, rank=a.rank), node.name,
                                  scale, zp - self.shift)  # fmt: skip
        if t is torch.flatten:
            x = self.qinput(node)
            start = int(node.args[1]) if len(node.args) > 1 else int(node.kwargs.get("start_dim", 0))
            if start != 1:
                raise self.fail(node, "only torch.flatten(x, 1) is supported")
            return self.flatten(node, x) if x.rank == 4 else x
        if t is F.adaptive_avg_pool2d:
            x = self.qinput(node)
            return self.adaptive(
                node, x, node.args[1] if len(node.args) > 1 else node.kwargs["output_size"], node.name
            )
        if t is F.dropout:
            return self.value(node, node.args[0])
        if t is operator.getitem or t is getattr:
            raise self.fail(node, "indexing or attribute access on a tensor is not supported")
        if t in (torch.ops.quantized.cat, torch.cat):
            return self.cat(node)
        if (q := self.activation(node)) is not None:
            return q
        if (q := self.resample_function(node)) is not None:  # interpolate, pixel_(un)shuffle
            return q
        raise self.fail(
            node,
            "this function is not supported by the GPU net (supported: quantized add / add_relu / cat, "
            "torch.cat along channels, torch.flatten, relu, relu6, hardtanh, sigmoid, hardsigmoid, "
            "tanh, adaptive_avg_pool2d, dropout)",
        )

    def method(self, node: Any) -> Any:
        m = node.target
        if m in ("contiguous", "clone"):
            return self.value(node, node.args[0])
        if m == "size":
            return ("size", node)
        if m in ("flatten",):
            x = self.qinput(node)
            return self.flatten(node, x) if x.rank == 4 else x
        if m in ("view", "reshape"):
            x = self.qinput(node)
            shape = node.args[1:]
            if len(shape) == 1 and isinstance(shape[0], list | tuple):
                shape = tuple(shape[0])
            if len(shape) == 2 and shape[-1] == -1 and x.rank == 4:
                return self.flatten(node, x)
            raise self.fail(node, f"{m}{tuple(shape)}: only the flatten to [N, -1] is supported")
        if (q := self.activation(node)) is not None:
            return q
        raise self.fail(node, f"tensor method {m!r} is not supported by the GPU net")
