"""Convolution geometry: output sizes, im2col matrix sizes, and the checks on conv arguments."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import numpy as np

# Sizes and conv parameters travel to the kernels as 32-bit integers.
MAX_PARAM = 2**31 - 1


def align4(v: int) -> int:
    return (v + 3) // 4 * 4


def ceil4(v: int) -> int:
    """Number of 4-element groups needed for v elements."""
    return (v + 3) // 4


def pair(name: str, value: Any, *, minimum: int) -> tuple[int, int]:
    """An int or an (h, w) pair of ints, each >= minimum."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or an (h, w) pair, got {value!r}")
        vals = tuple(value)
    else:
        vals = (value, value)
    out = []
    for v in vals:
        try:
            if isinstance(v, (bool, np.bool_)):
                raise TypeError
            v = operator.index(v)  # ints and numpy integers; not floats, arrays or strings
        except TypeError:
            raise TypeError(f"{name} must be an int or an (h, w) pair of ints, got {value!r}") from None
        if v < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
        if v > MAX_PARAM:
            raise ValueError(f"{name} must be < 2**31 (kernels use 32-bit integers), got {value!r}")
        out.append(v)
    return out[0], out[1]


@dataclass(frozen=True)
class ConvGeometry:
    """Every size the kernels need for one conv2d, derived from the input and weight shapes.

    The im2col matrix A has M = N*H_out*W_pad rows (W_pad = W_out rounded up to 4) and
    K = groups*K_per_group columns (K_per_group = KH*KW*C_in_per_group rounded up to 4).
    """

    N: int
    C_in: int
    H: int
    W: int
    C_out: int
    KH: int
    KW: int
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    @classmethod
    def make(
        cls,
        input_shape: tuple[int, ...],
        weight_shape: tuple[int, ...],
        *,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: Any = 1,
    ) -> ConvGeometry:
        if len(input_shape) != 4:
            raise ValueError(f"x must have shape [N, C_in, H, W], got {tuple(input_shape)}")
        if len(weight_shape) != 4:
            raise ValueError(
                f"weight must have shape [C_out, C_in/groups, KH, KW], got {tuple(weight_shape)}"
            )
        N, C_in, H, W = (int(v) for v in input_shape)
        C_out, Cpg, KH, KW = (int(v) for v in weight_shape)
        if min(N, C_in, H, W) < 1:
            raise ValueError(f"x must have no empty dimension, got shape {tuple(input_shape)}")
        if min(C_out, Cpg, KH, KW) < 1:
            raise ValueError(f"weight must have no empty dimension, got shape {tuple(weight_shape)}")
        s = pair("stride", stride, minimum=1)
        p = pair("padding", padding, minimum=0)
        d = pair("dilation", dilation, minimum=1)
        if isinstance(groups, bool) or not hasattr(groups, "__index__"):
            raise TypeError(f"groups must be an int, got {groups!r}")
        g = int(groups)
        if g < 1:
            raise ValueError(f"groups must be >= 1, got {g}")
        if C_in % g:
            raise ValueError(f"groups ({g}) must divide the input channels C_in ({C_in})")
        if C_out % g:
            raise ValueError(f"groups ({g}) must divide the output channels C_out ({C_out})")
        if Cpg != C_in // g:
            raise ValueError(
                f"x has C_in = {C_in} channels (x.shape[1]) and groups = {g}, so weight.shape[1] "
                f"must be C_in/groups = {C_in // g}; got weight of shape {tuple(weight_shape)}"
            )
        geo = cls(N, C_in, H, W, C_out, KH, KW, s, p, d, g)
        for axis, size, k, pad, dil in (("H", H, KH, p[0], d[0]), ("W", W, KW, p[1], d[1])):
            if size + 2 * pad < dil * (k - 1) + 1:
                raise ValueError(
                    f"kernel extent {dil * (k - 1) + 1} (dilation {dil}, size {k}) is larger than the "
                    f"padded input {axis} = {size} + 2*{pad}"
                )
        return geo

    @property
    def H_out(self) -> int:
        return (self.H + 2 * self.padding[0] - self.dilation[0] * (self.KH - 1) - 1) // self.stride[0] + 1

    @property
    def W_out(self) -> int:
        return (self.W + 2 * self.padding[1] - self.dilation[1] * (self.KW - 1) - 1) // self.stride[1] + 1

    @property
    def W_pad(self) -> int:
        return align4(self.W_out)

    @property
    def C_in_per_group(self) -> int:
        return self.C_in // self.groups

    @property
    def C_out_per_group(self) -> int:
        return self.C_out // self.groups

    @property
    def K_per_group(self) -> int:
        return align4(self.KH * self.KW * self.C_in_per_group)

    @property
    def K(self) -> int:
        return self.groups * self.K_per_group

    @property
    def M(self) -> int:
        return self.N * self.H_out * self.W_pad

    @property
    def m_blocks(self) -> int:
        """Rows of A in 4W4C blocks of 4 output widths: what the GEMM kernels call m-blocks."""
        return self.M // 4

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.C_out, self.H_out, self.W_out)

    @property
    def is_pointwise(self) -> bool:
        """1x1, stride 1, no padding: a 4W4C input already is the im2col matrix."""
        return (
            self.KH == 1
            and self.KW == 1
            and self.stride == (1, 1)
            and self.padding == (0, 0)
            and (self.groups == 1 or self.C_in_per_group % 4 == 0)
        )

    @property
    def is_depthwise(self) -> bool:
        """One input and one output channel per group (groups == C_in == C_out)."""
        return self.C_in_per_group == 1 and self.C_out_per_group == 1

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the conv (C_in/groups per output)."""
        return self.N * self.C_out * self.H_out * self.W_out * self.C_in_per_group * self.KH * self.KW


def fold_workgroups(count: int, lim: int, name: str) -> tuple[int, int, int]:
    """A 1-D workgroup count folded into (x, y, 1) with x, y <= `lim` (max-compute-workgroups-
    per-dimension of device `name`); kernels rebuild the linear index as gid.x + gid.y * nwg.x * WG."""
    count = max(1, int(count))
    if count <= lim:
        return (count, 1, 1)
    y = -(-count // lim)
    x = -(-count // y)
    if y > lim:
        raise ValueError(f"dispatch of {count} workgroups exceeds {lim}*{lim} on {name}")
    return (x, y, 1)
