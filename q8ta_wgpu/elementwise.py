"""Elementwise int8 ops by table, and the channel concatenation, on the GPU.

Any elementwise function of a per-tensor quantized int8 tensor into another is exactly a table
of 256 int8 outputs, one per input value: `QLookup` computes it on the host as PyTorch's Q/DQ
graph computes the function (dequantize in float32, the float op, quantize_per_tensor:
`q8ta_wgpu.reference.lookup` of `reference.INT8_VALUES`) and applies it with one kernel
(kernels/lut_q8.wgsl): hardswish, hardsigmoid, sigmoid, tanh, relu, relu6, hardtanh, and
"identity" (a requantization).

`QCat` concatenates int8 tensors along channels (torch.cat(dim=1)), each input with its own
scale and zero point, requantized to the output's by the same kind of table (or copied when the
parameters are equal): one dispatch per input writing its channel slice (kernels/cat_q8.wgsl),
slices at any channel offset (4W4C packs 4 channels a word: a word shared by two inputs is
written by the first and completed by the next).

Both follow the op protocol of ops.py: `output_shape(*input_shapes)`, `passes(inputs, out)` (the
passes writing a preallocated output QTensor in any layout) and `__call__` (QTensors -> a new
4W4C QTensor; numpy int8 NCHW -> numpy int8). `lookup`, `hardswish` and `cat` wrap them with
torch's argument names. The numpy references: `q8ta_wgpu.reference.lookup` and `.cat`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Unpack

import numpy as np

from . import reference
from ._checks import check_activation, check_int8_array, check_keywords, check_scale, check_zero_point
from .conv import QTensor, TensorT
from .ops import _check_out, _check_quant, _inputs, _new_output, _quant_of, _tensor, _UnaryOp, _word_pass
from .pooling import checked_requantization, input_shape4
from .reference import INT8_VALUES, LOOKUP_DEFAULTS, LookupOptions, _cat_quant, check_lookup_function
from .runtime import Device, Pass, get_device
from .uniforms import CAT_PARAMS

__all__ = ["QCat", "QLookup", "cat", "hardswish", "lookup"]

Shape4 = tuple[int, int, int, int]


# ---- an elementwise function by table ---------------------------------------------------------
class QLookup(_UnaryOp):
    """An elementwise function of an int8 tensor, PT2E float path, exactly: out =
    quantize(function(dequantize(x))) as a 256-entry table (`table`, int8 [256]: entry i is the
    output for the input value i - 128) computed on the host by `q8ta_wgpu.reference.lookup` of
    `reference.INT8_VALUES` and applied on the GPU (kernels/lut_q8.wgsl), which adds no rounding
    of its own.

    Args:
        function: one of `q8ta_wgpu.reference.LOOKUP_FUNCTIONS`: "hardswish", "hardsigmoid",
            "sigmoid", "tanh", "relu", "relu6", "hardtanh" (with min_val, max_val) or "identity"
            (a requantization from the input's parameters to the output's).
        device: a q8ta_wgpu.Device (default: the process-wide one).
        options: `q8ta_wgpu.reference.LookupOptions`: the input's and the output's quantization
            (required), hardtanh's min_val and max_val.

    hardswish, hardsigmoid, relu, relu6 and hardtanh are bit for bit PyTorch's; sigmoid and tanh
    PyTorch computes with SLEEF, whose float32 result may differ in its last bit (at most 1 LSB
    where that crosses a rounding boundary; none found on the tested grid).
    """

    def __init__(
        self, function: str, *, device: Device | None = None, **options: Unpack[LookupOptions]
    ) -> None:
        check_keywords("QLookup.__init__", options, LookupOptions)
        opts = {**LOOKUP_DEFAULTS, **options}
        self.function, self.min_val, self.max_val = check_lookup_function(
            function, opts["min_val"], opts["max_val"]
        )
        self.input_scale, self.input_zero_point, self.output_scale, self.output_zero_point = (
            checked_requantization(opts)
        )
        self.table = reference.lookup(INT8_VALUES, function, **options)
        self.device = get_device(device)
        self._table = self.device.upload(self.table, label=f"{self.function} table")

    def __repr__(self) -> str:
        bounds = f"({self.min_val}, {self.max_val})" if self.function == "hardtanh" else ""
        return (
            f"QLookup({self.function}{bounds}, in=({self.input_scale}, {self.input_zero_point}), "
            f"out=({self.output_scale}, {self.output_zero_point}))"
        )

    def output_shape(self, input_shape: Sequence[int]) -> Shape4:
        return input_shape4("x", input_shape)

    def passes(self, inputs: Sequence[QTensor], out: QTensor) -> list[Pass]:
        """The pass computing out = table[x] from inputs (x,) into `out` (its shape, scale and
        zero point as this op's output; any layout)."""
        (x,) = _inputs(inputs, 1, ("x",))
        dev = self.device
        x_bind, xd = _tensor(dev, "x", x)
        _check_quant("x", x, self.input_scale, self.input_zero_point, "input")
        shape = self.output_shape(x.shape)
        _check_out(out, (x,), shape, self.output_scale, self.output_zero_point, "output")
        o_bind, od = _tensor(dev, "out", out)
        kernel, extra, label = self._gather(input_shape4("x", x.shape))
        res = {"x": x_bind, "o": o_bind, "xd": xd, "od": od, "table": (self._table, 0, 256), **extra}
        return [_word_pass(dev, kernel, (shape, out.layout), res, label)]

    def _gather(self, x_shape: Shape4) -> tuple[str, dict[str, Any], str]:
        """The kernel, its resources besides x, o, xd, od and table, and the pass's label for an
        input of x_shape: the table alone here; resample.py's index maps gather first."""
        return "lut_q8.wgsl", {}, self.function


# ---- cat along channels -----------------------------------------------------------------------
class QCat:
    """torch.cat(tensors, dim=1) of int8 tensors [N, C_k, H, W], PT2E float path, exactly: out =
    quantize(cat(dequantize(x_k))) with each input's own scale and zero point and the output's,
    as one 256-entry table per input (`tables[k]`: reference.lookup(INT8_VALUES, "identity",
    ...), or relu / relu6 with `activation`); an input whose table is the identity (equal
    parameters, no activation) is copied. `q8ta_wgpu.reference.cat` is the numpy reference.

    Args:
        input_scales, input_zero_points: one per input, in order.
        output_scale, output_zero_point: the output's quantization.
        activation: "none", "relu" or "relu6", applied to the float values before quantizing.
        device: a q8ta_wgpu.Device (default: the process-wide one).

    One dispatch per input (kernels/cat_q8.wgsl), in input order, each writing the output words
    that hold its channels; any channel counts (a word shared by two inputs, where an offset is
    not a multiple of 4, is completed by the later dispatch).
    """

    def __init__(
        self,
        input_scales: Sequence[float],
        input_zero_points: Sequence[int],
        output_scale: float,
        output_zero_point: int,
        activation: str = "none",
        device: Device | None = None,
    ) -> None:
        count = len(input_scales) if hasattr(input_scales, "__len__") else 0
        scales, zps = _cat_quant(count, input_scales, input_zero_points)
        if not scales:
            raise ValueError("input_scales must have one entry per input; a cat needs at least one input")
        self.input_scales, self.input_zero_points = tuple(scales), tuple(zps)
        self.output_scale = check_scale("output_scale", output_scale)
        self.output_zero_point = check_zero_point("output_zero_point", output_zero_point)
        self.activation = check_activation(activation)
        fn = "identity" if activation == "none" else activation
        self.tables = np.stack([
            reference.lookup(INT8_VALUES, fn, input_scale=s, input_zero_point=z, output_scale=output_scale,
                             output_zero_point=output_zero_point)
            for s, z in zip(input_scales, zps, strict=True)  # the scales as given, as torch takes them
        ])  # fmt: skip
        self.copy = tuple(bool(np.array_equal(t, INT8_VALUES)) for t in self.tables)
        self.device = get_device(device)
        self._tables = self.device.upload(self.tables, label="cat tables")  # 256 bytes each

    def __repr__(self) -> str:
        ins = ", ".join(f"({s}, {z})" for s, z in zip(self.input_scales, self.input_zero_points, strict=True))
        return (
            f"QCat(inputs=[{ins}], out=({self.output_scale}, {self.output_zero_point}), "
            f"activation={self.activation!r})"
        )

    def output_shape(self, *input_shapes: Sequence[int]) -> Shape4:
        """[N, sum of C_k, H, W]: every input has this op's input count and the same N, H, W."""
        k = len(self.input_scales)
        if len(input_shapes) != k:
            raise ValueError(f"cat of {len(input_shapes)} inputs; this op was made for {k} (input_scales)")
        shapes = [input_shape4(f"inputs[{i}]", s) for i, s in enumerate(input_shapes)]
        n, _, h, w = shapes[0]
        for i, (ni, _, hi, wi) in enumerate(shapes):
            if (ni, hi, wi) != (n, h, w):
                raise ValueError(
                    f"inputs[{i}] has shape {shapes[i]}; a cat along channels needs the N, H, W of "
                    f"inputs[0] {shapes[0]}"
                )
        return (n, sum(s[1] for s in shapes), h, w)

    def passes(self, inputs: Sequence[QTensor], out: QTensor) -> list[Pass]:
        """One pass per input writing its channel slice of `out` (its shape, scale and zero point
        as this op's output; any layout), in input order."""
        names = tuple(f"inputs[{k}]" for k in range(len(self.input_scales)))
        inputs = _inputs(inputs, len(names), names)
        dev = self.device
        bound = [_tensor(dev, f"inputs[{k}]", x) for k, x in enumerate(inputs)]
        shape = self.output_shape(*(t.shape for t in inputs))
        _check_out(out, inputs, shape, self.output_scale, self.output_zero_point, "output")
        o_bind, od = _tensor(dev, "out", out)
        n, _, h, w = shape
        passes, c_off = [], 0
        for k, (x, (x_bind, xd)) in enumerate(zip(inputs, bound, strict=True)):
            expected = (f"input_scales[{k}]", f"input_zero_points[{k}]")
            _check_quant(names[k], x, self.input_scales[k], self.input_zero_points[k], expected)
            c_in = x.shape[1]
            c4_count = (c_off + c_in + 3) // 4 - c_off // 4
            params = CAT_PARAMS.pack(c_off=c_off, c4_count=c4_count, copy=int(self.copy[k]))
            res = {"x": x_bind, "o": o_bind, "xd": xd, "od": od, "table": (self._tables, 256 * k, 256),
                   "p": dev.uniform(params)}  # fmt: skip
            passes.append(_word_pass(dev, "cat_q8.wgsl", ((n, 4 * c4_count, h, w), out.layout), res, "cat"))
            c_off += c_in
        return passes

    def __call__(self, tensors: Sequence[TensorT]) -> TensorT:
        """QTensors -> a new 4W4C QTensor on the GPU; numpy int8 NCHW arrays -> numpy int8."""
        dev = self.device
        if isinstance(tensors, (np.ndarray, QTensor)) or not isinstance(tensors, (list, tuple)):
            raise TypeError("tensors must be a list or tuple of QTensors or of numpy int8 arrays")
        qts = [t for t in tensors if isinstance(t, QTensor)]
        if qts and len(qts) != len(tensors):
            raise TypeError("tensors must be all QTensors or all numpy arrays")
        if not qts:
            arrs = [check_int8_array(f"tensors[{i}]", t, ndim=4) for i, t in enumerate(tensors)]
            self.output_shape(*(a.shape for a in arrs))
            quants = zip(arrs, self.input_scales, self.input_zero_points, strict=True)
            qts = [QTensor.from_numpy(a, s, z, device=dev) for a, s, z in quants]
        shape = self.output_shape(*(t.shape for t in qts))
        with dev.lock:
            out = _new_output(dev, shape, self.output_scale, self.output_zero_point)
            dev.run(self.passes(qts, out))
        first: TensorT = tensors[0]  # (output_shape refused an empty list)
        if isinstance(first, QTensor):
            return out
        return out.numpy()


# ---- functions with torch's argument names ----------------------------------------------------
def lookup(
    x: TensorT,
    function: str,
    *,
    output_scale: float,
    output_zero_point: int,
    input_scale: float | None = None,
    input_zero_point: int | None = None,
    min_val: float = -1.0,
    max_val: float = 1.0,
    device: Device | None = None,
) -> TensorT:
    """An elementwise function by table (see QLookup). A QTensor x gives its scale and zero point
    when input_scale / input_zero_point are None (and a QTensor comes back); a numpy int8 x
    needs them (and numpy comes back)."""
    s_in, zp_in = _quant_of("input", x, input_scale, input_zero_point)
    if device is None and isinstance(x, QTensor):
        device = x.device
    op = QLookup(
        function, input_scale=s_in, input_zero_point=zp_in, output_scale=output_scale,
        output_zero_point=output_zero_point, min_val=min_val, max_val=max_val, device=device,
    )  # fmt: skip
    return op(x)


def hardswish(
    x: TensorT,
    *,
    output_scale: float,
    output_zero_point: int,
    input_scale: float | None = None,
    input_zero_point: int | None = None,
    device: Device | None = None,
) -> TensorT:
    """torch.nn.functional.hardswish of an int8 tensor: `lookup(x, "hardswish", ...)`."""
    return lookup(x, "hardswish", output_scale=output_scale, output_zero_point=output_zero_point,
                  input_scale=input_scale, input_zero_point=input_zero_point, device=device)  # fmt: skip


def cat(
    tensors: Sequence[TensorT],
    dim: int = 1,
    *,
    output_scale: float,
    output_zero_point: int,
    input_scales: Sequence[float] | None = None,
    input_zero_points: Sequence[int] | None = None,
    activation: str = "none",
    device: Device | None = None,
) -> TensorT:
    """torch.cat(tensors, dim) of int8 NCHW tensors (see QCat): dim must be 1 (or -3), the
    channels. QTensors give their own scales and zero points when input_scales /
    input_zero_points are None; numpy int8 arrays need them."""
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"dim must be an int, got {dim!r}")
    if dim not in (1, -3):
        raise ValueError(f"dim must be 1 (the channels of NCHW tensors; or -3), got {dim}")
    if isinstance(tensors, (np.ndarray, QTensor)) or not isinstance(tensors, (list, tuple)) or not tensors:
        raise TypeError("tensors must be a non-empty list or tuple of QTensors or of numpy int8 arrays")
    if input_scales is None or input_zero_points is None:
        qts = [t for t in tensors if isinstance(t, QTensor)]
        if len(qts) != len(tensors):
            raise TypeError("input_scales and input_zero_points are required for numpy inputs")
        input_scales = [t.scale for t in qts] if input_scales is None else input_scales
        input_zero_points = [t.zero_point for t in qts] if input_zero_points is None else input_zero_points
    first = tensors[0]
    if device is None and isinstance(first, QTensor):
        device = first.device
    op = QCat(input_scales, input_zero_points, output_scale, output_zero_point, activation, device=device)
    return op(tensors)
