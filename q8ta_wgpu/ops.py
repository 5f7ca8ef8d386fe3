"""The non-conv ops of a quantized CNN on the GPU: add (with fused relu), max_pool2d, avg_pool2d,
adaptive_avg_pool2d, and float32 -> int8 quantization into a packed layout.

Semantics: PyTorch 2 export quantization's float path (each op on dequantized float32 values,
then quantize_per_tensor); the numpy references are `q8ta_wgpu.reference.add`, `.max_pool2d`,
`.avg_pool2d`, `.adaptive_avg_pool2d` and `.quantize_per_tensor`. One kernel each
(kernels/add_q8.wgsl, maxpool.wgsl, avgpool.wgsl, quantize_pack.wgsl): one thread per output
word (4 channels of one pixel), inputs and output in any packed layout, each described by its own
TensorDesc (whose zero point is the tensor's), so every padding slot of the output holds the
output's zero point.

Each op class has `output_shape(*input_shapes)`, `passes(inputs, out)` (the GPU passes computing
the op from input QTensors into a preallocated output QTensor: what a network runner records;
nothing is allocated but cached uniforms, nothing submitted) and a convenience `__call__`
(QTensors -> a new 4W4C QTensor; numpy int8 NCHW -> numpy int8). The functions `add`,
`max_pool2d`, `avg_pool2d`, `adaptive_avg_pool2d` wrap them with torch's argument names.
Tensors must fit one storage binding each (max-storage-buffer-binding-size).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Unpack

import numpy as np

from ._checks import (
    check_activation,
    check_int8_array,
    check_keywords,
    check_scale,
    check_zero_point,
    real_array,
)
from .conv import QTensor, TensorT
from .layouts import check_layout, packed_words, tensor_desc
from .planner import Residual
from .pooling import (
    AvgPoolOptions,
    PoolWindow,
    adaptive_output_hw,
    adaptive_windows,
    check_bool,
    check_divisor_override,
    check_window_taps,
    checked_activation,
    checked_requantization,
    input_shape4,
)
from .quant import AddRequant, PoolRequant, activation_bounds
from .reference import inv_scale
from .runtime import Device, Pass, get_device
from .uniforms import ADD_PARAMS, POOL_PARAMS, QUANTIZE_PARAMS

__all__ = [
    "QAdaptiveAvgPool2d",
    "QAdd",
    "QAvgPool2d",
    "QMaxPool2d",
    "adaptive_avg_pool2d",
    "add",
    "avg_pool2d",
    "max_pool2d",
    "quantize_pass",
    "quantize_to_qtensor",
]

WG = 64  # threads per workgroup of every kernel here (its `override WG`)

Shape4 = tuple[int, int, int, int]


# ---- shared by the ops ----------------------------------------------------------------------
def _binding(dev: Device, name: str, buffer: Any, nbytes: int) -> tuple[Any, int, int]:
    """(buffer, 0, nbytes): the first nbytes of `buffer` as one storage binding, checked."""
    size = int(getattr(buffer, "size", nbytes))
    if size < nbytes:
        raise ValueError(f"{name} holds {size} bytes, its tensor needs {nbytes}")
    if nbytes > dev.max_binding_size:
        raise ValueError(
            f"{name} needs a binding of {nbytes} bytes; this adapter ({dev.name}) allows "
            f"{dev.max_binding_size} (max-storage-buffer-binding-size)"
        )
    return (buffer, 0, nbytes)


def _tensor(dev: Device, name: str, t: QTensor) -> tuple[tuple[Any, int, int], Any]:
    """A QTensor's storage binding and the uniform of its TensorDesc (with its zero point)."""
    if not isinstance(t, QTensor):
        raise TypeError(f"{name} must be a QTensor, got {type(t).__name__}")
    if t.device is not dev:
        raise ValueError(
            f"{name} is a QTensor of another Device ({t.device!r}) than this op's ({dev!r}); "
            "tensors cannot move between devices"
        )
    check_layout(f"{name}.layout", t.layout)
    shape = input_shape4(f"{name}.shape", t.shape)
    binding = _binding(dev, f"{name}.buffer", t.buffer, 4 * packed_words(shape, t.layout))
    return binding, dev.uniform(tensor_desc(shape, t.layout, t.zero_point))


def _check_quant(
    name: str, t: QTensor, scale: float, zero_point: int, expected: str | tuple[str, str]
) -> None:
    """t's scale and zero point must be what the op was made for (compared as float32);
    `expected` names them in the message ("input" -> "input_scale ... and input_zero_point
    ...", or the two names)."""
    s_name, zp_name = (
        (f"{expected}_scale", f"{expected}_zero_point") if isinstance(expected, str) else expected
    )
    if t.zero_point != zero_point or np.float32(t.scale) != np.float32(scale):
        raise ValueError(
            f"{name} has scale {t.scale} and zero point {t.zero_point}; this op expects "
            f"{s_name} {scale} and {zp_name} {zero_point}"
        )


def _word_pass(
    dev: Device, kernel: str, out: tuple[Shape4, str], resources: Mapping[str, Any], label: str
) -> Pass:
    """The pass of `kernel`: one thread per word of the output (shape, layout) `out`
    (layout.wgsl's word_coords)."""
    threads = packed_words(*out)
    pipe = dev.pipeline(kernel, {"WG": WG})
    return Pass(pipe, dev.bind(kernel, pipe, resources), dev.workgroups(-(-threads // WG)), label)


def _inputs(inputs: Sequence[QTensor], count: int, names: tuple[str, ...]) -> list[QTensor]:
    if isinstance(inputs, QTensor) or len(inputs) != count:
        raise ValueError(f"inputs must be a sequence of {count} QTensor(s) ({', '.join(names)})")
    return list(inputs)


def _check_out(
    out: QTensor, inputs: Sequence[QTensor], shape: Shape4, scale: float, zero_point: int, expected: str
) -> None:
    """`out` must have the op's output shape and quantization, and a buffer of its own (a
    dispatch cannot read and write one buffer)."""
    if not isinstance(out, QTensor):
        raise TypeError(f"out must be a QTensor, got {type(out).__name__}")
    if tuple(out.shape) != shape:
        raise ValueError(f"out has shape {tuple(out.shape)}; this op's output has shape {shape}")
    _check_quant("out", out, scale, zero_point, expected)
    if any(t.buffer is out.buffer for t in inputs):
        raise ValueError("out must not share its buffer with an input (no in-place ops)")


def _new_output(dev: Device, shape: Shape4, scale: float, zero_point: int, layout: str = "4W4C") -> QTensor:
    """A QTensor of `shape` in `layout` whose buffer is new (uninitialised; the op writes every word)."""
    buf = dev.buffer(4 * packed_words(shape, layout), label="y")
    return QTensor(buf, shape, layout, scale, zero_point, dev)


class _UnaryOp:
    """What the one-input ops share: the call on a QTensor or a numpy array, and the
    quantization of the input and the output, given to the op (QMaxPool2d keeps x's instead)."""

    device: Device
    output_layout = "4W4C"  # the layout of a call's QTensor result (an op may write another)
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int

    def output_shape(self, input_shape: Sequence[int]) -> Shape4:
        raise NotImplementedError

    def passes(self, inputs: Sequence[QTensor], out: QTensor) -> list[Pass]:
        raise NotImplementedError

    def _in_quant_numpy(self) -> tuple[float, int]:
        """The input's quantization for a numpy call."""
        return self.input_scale, self.input_zero_point

    def _out_quant(self, x: QTensor) -> tuple[float, int]:
        """The output's quantization for input x."""
        return self.output_scale, self.output_zero_point

    def __call__(self, x: TensorT) -> TensorT:
        """QTensor -> a new 4W4C QTensor on the GPU; numpy int8 [N, C, H, W] -> numpy int8."""
        dev = self.device
        if isinstance(x, QTensor):
            xt = x
        else:
            arr = check_int8_array("x", x, ndim=4)
            scale, zp = self._in_quant_numpy()
            xt = QTensor.from_numpy(arr, scale, zp, "4W4C", device=dev)
        shape = self.output_shape(xt.shape)
        scale, zp = self._out_quant(xt)
        with dev.lock:
            out = _new_output(dev, shape, scale, zp, self.output_layout)
            dev.run(self.passes([xt], out))
        return out if isinstance(x, QTensor) else out.numpy()


# ---- add --------------------------------------------------------------------------------------
class QAdd:
    """Quantized elementwise add, PT2E float path: out = quantize(dequantize(a) + dequantize(b))
    with the rounding exact (half to even; quant.AddRequant): the bytes of the float64 evaluation
    of the graph, on every adapter; PyTorch's float32 evaluation rounds near-ties its own way
    (within 1 LSB). `q8ta_wgpu.reference.add` is the numpy reference (equal bytes).

    Args:
        a_scale, a_zero_point, b_scale, b_zero_point: the inputs' quantization (each its own).
        output_scale, output_zero_point: the output's.
        activation: "none", "relu" (max(y, 0) before quantizing) or "relu6" (then min(y, 6),
            as a clamp of the quantized output: the same bytes).
        device: a q8ta_wgpu.Device (default: the process-wide one).

    a and b must have the same shape (no broadcasting); their packed layouts may differ.
    """

    def __init__(
        self,
        a_scale: float,
        a_zero_point: int,
        b_scale: float,
        b_zero_point: int,
        output_scale: float,
        output_zero_point: int,
        activation: str = "none",
        device: Device | None = None,
    ) -> None:
        self.a_scale = check_scale("a_scale", a_scale)
        self.a_zero_point = check_zero_point("a_zero_point", a_zero_point)
        self.b_scale = check_scale("b_scale", b_scale)
        self.b_zero_point = check_zero_point("b_zero_point", b_zero_point)
        self.output_scale = check_scale("output_scale", output_scale)
        self.output_zero_point = check_zero_point("output_zero_point", output_zero_point)
        _, q_max = activation_bounds(check_activation(activation), self.output_scale, self.output_zero_point)
        self._requant = rq = AddRequant.of(self.a_scale, self.b_scale, self.output_scale)
        self._q_max = q_max
        self.activation = activation
        self.device = get_device(device)
        self._params = ADD_PARAMS.pack(
            m_a=rq.m_a, m_b=rq.m_b, fix_a=rq.fix_a, fix_b=rq.fix_b, fix_e=rq.fix_e,
            relu=int(activation != "none"), q_max=q_max,
        )  # fmt: skip

    def __repr__(self) -> str:
        return (
            f"QAdd(a=({self.a_scale}, {self.a_zero_point}), b=({self.b_scale}, {self.b_zero_point}), "
            f"out=({self.output_scale}, {self.output_zero_point}), activation={self.activation!r})"
        )

    def residual(self, conv_is_a: bool) -> Residual:
        """This add fused into the epilogue of the conv that computes operand a (conv_is_a) or
        b; the other operand is the residual tensor (planner.Residual): the same bytes."""
        return Residual(
            zero_point=self.b_zero_point if conv_is_a else self.a_zero_point,
            scale=self.b_scale if conv_is_a else self.a_scale,
            output_zero_point=self.output_zero_point,
            requant=self._requant,
            relu=self.activation != "none",
            q_max=self._q_max,
            residual_first=not conv_is_a,
        )

    def output_shape(self, a_shape: Sequence[int], b_shape: Sequence[int]) -> Shape4:
        """The output's shape: that of a, which b must equal."""
        sa, sb = input_shape4("a", a_shape), input_shape4("b", b_shape)
        if sa != sb:
            raise ValueError(f"a and b must have the same shape (no broadcasting), got {sa} and {sb}")
        return sa

    def passes(self, inputs: Sequence[QTensor], out: QTensor) -> list[Pass]:
        """The pass computing out = a + b from inputs (a, b) into `out` (its shape, scale and zero
        point as this op's output; any layout)."""
        a, b = _inputs(inputs, 2, ("a", "b"))
        dev = self.device
        a_bind, ad = _tensor(dev, "a", a)
        b_bind, bd = _tensor(dev, "b", b)
        _check_quant("a", a, self.a_scale, self.a_zero_point, "a")
        _check_quant("b", b, self.b_scale, self.b_zero_point, "b")
        shape = self.output_shape(a.shape, b.shape)
        _check_out(out, (a, b), shape, self.output_scale, self.output_zero_point, "output")
        o_bind, od = _tensor(dev, "out", out)
        p = dev.uniform(self._params)
        res = {"a": a_bind, "b": b_bind, "o": o_bind, "ad": ad, "bd": bd, "od": od, "p": p}
        return [_word_pass(dev, "add_q8.wgsl", (shape, out.layout), res, "add")]

    def __call__(self, a: TensorT, b: TensorT) -> TensorT:
        """QTensors -> a new 4W4C QTensor on the GPU; numpy int8 NCHW arrays -> numpy int8."""
        dev = self.device
        if isinstance(a, QTensor) and isinstance(b, QTensor):
            at, bt = a, b
        elif isinstance(a, QTensor) or isinstance(b, QTensor):
            raise TypeError("a and b must both be QTensors or both numpy arrays")
        else:
            a = check_int8_array("a", a, ndim=4)
            b = check_int8_array("b", b, ndim=4)
            self.output_shape(a.shape, b.shape)
            at = QTensor.from_numpy(a, self.a_scale, self.a_zero_point, device=dev)
            bt = QTensor.from_numpy(b, self.b_scale, self.b_zero_point, device=dev)
        shape = self.output_shape(at.shape, bt.shape)
        with dev.lock:
            out = _new_output(dev, shape, self.output_scale, self.output_zero_point)
            dev.run(self.passes([at, bt], out))
        return out if isinstance(a, QTensor) else out.numpy()


# ---- max pool ---------------------------------------------------------------------------------
class QMaxPool2d(_UnaryOp):
    """max_pool2d of an int8 tensor with torch.nn.functional.max_pool2d's arguments (stride None =
    kernel_size; padding at most half the kernel size; padded positions never win). Exact: the
    max of the int8 values is the max of the dequantized ones, so the output keeps the input's
    scale and zero point. `q8ta_wgpu.reference.max_pool2d` is the numpy reference."""

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        ceil_mode: bool = False,
        device: Device | None = None,
    ) -> None:
        self.window = PoolWindow.checked(kernel_size, stride, padding, dilation, ceil_mode)
        w = self.window
        self.kernel_size, self.stride, self.padding = w.kernel_size, w.stride, w.padding
        self.dilation, self.ceil_mode = w.dilation, w.ceil_mode
        self.device = get_device(device)
        self._params = _pool_params(w)

    def __repr__(self) -> str:
        return (
            f"QMaxPool2d(kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode})"
        )

    def output_shape(self, input_shape: Sequence[int]) -> Shape4:
        n, c, h, w = input_shape4("x", input_shape)
        return (n, c, *self.window.output_hw(h, w))

    def passes(self, inputs: Sequence[QTensor], out: QTensor) -> list[Pass]:
        """The pass pooling inputs (x,) into `out` (same scale and zero point as x; any layout)."""
        (x,) = _inputs(inputs, 1, ("x",))
        dev = self.device
        x_bind, xd = _tensor(dev, "x", x)
        # Max pooling keeps x's quantization: out's must be x's.
        _check_out(out, (x,), self.output_shape(x.shape), x.scale, x.zero_point, "x")
        o_bind, od = _tensor(dev, "out", out)
        res = {"x": x_bind, "o": o_bind, "xd": xd, "od": od, "p": dev.uniform(self._params)}
        return [_word_pass(dev, "maxpool.wgsl", (out.shape, out.layout), res, "max_pool2d")]

    def _in_quant_numpy(self) -> tuple[float, int]:
        return 1.0, 0  # any: the values pass through

    def _out_quant(self, x: QTensor) -> tuple[float, int]:
        return x.scale, x.zero_point


def _pool_params(
    w: PoolWindow,
    *,
    adaptive: bool = False,
    count_include_pad: bool = False,
    divisor: int | None = None,
    requant: PoolRequant | None = None,
    bounds: tuple[int, int] = (-128, 127),
) -> np.ndarray:
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = w.kernel_size, w.stride, w.padding, w.dilation
    rq = requant or PoolRequant(1.0, 1 << 29, 29, 2.0**-20)  # max pools: unused
    return POOL_PARAMS.pack(
        kh=kh, kw=kw, stride_h=sh, stride_w=sw, pad_h=ph, pad_w=pw, dil_h=dh, dil_w=dw,
        adaptive=int(adaptive), count_include_pad=int(count_include_pad), divisor=divisor or 0,
        m=rq.m, margin_rel=rq.margin_rel, fix_m=rq.fix_m, fix_e=rq.fix_e, q_min=bounds[0], q_max=bounds[1],
    )  # fmt: skip


# ---- average pools ----------------------------------------------------------------------------
class _AvgBase(_UnaryOp):
    """The averaging pools' shared quantization and pass (kernels/avgpool.wgsl)."""

    _label = "avg_pool2d"

    _bounds: tuple[int, int]

    def _quant(self, options: AvgPoolOptions) -> tuple[int, int]:
        """The quantization and activation of `options`, checked and kept; returns the
        activation's bounds on the quantized output."""
        self.input_scale, self.input_zero_point, self.output_scale, self.output_zero_point = (
            checked_requantization(options)
        )
        self.activation = checked_activation(options)
        self._bounds = activation_bounds(self.activation, self.output_scale, self.output_zero_point)
        return self._bounds

    def _requant(self, max_divisor: int) -> PoolRequant:
        """The exact requantization for divisors up to max_divisor."""
        return PoolRequant.of(self.input_scale, self.output_scale, max_divisor)

    def _pool_params(self, input_shape: Shape4) -> np.ndarray:
        """The PoolParams words for an input of `input_shape`."""
        raise NotImplementedError

    def passes(self, inputs: Sequence[QTensor], out: QTensor) -> list[Pass]:
        """The pass averaging inputs (x,) into `out` (its shape, scale and zero point as this
        op's output; any layout)."""
        (x,) = _inputs(inputs, 1, ("x",))
        dev = self.device
        x_bind, xd = _tensor(dev, "x", x)
        _check_quant("x", x, self.input_scale, self.input_zero_point, "input")
        _check_out(out, (x,), self.output_shape(x.shape), self.output_scale, self.output_zero_point, "output")
        o_bind, od = _tensor(dev, "out", out)
        res = {"x": x_bind, "o": o_bind, "xd": xd, "od": od, "p": dev.uniform(self._pool_params(x.shape))}
        return [_word_pass(dev, "avgpool.wgsl", (out.shape, out.layout), res, self._label)]


class QAvgPool2d(_AvgBase):
    """avg_pool2d of an int8 tensor with torch.nn.functional.avg_pool2d's arguments, PT2E float
    path with exact integer sums: sum over the window of (x - input_zero_point) in int32 (padded
    positions add 0), the divisor as PyTorch's CPU kernel takes it (divisor_override; else with
    count_include_pad the window clipped to the padded input, else the taps inside the input),
    sum * input_scale / divisor quantized to (output_scale, output_zero_point), the rounding
    exact (quant.PoolRequant). `q8ta_wgpu.reference.avg_pool2d` is the numpy reference (equal
    bytes). Keyword options: `device` and
    `pooling.AvgPoolOptions` (the quantization, required, and the activation)."""

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
        *,
        device: Device | None = None,
        **options: Unpack[AvgPoolOptions],
    ) -> None:
        check_keywords("QAvgPool2d.__init__", options, AvgPoolOptions)
        self.window = PoolWindow.checked(kernel_size, stride, padding, 1, ceil_mode)
        w = self.window
        self.kernel_size, self.stride, self.padding = w.kernel_size, w.stride, w.padding
        self.ceil_mode = w.ceil_mode
        self.count_include_pad = check_bool("count_include_pad", count_include_pad)
        self.divisor_override = check_divisor_override(divisor_override)
        bounds = self._quant(options)
        self.device = get_device(device)
        taps = w.kernel_size[0] * w.kernel_size[1]
        check_window_taps(taps)
        self._params = _pool_params(
            w,
            count_include_pad=self.count_include_pad,
            divisor=self.divisor_override,
            requant=self._requant(abs(self.divisor_override or taps)),  # a window's divisor <= its taps
            bounds=bounds,
        )

    def _pool_params(self, input_shape: Shape4) -> np.ndarray:
        return self._params

    def __repr__(self) -> str:
        return (
            f"QAvgPool2d(kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"ceil_mode={self.ceil_mode}, count_include_pad={self.count_include_pad}, "
            f"divisor_override={self.divisor_override})"
        )

    def output_shape(self, input_shape: Sequence[int]) -> Shape4:
        n, c, h, w = input_shape4("x", input_shape)
        return (n, c, *self.window.output_hw(h, w))


class QAdaptiveAvgPool2d(_AvgBase):
    """adaptive_avg_pool2d of an int8 tensor (torch's windows: output row i averages input rows
    [floor(i*H/H_out), ceil((i+1)*H/H_out)), columns alike; output_size entries None = the
    input's size; output_size 1 = the mean over H and W), computed as QAvgPool2d computes with
    divisor = the window's taps. `q8ta_wgpu.reference.adaptive_avg_pool2d` is the reference.
    Keyword options as QAvgPool2d's."""

    _label = "adaptive_avg_pool2d"

    def __init__(
        self,
        output_size: int | None | tuple[int | None, int | None],
        *,
        device: Device | None = None,
        **options: Unpack[AvgPoolOptions],
    ) -> None:
        check_keywords("QAdaptiveAvgPool2d.__init__", options, AvgPoolOptions)
        adaptive_output_hw(output_size, 1, 1)  # the argument's own checks (None entries: any size)
        self.output_size = output_size
        self._quant(options)
        self.device = get_device(device)

    def _pool_params(self, input_shape: Shape4) -> np.ndarray:
        # The windows come from the input and output sizes (the TensorDescs); kernel, stride,
        # padding and dilation are unused. The divisor is a window's taps.
        unused = PoolWindow((1, 1), (1, 1), (0, 0), (1, 1), False)
        _, _, h, w = input_shape
        requant = self._requant(self._max_taps(h, w))
        return _pool_params(unused, adaptive=True, requant=requant, bounds=self._bounds)

    def _max_taps(self, h: int, w: int) -> int:
        """The largest window's taps for an input of h x w (checked: taps * 255 < 2^31)."""
        oh, ow = adaptive_output_hw(self.output_size, h, w)
        hs, ws = adaptive_windows(h, oh), adaptive_windows(w, ow)
        taps = int((hs[1] - hs[0]).max()) * int((ws[1] - ws[0]).max())
        check_window_taps(taps)
        return taps

    def __repr__(self) -> str:
        return f"QAdaptiveAvgPool2d(output_size={self.output_size!r})"

    def output_shape(self, input_shape: Sequence[int]) -> Shape4:
        n, c, h, w = input_shape4("x", input_shape)
        self._max_taps(h, w)
        return (n, c, *adaptive_output_hw(self.output_size, h, w))


# ---- quantize ---------------------------------------------------------------------------------
def quantize_pass(
    dev: Device, src: Any, dst: Any, shape: Sequence[int], layout: str, scale: float, zero_point: int
) -> Pass:
    """A GPU pass quantizing the float32 NCHW tensor of `shape` in buffer `src` into `dst` (which
    holds packed_words(shape, layout) words) in `layout`: q = clamp(rint(x / scale) + zero_point,
    -128, 127), torch.ops.quantized_decomposed.quantize_per_tensor (int8) with the rounding exact
    (`reference.quantize_exact`; torch's float32 x * float32(1/scale) can round a near-tie the
    other way); padding slots hold zero_point; NaN gives an unspecified int8 value."""
    n, c, h, w = input_shape4("shape", shape)
    check_layout("layout", layout)
    inv_scale("scale", scale)
    zp = check_zero_point("zero_point", zero_point)
    res = {
        "src": _binding(dev, "src", src, 4 * n * c * h * w),
        "dst": _binding(dev, "dst", dst, 4 * packed_words((n, c, h, w), layout)),
        "d": dev.uniform(tensor_desc((n, c, h, w), layout, zp)),
        "p": dev.uniform(quantize_params(scale)),
    }
    return _word_pass(dev, "quantize_pack.wgsl", ((n, c, h, w), layout), res, "quantize")


def quantize_params(scale: float) -> np.ndarray:
    """The QuantizeParams uniform (kernels/quantize_word.wgsl) of a quantization `scale`, checked:
    float32(1 / scale) as torch takes it, and the scale's float32 as m * 2^e exactly."""
    return QUANTIZE_PARAMS.pack(inv_scale=inv_scale("scale", scale), **_float32_parts("scale", scale))


def _float32_parts(name: str, value: float) -> dict[str, int]:
    """A float32 > 0 as name_m * 2^name_e exactly (name_m < 2^24): what quantize_pack.wgsl's
    exact path compares with."""
    f, e = np.frexp(np.float64(np.float32(value)))
    return {f"{name}_m": int(f * 2**24), f"{name}_e": int(e) - 24}


def quantize_to_qtensor(
    x: np.ndarray, scale: float, zero_point: int, layout: str = "4W4C", device: Device | None = None
) -> QTensor:
    """Quantize float NCHW x [N, C, H, W] on the GPU into a QTensor in `layout` (torch's
    quantize_per_tensor; x is taken as float32; NaN is rejected)."""
    a = real_array("x", x)
    if a.ndim != 4:
        raise ValueError(f"x must have 4 dimensions [N, C, H, W], got shape {a.shape}")
    with np.errstate(over="ignore"):
        x32 = np.ascontiguousarray(a, dtype=np.float32)
    if np.isnan(x32).any():
        raise ValueError("x must not contain NaN")
    shape = input_shape4("x", x32.shape)
    check_layout("layout", layout)
    inv_scale("scale", scale)
    zp = check_zero_point("zero_point", zero_point)
    dev = get_device(device)
    src = dev.upload(x32, label="x float32")
    dst = dev.buffer(4 * packed_words(shape, layout), label="x packed")
    with dev.lock:
        dev.run([quantize_pass(dev, src, dst, shape, layout, scale, zp)])
    return QTensor(dst, shape, layout, check_scale("scale", scale), zp, dev)


# ---- functions with torch's argument names ----------------------------------------------------
def add(
    a: TensorT,
    b: TensorT,
    *,
    output_scale: float,
    output_zero_point: int,
    a_scale: float | None = None,
    a_zero_point: int | None = None,
    b_scale: float | None = None,
    b_zero_point: int | None = None,
    activation: str = "none",
    device: Device | None = None,
) -> TensorT:
    """Quantized add (see QAdd). QTensor inputs give their scales and zero points when those are
    None (and a QTensor comes back); numpy int8 inputs need them (and numpy comes back)."""
    sa, za = _quant_of("a", a, a_scale, a_zero_point)
    sb, zb = _quant_of("b", b, b_scale, b_zero_point)
    if device is None and isinstance(a, QTensor):
        device = a.device
    op = QAdd(sa, za, sb, zb, output_scale, output_zero_point, activation, device=device)
    if isinstance(a, QTensor) and isinstance(b, QTensor):
        return op(a, b)
    if isinstance(a, QTensor) or isinstance(b, QTensor):
        raise TypeError("a and b must both be QTensors or both numpy arrays")
    return op(a, b)


def _quant_of(name: str, x: Any, scale: float | None, zero_point: int | None) -> tuple[float, int]:
    """An input's (scale, zero point): given, or a QTensor's own."""
    if isinstance(x, QTensor):
        return (x.scale if scale is None else scale), (x.zero_point if zero_point is None else zero_point)
    if scale is None or zero_point is None:
        raise TypeError(f"{name}_scale and {name}_zero_point are required for a numpy input {name}")
    return scale, zero_point


def max_pool2d(
    x: TensorT,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    ceil_mode: bool = False,
    *,
    device: Device | None = None,
) -> TensorT:
    """max_pool2d (see QMaxPool2d): numpy int8 NCHW -> numpy int8; QTensor -> QTensor."""
    if device is None and isinstance(x, QTensor):
        device = x.device
    op = QMaxPool2d(kernel_size, stride, padding, dilation, ceil_mode, device=device)
    return op(x)


def _avg_quant(
    x: Any,
    input_scale: float | None,
    input_zero_point: int | None,
    output_scale: float | None,
    output_zero_point: int | None,
) -> tuple[float, int, float, int]:
    """(input scale, zp, output scale, zp): the input's from a QTensor when None; the output's
    default to the input's (torch's quantized average pools keep them)."""
    s_in, zp_in = _quant_of("input", x, input_scale, input_zero_point)
    s_out = s_in if output_scale is None else output_scale
    zp_out = zp_in if output_zero_point is None else output_zero_point
    return s_in, zp_in, s_out, zp_out


def avg_pool2d(
    x: TensorT,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    *,
    input_scale: float | None = None,
    input_zero_point: int | None = None,
    output_scale: float | None = None,
    output_zero_point: int | None = None,
    device: Device | None = None,
) -> TensorT:
    """avg_pool2d (see QAvgPool2d). A QTensor x gives the input quantization when it is None;
    a numpy x needs it. The output quantization defaults to the input's."""
    s_in, zp_in, s_out, zp_out = _avg_quant(x, input_scale, input_zero_point, output_scale, output_zero_point)
    if device is None and isinstance(x, QTensor):
        device = x.device
    op = QAvgPool2d(
        kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
        input_scale=s_in, input_zero_point=zp_in, output_scale=s_out, output_zero_point=zp_out,
        device=device,
    )  # fmt: skip
    return op(x)


def adaptive_avg_pool2d(
    x: TensorT,
    output_size: int | None | tuple[int | None, int | None],
    *,
    input_scale: float | None = None,
    input_zero_point: int | None = None,
    output_scale: float | None = None,
    output_zero_point: int | None = None,
    device: Device | None = None,
) -> TensorT:
    """adaptive_avg_pool2d (see QAdaptiveAvgPool2d); quantization arguments as avg_pool2d's."""
    s_in, zp_in, s_out, zp_out = _avg_quant(x, input_scale, input_zero_point, output_scale, output_zero_point)
    if device is None and isinstance(x, QTensor):
        device = x.device
    op = QAdaptiveAvgPool2d(
        output_size,
        input_scale=s_in,
        input_zero_point=zp_in,
        output_scale=s_out,
        output_zero_point=zp_out,
        device=device,
    )
    return op(x)
