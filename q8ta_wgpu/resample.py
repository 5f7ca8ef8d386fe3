"""The int8 ops that move pixels rather than combine them, and the transposed conv, on the GPU.

`QUpsampleNearest2d` (torch's F.interpolate(mode="nearest") / aten.upsample_nearest2d, by output
size or by scale factors, torch's source index floor(dst * scale) in float32) and `QPixelShuffle`
(pixel_shuffle, and pixel_unshuffle with unshuffle=True) are index maps: each output word reads
the input bytes the map names (kernels/upsample_nearest_q8.wgsl, kernels/pixel_shuffle_q8.wgsl)
and copies them where the input's and the output's parameters are equal (what a PT2E quantizer
shares: Q8taQuantizer does), else passes them through a 256-entry table (a requantization, or a
fused relu / relu6), as `elementwise.QLookup` does, whose subclasses they are: exact either way.

`QConvTranspose2d` (torch's conv_transpose2d: stride, padding, output_padding, dilation, groups)
is one kernel writing the input zero-inserted and padded into a scratch 4W4C tensor
(kernels/zero_insert_4w4c.wgsl: holes and borders hold the input zero point, i.e. real 0),
followed by the existing `QConv2d` (stride 1, no padding, the dilation as given) with the
weights transposed per group and flipped (`reference.ConvTransposeArgs.conv_weight`).

All follow the op protocol of ops.py: `output_shape`, `passes(inputs, out)`, `__call__`
(QTensor -> QTensor; numpy int8 NCHW -> numpy int8). `upsample_nearest`, `pixel_shuffle` and
`conv_transpose2d` wrap them with torch's argument names. The numpy references:
`q8ta_wgpu.reference.upsample_nearest2d`, `.pixel_shuffle` and `.conv_transpose2d` (a direct
int32 scatter, not this conv).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Unpack

import numpy as np

from ._checks import check_activation, check_float_vector, check_int8_array, check_keywords
from .conv import QConv2d, QTensor, TensorT
from .elementwise import QLookup
from .forward import ConvOp
from .layouts import check_layout, packed_words, tensor_desc
from .ops import _avg_quant, _check_out, _check_quant, _inputs, _quant_of, _tensor, _UnaryOp, _word_pass
from .planner import DeviceLimits, check_binding, check_buffer
from .pooling import check_bool, input_shape4
from .reference import (
    CONV_TRANSPOSE_DEFAULTS,
    INT8_VALUES,
    ConvTransposeArgs,
    ConvTransposeOptions,
    IndexMapOptions,
    NearestResize,
    check_factor,
    pixel_shuffle_shape,
)
from .runtime import Device, Pass
from .uniforms import RESAMPLE_PARAMS

__all__ = [
    "QConvTranspose2d",
    "QPixelShuffle",
    "QUpsampleNearest2d",
    "conv_transpose2d",
    "pixel_shuffle",
    "upsample_nearest",
]

Shape4 = tuple[int, int, int, int]
_NO_PARAMS = dict(scale_h=0.0, scale_w=0.0, factor=0, unshuffle=0, stride_h=0, stride_w=0, off_h=0, off_w=0)


# ---- index maps: a gather, then the bytes as they are or through a table ----------------------
class _IndexMap(QLookup):
    """QLookup's table (the identity, a requantization, relu or relu6) after an index map."""

    def __init__(self, device: Device | None, options: IndexMapOptions) -> None:
        check_keywords(type(self).__name__ + ".__init__", options, IndexMapOptions)
        self.activation = check_activation(options.get("activation", "none"))
        super().__init__(
            "identity" if self.activation == "none" else self.activation, device=device,
            input_scale=options["input_scale"], input_zero_point=options["input_zero_point"],
            output_scale=options["output_scale"], output_zero_point=options["output_zero_point"],
        )  # fmt: skip
        # The identity table: the kernel copies (the same bytes, one lookup fewer).
        self.copy = bool(np.array_equal(self.table, INT8_VALUES))

    def _quant_repr(self) -> str:
        act = "" if self.activation == "none" else f", activation={self.activation!r}"
        return (
            f"in=({self.input_scale}, {self.input_zero_point}), "
            f"out=({self.output_scale}, {self.output_zero_point}){act}"
        )


class QUpsampleNearest2d(_IndexMap):
    """Nearest upsampling of an int8 tensor, torch.nn.functional.interpolate(x, size,
    scale_factor, mode="nearest", recompute_scale_factor=...), PT2E float path, exactly.

    Args:
        size: the output (H, W) (an int: both), or None.
        scale_factor: a number > 0 or an (h, w) pair, or None: H_out = floor(H * scale_factor).
            Exactly one of size and scale_factor, as torch; both: aten.upsample_nearest2d.default
            (the output size as given, the source indices by the scales).
        recompute_scale_factor: True: the source indices from the sizes (float32(H) / H_out), not
            from 1 / scale_factor (torch's; None = False).
        device: a q8ta_wgpu.Device (default: the process-wide one).
        options: `reference.IndexMapOptions`: the input's and the output's quantization
            (required; equal: a copy) and a fused activation.

    Source rows as torch's nearest_idx (`reference.NearestResize`): computed in the kernel with
    torch's float32 scale; `q8ta_wgpu.reference.upsample_nearest2d` is the numpy reference.
    """

    def __init__(
        self,
        size: int | tuple[int, int] | None = None,
        scale_factor: float | tuple[float, float] | None = None,
        recompute_scale_factor: bool | None = None,
        *,
        device: Device | None = None,
        **options: Unpack[IndexMapOptions],
    ) -> None:
        self.resize = NearestResize(size, scale_factor, recompute_scale_factor)
        super().__init__(device, options)

    def __repr__(self) -> str:
        return f"QUpsampleNearest2d({self.resize}, {self._quant_repr()})"

    def output_shape(self, input_shape: Sequence[int]) -> Shape4:
        n, c, h, w = input_shape4("x", input_shape)
        return (n, c, *self.resize.output_hw(h, w))

    def _gather(self, x_shape: Shape4) -> tuple[str, dict[str, Any], str]:
        sh, sw = self.resize.scales(x_shape[2], x_shape[3])
        params = RESAMPLE_PARAMS.pack(**{**_NO_PARAMS, "scale_h": sh, "scale_w": sw, "copy": int(self.copy)})
        return "upsample_nearest_q8.wgsl", {"p": self.device.uniform(params)}, "upsample_nearest2d"


class QPixelShuffle(_IndexMap):
    """torch.nn.functional.pixel_shuffle(x, upscale_factor) of an int8 tensor ([N, C, H, W] ->
    [N, C/r^2, H*r, W*r]), or with unshuffle=True pixel_unshuffle(x, downscale_factor=
    upscale_factor) ([N, C, H, W] -> [N, C*r^2, H/r, W/r]), PT2E float path, exactly.

    Args:
        upscale_factor: r, an int >= 1.
        unshuffle: pixel_unshuffle instead.
        device, options: as QUpsampleNearest2d's.

    `q8ta_wgpu.reference.pixel_shuffle` is the numpy reference.
    """

    def __init__(
        self,
        upscale_factor: int,
        *,
        unshuffle: bool = False,
        device: Device | None = None,
        **options: Unpack[IndexMapOptions],
    ) -> None:
        self.upscale_factor = check_factor("upscale_factor", upscale_factor)
        self.unshuffle = check_bool("unshuffle", unshuffle)
        super().__init__(device, options)

    def __repr__(self) -> str:
        name = "pixel_unshuffle" if self.unshuffle else "pixel_shuffle"
        return f"QPixelShuffle({name}, r={self.upscale_factor}, {self._quant_repr()})"

    def output_shape(self, input_shape: Sequence[int]) -> Shape4:
        return pixel_shuffle_shape(input_shape, self.upscale_factor, self.unshuffle)

    def _gather(self, x_shape: Shape4) -> tuple[str, dict[str, Any], str]:
        params = RESAMPLE_PARAMS.pack(**{
            **_NO_PARAMS, "factor": self.upscale_factor, "unshuffle": int(self.unshuffle), "copy": int(self.copy),
        })  # fmt: skip
        label = "pixel_unshuffle" if self.unshuffle else "pixel_shuffle"
        return "pixel_shuffle_q8.wgsl", {"p": self.device.uniform(params)}, label


# ---- the transposed conv ----------------------------------------------------------------------
class QConvTranspose2d(_UnaryOp):
    """A quantized conv_transpose2d (torch's: weight [C_in, C_out/groups, KH, KW]), called as
    `op(x)`: the input zero-inserted and padded into a scratch 4W4C tensor by one kernel
    (kernels/zero_insert_4w4c.wgsl), then a `QConv2d` with stride 1, no padding, the dilation
    and groups as given and the weights transposed per group and flipped.

    Args:
        weight: int8 [C_in, C_out/groups, KH, KW], symmetric (zero point 0).
        weight_scales: float32 [C_out], > 0, one per output channel (torch's per-channel axis 1
            of a grouped transposed conv has C_out/groups: repeat them per group).
        bias: float32 [C_out] (real units) or None.
        input_scale, input_zero_point: the input's quantization.
        output_layout: layout of QTensor results ("4W4C" (default), "4C" or "4C1W").
        device: a q8ta_wgpu.Device (default: the process-wide one).
        options: `reference.ConvTransposeOptions`: output_scale and output_zero_point
            (required), stride, padding, output_padding, dilation, groups, activation.

    The int32 sums are the direct transposed conv's (the holes add (zp - zp) * w = 0), so the
    result equals `q8ta_wgpu.reference.conv_transpose2d` as QConv2d equals reference.conv2d.
    The scratch, (H_out + dilation*(KH-1)) x (W_out + dilation*(KW-1)) x C_in bytes, must fit
    one storage binding.
    """

    SCRATCH_CACHE_SIZE = 8

    def __init__(
        self,
        weight: np.ndarray,
        weight_scales: np.ndarray,
        bias: np.ndarray | None = None,
        *,
        input_scale: float,
        input_zero_point: int,
        output_layout: str = "4W4C",
        device: Device | None = None,
        **options: Unpack[ConvTransposeOptions],
    ) -> None:
        check_keywords("QConvTranspose2d.__init__", options, ConvTransposeOptions)
        opts = {**CONV_TRANSPOSE_DEFAULTS, **options}
        self.weight = check_int8_array("weight", weight, ndim=4).copy()
        self.args = args = ConvTransposeArgs.checked(self.weight.shape, opts)
        self.weight_scales = check_float_vector("weight_scales", weight_scales, args.c_out, positive=True)
        self.bias = None if bias is None else check_float_vector("bias", bias, args.c_out)
        self.stride, self.padding, self.output_padding = args.stride, args.padding, args.output_padding
        self.dilation, self.groups = args.dilation, args.groups
        self.conv = QConv2d(
            args.conv_weight(self.weight), self.weight_scales, self.bias, input_scale=input_scale,
            input_zero_point=input_zero_point, output_scale=opts["output_scale"],
            output_zero_point=opts["output_zero_point"], dilation=args.dilation, groups=args.groups,
            activation=opts["activation"], output_layout=check_layout("output_layout", output_layout),
            device=device,
        )  # fmt: skip
        c = self.conv
        self.input_scale, self.input_zero_point = c.input_scale, c.input_zero_point
        self.output_scale, self.output_zero_point = c.output_scale, c.output_zero_point
        self.activation, self.output_layout, self.device = c.activation, c.output_layout, c.device
        self._conv_op = ConvOp(c)
        self._scratch: dict[Shape4, Any] = {}

    def __repr__(self) -> str:
        c_in, cop, kh, kw = self.args.weight_shape
        return (
            f"QConvTranspose2d({c_in}, {cop * self.groups}, kernel=({kh}, {kw}), stride={self.stride}, "
            f"padding={self.padding}, output_padding={self.output_padding}, dilation={self.dilation}, "
            f"groups={self.groups}, activation={self.activation!r})"
        )

    def output_shape(self, input_shape: Sequence[int]) -> Shape4:
        n, _, h, w = self.args.check_input(input_shape)
        return (n, self.args.c_out, *self.args.output_hw(h, w))

    def scratch_shape(self, input_shape: Sequence[int]) -> Shape4:
        """The zero-inserted, padded input's NCHW shape (what the inner QConv2d reads)."""
        n, c, h, w = self.args.check_input(input_shape)
        return (n, c, *self.args.scratch_hw(h, w))

    def _scratch_buffer(self, shape: Shape4) -> Any:
        buf = self._scratch.pop(shape, None)
        if buf is None:
            nbytes = 4 * packed_words(shape, "4W4C")
            limits = DeviceLimits.of(self.device)
            what = f"conv_transpose2d's zero-inserted input {list(shape)}"
            check_buffer(limits, what, nbytes)
            check_binding(limits, what, nbytes)  # the zero-insert kernel binds it whole
            buf = self.device.buffer(nbytes, label="conv_transpose2d scratch")
        self._scratch[shape] = buf  # most recent last
        while len(self._scratch) > self.SCRATCH_CACHE_SIZE:
            self._scratch.pop(next(iter(self._scratch)))
        return buf

    def passes(self, inputs: Sequence[QTensor], out: QTensor) -> list[Pass]:
        """The zero-insert pass, then the conv's passes, from inputs (x,) into `out` (its shape,
        scale and zero point as this op's output; layout `output_layout`)."""
        (x,) = _inputs(inputs, 1, ("x",))
        dev = self.device
        x_bind, xd = _tensor(dev, "x", x)
        _check_quant("x", x, self.input_scale, self.input_zero_point, "input")
        _check_out(out, (x,), self.output_shape(x.shape), self.output_scale, self.output_zero_point, "output")
        if out.layout != self.output_layout:
            raise ValueError(
                f"out has layout {out.layout}; this op writes output_layout {self.output_layout}"
            )
        shape = self.scratch_shape(x.shape)
        buf = self._scratch_buffer(shape)
        (sh, sw), (bh, bw) = self.stride, self.args.border()
        params = RESAMPLE_PARAMS.pack(**{**_NO_PARAMS, "stride_h": sh, "stride_w": sw, "off_h": bh, "off_w": bw,
                                         "copy": 0})  # fmt: skip
        res = {"x": x_bind, "o": (buf, 0, 4 * packed_words(shape, "4W4C")), "xd": xd,
               "od": dev.uniform(tensor_desc(shape, "4W4C", x.zero_point)), "p": dev.uniform(params)}  # fmt: skip
        zero_insert = _word_pass(dev, "zero_insert_4w4c.wgsl", (shape, "4W4C"), res, "conv_transpose2d input")
        scratch = QTensor(buf, shape, "4W4C", x.scale, x.zero_point, dev)
        return [zero_insert, *self._conv_op.passes([scratch], out)]


# ---- functions with torch's argument names ----------------------------------------------------
def _index_map_quant(x: Any, *quant: Any) -> dict[str, Any]:
    """An index map's quantization from (input_scale, input_zero_point, output_scale,
    output_zero_point): the input's from a QTensor when None, the output's the input's when None
    (a copy), as the functional average pools take theirs."""
    s_in, zp_in, s_out, zp_out = _avg_quant(x, *quant)
    return dict(input_scale=s_in, input_zero_point=zp_in, output_scale=s_out, output_zero_point=zp_out)


def upsample_nearest(
    x: TensorT,
    size: int | tuple[int, int] | None = None,
    scale_factor: float | tuple[float, float] | None = None,
    recompute_scale_factor: bool | None = None,
    *,
    input_scale: float | None = None,
    input_zero_point: int | None = None,
    output_scale: float | None = None,
    output_zero_point: int | None = None,
    device: Device | None = None,
) -> TensorT:
    """F.interpolate(x, size, scale_factor, mode="nearest") of an int8 tensor (see
    QUpsampleNearest2d): exactly one of size and scale_factor, as torch. A QTensor x gives its
    quantization when input_scale / input_zero_point are None; a numpy x needs them. The output's
    defaults to the input's (a copy)."""
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be given (as torch)")
    quant = _index_map_quant(x, input_scale, input_zero_point, output_scale, output_zero_point)
    if device is None and isinstance(x, QTensor):
        device = x.device
    return QUpsampleNearest2d(size, scale_factor, recompute_scale_factor, device=device, **quant)(x)


def pixel_shuffle(
    x: TensorT,
    upscale_factor: int,
    *,
    unshuffle: bool = False,
    input_scale: float | None = None,
    input_zero_point: int | None = None,
    output_scale: float | None = None,
    output_zero_point: int | None = None,
    device: Device | None = None,
) -> TensorT:
    """F.pixel_shuffle(x, upscale_factor) of an int8 tensor, or pixel_unshuffle with
    unshuffle=True (see QPixelShuffle); quantization arguments as upsample_nearest's."""
    quant = _index_map_quant(x, input_scale, input_zero_point, output_scale, output_zero_point)
    if device is None and isinstance(x, QTensor):
        device = x.device
    return QPixelShuffle(upscale_factor, unshuffle=unshuffle, device=device, **quant)(x)


def conv_transpose2d(
    x: TensorT,
    weight: np.ndarray,
    weight_scales: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    input_scale: float | None = None,
    input_zero_point: int | None = None,
    device: Device | None = None,
    **options: Unpack[ConvTransposeOptions],
) -> TensorT:
    """Quantized conv_transpose2d (see QConvTranspose2d; `reference.ConvTransposeOptions` the
    options). A QTensor x gives its scale, zero point and device when those are None; a numpy x
    needs input_scale and input_zero_point."""
    s_in, zp_in = _quant_of("input", x, input_scale, input_zero_point)
    if device is None and isinstance(x, QTensor):
        device = x.device
    op = QConvTranspose2d(weight, weight_scales, bias, input_scale=s_in, input_zero_point=zp_in, device=device,
                          **options)  # fmt: skip
    return op(x)
