"""Pooling geometry (pure): the argument checks and output sizes of max_pool2d, avg_pool2d and
adaptive_avg_pool2d exactly as torch.nn.functional takes them, shared by the GPU ops (ops.py)
and the numpy references (reference.py).

    H_out = floor((H + 2*pad - dil*(k - 1) - 1 + (stride - 1 if ceil_mode else 0)) / stride) + 1,
    minus 1 with ceil_mode when the last window would start at or past H + pad (it must start
    inside the input or the left padding); padding <= kernel_size // 2; H_out >= 1.
    adaptive: window i of an axis = [floor(i*H/H_out), ceil((i+1)*H/H_out)).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from ._checks import check_activation, check_scale, check_zero_point
from .geometry import MAX_PARAM, pair

# Sums of (q - zp) over a window: |q - zp| <= 255, so windows of up to this many taps sum exactly
# in int32.
MAX_WINDOW_TAPS = MAX_PARAM // 255


def check_bool(name: str, value: Any) -> bool:
    """A bool (numpy bools too); a TypeError naming the argument otherwise."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def input_shape4(name: str, shape: Any) -> tuple[int, int, int, int]:
    """An NCHW shape of 4 sizes >= 1, each below 2^31 (the kernels' 32-bit arithmetic)."""
    dims = tuple(int(s) for s in shape)
    if len(dims) != 4:
        raise ValueError(f"{name} must have shape [N, C, H, W], got {dims}")
    if min(dims) < 1:
        raise ValueError(f"{name} must have no empty dimension, got shape {dims}")
    if max(dims) > MAX_PARAM:
        raise ValueError(f"{name} sizes must be < 2**31, got shape {dims}")
    n, c, h, w = dims
    return n, c, h, w


def pool_output_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    """Output size of one axis, as PyTorch's pooling_output_shape computes it (may be < 1)."""
    extra = stride - 1 if ceil_mode else 0
    out = (size + 2 * pad - dilation * (kernel - 1) - 1 + extra) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


@dataclass(frozen=True)
class PoolWindow:
    """The window of a 2-D pooling: kernel_size, stride, padding, dilation as (h, w) pairs."""

    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    ceil_mode: bool

    @classmethod
    def checked(
        cls, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1, ceil_mode: Any = False
    ) -> PoolWindow:
        """The window from torch-style arguments (stride None or () = kernel_size), checked as
        torch checks them: padding at most half the kernel size."""
        k = pair("kernel_size", kernel_size, minimum=1)
        if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
            s = k  # torch's default (an empty stride list too)
        else:
            s = pair("stride", stride, minimum=1)
        p = pair("padding", padding, minimum=0)
        d = pair("dilation", dilation, minimum=1)
        cm = check_bool("ceil_mode", ceil_mode)
        if p[0] > k[0] // 2 or p[1] > k[1] // 2:
            raise ValueError(
                f"padding must be at most half of kernel_size (as torch requires), got padding={p}, "
                f"kernel_size={k}"
            )
        return cls(k, s, p, d, cm)

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        """(H_out, W_out) for an input of H x W; ValueError when the window does not fit."""
        out = []
        for axis, size, k, s, p, d in zip(
            "HW", (h, w), self.kernel_size, self.stride, self.padding, self.dilation, strict=True
        ):
            o = pool_output_size(size, k, s, p, d, self.ceil_mode)
            if o < 1:
                raise ValueError(
                    f"kernel extent {d * (k - 1) + 1} (kernel_size {k}, dilation {d}) is larger than "
                    f"the padded input {axis} = {size} + 2*{p}: output size {o} is too small"
                )
            if size + 2 * p + d * (k - 1) > MAX_PARAM or (o - 1) * s + d * (k - 1) > MAX_PARAM:
                raise ValueError(f"pooling of input {axis} = {size} exceeds the kernels' 32-bit arithmetic")
            out.append(o)
        return out[0], out[1]


class Requantization(TypedDict):
    """The quantization of an op's input and of its output, all required: the base of
    `AvgPoolOptions` (documented there) and `reference.LookupOptions`."""

    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int


def checked_requantization(options: Mapping[str, Any]) -> tuple[float, int, float, int]:
    """(input scale, input zero point, output scale, output zero point) of `options` (a
    `Requantization`), each checked: a ValueError naming the one out of range."""
    return (
        check_scale("input_scale", options["input_scale"]),
        check_zero_point("input_zero_point", options["input_zero_point"]),
        check_scale("output_scale", options["output_scale"]),
        check_zero_point("output_zero_point", options["output_zero_point"]),
    )


class AvgPoolOptions(Requantization, total=False):
    """The keyword options of the average pools, defined once: `ops.QAvgPool2d`,
    `ops.QAdaptiveAvgPool2d`, `reference.avg_pool2d` and `reference.adaptive_avg_pool2d` take
    them as `**options` (after torch's positional window arguments).

    input_scale, input_zero_point: x's quantization (required; scale > 0, zp in [-128, 127]).
    output_scale, output_zero_point: the output's (required).
    activation: "none" (default), "relu" or "relu6": applied to the float average before it is
        quantized.
    """

    activation: str


def checked_activation(options: AvgPoolOptions) -> str:
    """The options' activation (default "none"), checked."""
    return check_activation(options.get("activation", "none"))


def check_divisor_override(value: Any) -> int | None:
    """None, or a nonzero int (torch: "divisor must be not zero") within int32."""
    if value is None:
        return None
    try:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"divisor_override must be None or an int, got {value!r}") from None
    if v == 0:
        raise ValueError("divisor_override must not be zero")
    if not -MAX_PARAM <= v <= MAX_PARAM:
        raise ValueError(f"divisor_override must fit in int32, got {v}")
    return v


def adaptive_output_hw(output_size: Any, h: int, w: int) -> tuple[int, int]:
    """adaptive pooling's (H_out, W_out): an int or an (h, w) pair whose None entries mean the
    input's size, each >= 1."""
    vals = list(output_size) if isinstance(output_size, (tuple, list)) else [output_size, output_size]
    if len(vals) != 2:
        raise ValueError(f"output_size must be an int or an (h, w) pair, got {output_size!r}")
    vals = [size if v is None else v for v, size in zip(vals, (h, w), strict=True)]
    oh, ow = pair("output_size", tuple(vals), minimum=1)
    if h * oh > MAX_PARAM or w * ow > MAX_PARAM:
        raise ValueError(
            f"output_size {(oh, ow)} of an input of {h} x {w} exceeds the kernels' 32-bit window arithmetic"
        )
    return oh, ow


def adaptive_windows(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """int64 [out] starts and ends of adaptive pooling's windows along one axis."""
    i = np.arange(out, dtype=np.int64)
    return (i * size) // out, ((i + 1) * size + out - 1) // out


def avg_windows(
    size: int, out: int, kernel: int, stride: int, pad: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int64 [out] clipped starts, clipped ends and pool extents (the window clipped to the padded
    input, what count_include_pad divides by) of avg_pool2d's windows along one axis."""
    lo = np.arange(out, dtype=np.int64) * stride - pad
    hi = np.minimum(lo + kernel, size + pad)
    return np.maximum(lo, 0), np.minimum(hi, size), hi - lo


def check_window_taps(taps: int) -> None:
    """An average's window must sum exactly in int32."""
    if taps > MAX_WINDOW_TAPS:
        raise ValueError(
            f"a pooling window of {taps} taps is too big: int32 sums of int8 values are exact only up "
            f"to {MAX_WINDOW_TAPS} taps"
        )
