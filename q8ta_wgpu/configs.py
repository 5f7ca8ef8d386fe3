"""Conv shapes and test data: the spec's section 5 configs (upstream's test shapes), ResNet-50 and
MobileNet-style layers, and the upstream test-data recipe, shared by tests, CLI, benchmarks and
notebooks."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .geometry import ConvGeometry
from .quant import quantize

# Upstream test data (spec section 5).
INPUT_SCALE = 0.008123
INPUT_ZERO_POINT = 2
OUTPUT_SCALE = 0.05314
OUTPUT_ZERO_POINT = -1


@dataclass(frozen=True)
class ConvConfig:
    """One conv2d shape: C_out x C_in channels, an H x W input, batch n. kernel, stride, padding,
    dilation are (h, w) pairs in pixels; groups divides c_in and c_out."""

    name: str
    c_out: int
    c_in: int
    h: int
    w: int
    kernel: tuple[int, int] = (3, 3)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    n: int = 1

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """NCHW [n, c_in, h, w]."""
        return (self.n, self.c_in, self.h, self.w)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        """[c_out, c_in / groups, KH, KW]."""
        return (self.c_out, self.c_in // self.groups, *self.kernel)

    def conv_kwargs(self) -> dict[str, Any]:
        """stride, padding, dilation and groups as keyword arguments of `q8ta_wgpu.conv2d`."""
        return {
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "groups": self.groups,
        }

    def geometry(self) -> ConvGeometry:
        """All derived sizes (H_out, W_out, M, K, MACs, ...) of this conv."""
        return ConvGeometry.make(self.input_shape, self.weight_shape, **self.conv_kwargs())

    def with_batch(self, n: int) -> ConvConfig:
        """The same conv with batch size n, named "<name>@n<n>"."""
        return replace(self, n=n, name=f"{self.name}@n{n}")

    def label(self) -> str:
        """A one-line description, e.g. "64x32 64x64 k3x3 s1,1 p1,1 d1,1 g1 n1" (C_out x C_in, H x W)."""
        k, s, p, d = self.kernel, self.stride, self.padding, self.dilation
        return (
            f"{self.c_out}x{self.c_in} {self.h}x{self.w} k{k[0]}x{k[1]} s{s[0]},{s[1]} "
            f"p{p[0]},{p[1]} d{d[0]},{d[1]} g{self.groups} n{self.n}"
        )


def _c(name: str, co: int, ci: int, hw: int, k: int, s: int, p: int, g: int = 1) -> ConvConfig:
    return ConvConfig(name, co, ci, hw, hw, (k, k), (s, s), (p, p), (1, 1), g)


# Spec section 5, conv configs 1..19.
SPEC_CONFIGS: list[ConvConfig] = [
    _c("spec1", 32, 3, 64, 3, 1, 1),
    _c("spec2", 32, 3, 64, 3, 2, 1),
    _c("spec3", 64, 32, 8, 3, 1, 1),
    _c("spec4", 64, 32, 64, 3, 1, 1),
    _c("spec5", 64, 32, 64, 3, 2, 1),
    _c("spec6", 16, 32, 77, 3, 1, 1),
    _c("spec7", 64, 32, 64, 3, 1, 1, 2),
    _c("spec8", 96, 96, 81, 3, 2, 1, 3),
    _c("spec9", 96, 96, 64, 5, 2, 2, 4),
    _c("spec10", 32, 3, 256, 3, 1, 0),
    _c("spec11", 64, 32, 128, 3, 1, 1),
    _c("spec12", 64, 64, 128, 3, 1, 1),
    _c("spec13", 64, 64, 128, 3, 1, 1, 2),
    _c("spec14", 96, 96, 128, 3, 2, 1, 3),
    _c("spec15", 128, 128, 128, 5, 2, 2, 4),
    _c("spec16", 128, 128, 256, 5, 2, 2, 4),
    _c("spec17", 64, 64, 256, 3, 1, 1, 2),
    _c("spec18", 512, 512, 7, 3, 1, 1),
    _c("spec19", 2048, 1024, 14, 1, 2, 0),
]


def _pw(name: str, co: int, ci: int, h: int, w: int) -> ConvConfig:
    return ConvConfig(name, co, ci, h, w, (1, 1))


# Spec section 5, pointwise configs (1x1, stride 1, no padding).
POINTWISE_CONFIGS: list[ConvConfig] = [
    _pw("pw1", 1, 16, 8, 8),
    _pw("pw2", 2, 16, 8, 8),
    _pw("pw3", 3, 16, 8, 8),
    _pw("pw4", 32, 3, 64, 64),
    _pw("pw5", 64, 32, 32, 32),
    _pw("pw6", 96, 64, 16, 16),
    _pw("pw7", 13, 7, 57, 33),
    _pw("pw8", 80, 40, 64, 64),
    _pw("pw9", 160, 480, 8, 8),
    _pw("pw10", 22, 48, 256, 256),
    _pw("pw11", 48, 48, 128, 128),
    _pw("pw12", 128, 128, 128, 128),
    _pw("pw13", 64, 576, 128, 128),
]

# The distinct conv layers of ResNet-50 (224x224 input), batch 1.
RESNET50_CONFIGS: list[ConvConfig] = [
    _c("r50.conv1", 64, 3, 224, 7, 2, 3),
    _c("r50.l1.c1", 64, 64, 56, 1, 1, 0),
    _c("r50.l1.c2", 64, 64, 56, 3, 1, 1),
    _c("r50.l1.c3", 256, 64, 56, 1, 1, 0),
    _c("r50.l1.c1b", 64, 256, 56, 1, 1, 0),
    _c("r50.l2.c1", 128, 256, 56, 1, 1, 0),
    _c("r50.l2.c2s", 128, 128, 56, 3, 2, 1),
    _c("r50.l2.c2", 128, 128, 28, 3, 1, 1),
    _c("r50.l2.c3", 512, 128, 28, 1, 1, 0),
    _c("r50.l2.down", 512, 256, 56, 1, 2, 0),
    _c("r50.l2.c1b", 128, 512, 28, 1, 1, 0),
    _c("r50.l3.c1", 256, 512, 28, 1, 1, 0),
    _c("r50.l3.c2s", 256, 256, 28, 3, 2, 1),
    _c("r50.l3.c2", 256, 256, 14, 3, 1, 1),
    _c("r50.l3.c3", 1024, 256, 14, 1, 1, 0),
    _c("r50.l3.down", 1024, 512, 28, 1, 2, 0),
    _c("r50.l3.c1b", 256, 1024, 14, 1, 1, 0),
    _c("r50.l4.c1", 512, 1024, 14, 1, 1, 0),
    _c("r50.l4.c2s", 512, 512, 14, 3, 2, 1),
    _c("r50.l4.c2", 512, 512, 7, 3, 1, 1),
    _c("r50.l4.c3", 2048, 512, 7, 1, 1, 0),
    _c("r50.l4.down", 2048, 1024, 14, 1, 2, 0),
    _c("r50.l4.c1b", 512, 2048, 7, 1, 1, 0),
]

# MobileNet-v2-style pointwise (expand / project) layers, batch 1.
MOBILENET_PW_CONFIGS: list[ConvConfig] = [
    _pw("mbv2.pw.112x32-16", 16, 32, 112, 112),
    _pw("mbv2.pw.56x24-144", 144, 24, 56, 56),
    _pw("mbv2.pw.28x32-192", 192, 32, 28, 28),
    _pw("mbv2.pw.14x64-384", 384, 64, 14, 14),
    _pw("mbv2.pw.14x384-96", 96, 384, 14, 14),
    _pw("mbv2.pw.7x160-960", 960, 160, 7, 7),
    _pw("mbv2.pw.7x960-320", 320, 960, 7, 7),
]


def _dw(name: str, c: int, hw: int, k: int, s: int) -> ConvConfig:
    return ConvConfig(name, c, c, hw, hw, (k, k), (s, s), (k // 2, k // 2), (1, 1), c)


# Depthwise layers (groups == C_in == C_out, "same" padding), batch 1: MobileNet-v2's 3x3 ones
# (224x224 input) and two 5x5 ones of the MobileNet-v3 / EfficientNet kind.
MOBILENET_DW_CONFIGS: list[ConvConfig] = [
    _dw("mbv2.dw.112x32", 32, 112, 3, 1),
    _dw("mbv2.dw.112x96s2", 96, 112, 3, 2),
    _dw("mbv2.dw.56x144", 144, 56, 3, 1),
    _dw("mbv2.dw.56x144s2", 144, 56, 3, 2),
    _dw("mbv2.dw.28x192", 192, 28, 3, 1),
    _dw("mbv2.dw.28x192s2", 192, 28, 3, 2),
    _dw("mbv2.dw.14x384", 384, 14, 3, 1),
    _dw("mbv2.dw.14x576", 576, 14, 3, 1),
    _dw("mbv2.dw.14x576s2", 576, 14, 3, 2),
    _dw("mbv2.dw.7x960", 960, 7, 3, 1),
    _dw("dw5.28x240", 240, 28, 5, 1),
    _dw("dw5.14x672s2", 672, 14, 5, 2),
]


def make_case(
    cfg: ConvConfig,
    *,
    seed: int = 0,
    bias: bool = True,
    activation: str = "none",
    input_scale: float = INPUT_SCALE,
    input_zero_point: int = INPUT_ZERO_POINT,
    output_scale: float = OUTPUT_SCALE,
    output_zero_point: int = OUTPUT_ZERO_POINT,
) -> dict[str, Any]:
    """Upstream's test data for `cfg`: x ~ U(-1, 1) quantized with the input scale and zero
    point; weights int8 uniform in [-128, 127]; weight scales ~ U(0.005, 0.015); with bias=True
    a non-zero bias ~ U(-1, 1) (upstream's was always zero). Returns the positional arguments
    and keyword arguments of `q8ta_wgpu.conv2d` as {"args": (...), "kwargs": {...}}."""
    rng = np.random.default_rng(seed)
    x = quantize(rng.uniform(-1, 1, cfg.input_shape).astype(np.float32), input_scale, input_zero_point)
    w = rng.integers(-128, 128, cfg.weight_shape, dtype=np.int8)
    ws = rng.uniform(0.005, 0.015, cfg.c_out).astype(np.float32)
    b = rng.uniform(-1, 1, cfg.c_out).astype(np.float32) if bias else None
    kwargs = dict(
        input_scale=input_scale,
        input_zero_point=input_zero_point,
        output_scale=output_scale,
        output_zero_point=output_zero_point,
        activation=activation,
        **cfg.conv_kwargs(),
    )
    return {"args": (x, w, ws, b), "kwargs": kwargs}
