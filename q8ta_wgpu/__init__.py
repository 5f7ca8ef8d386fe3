"""q8ta_wgpu: int8 quantized conv2d on any WebGPU adapter (Vulkan, Metal, D3D12, OpenGL).

import q8ta_wgpu as q8
y = q8.conv2d(x, weight, weight_scales, bias, input_scale=..., input_zero_point=...,
              output_scale=..., output_zero_point=..., stride=1, padding=1)

Chains of convs on GPU-resident tensors (QTensor), submitted together:
with q8.recording():
    y = conv2(conv1(q8.QTensor.from_numpy(x, scale, zero_point)))
out = y.numpy()
"""

from __future__ import annotations

from . import layouts, reference
from .conv import QConv2d, QTensor, conv2d, im2col, prepack_depthwise, prepack_weights, weight_sums
from .elementwise import QCat, QLookup
from .geometry import ConvGeometry
from .layouts import LAYOUTS, pack, pack_gpu, unpack, unpack_gpu
from .net import Net
from .ops import QAdaptiveAvgPool2d, QAdd, QAvgPool2d, QMaxPool2d, quantize_to_qtensor
from .quant import dequantize, quantize, quantize_weights
from .resample import QConvTranspose2d, QPixelShuffle, QUpsampleNearest2d
from .runtime import (
    Device,
    DeviceLostError,
    KernelError,
    NoAdapterError,
    default_device,
    info,
    list_adapters,
    recording,
)
from .torch_import import UnsupportedError, from_torch

__version__ = "0.1.0"

__all__ = [
    "LAYOUTS",
    "ConvGeometry",
    "Device",
    "DeviceLostError",
    "KernelError",
    "Net",
    "NoAdapterError",
    "Q8taQuantizer",
    "QAdaptiveAvgPool2d",
    "QAdd",
    "QAvgPool2d",
    "QCat",
    "QLookup",
    "QMaxPool2d",
    "QConv2d",
    "QTensor",
    "conv2d",
    "default_device",
    "dequantize",
    "from_qtensor",
    "from_torch",
    "from_torch_conv",
    "im2col",
    "info",
    "layouts",
    "list_adapters",
    "pack",
    "pack_gpu",
    "prepack_depthwise",
    "prepack_weights",
    "quantize",
    "quantize_pt2e",
    "quantize_to_qtensor",
    "quantize_weights",
    "recording",
    "reference",
    "to_qtensor",
    "UnsupportedError",
    "unpack",
    "unpack_gpu",
    "weight_sums",
    "QConvTranspose2d",
    "QPixelShuffle",
    "QUpsampleNearest2d",
]

# PyTorch interop, loaded on first use so that importing q8ta_wgpu never imports torch.
_TORCH_INTEROP = ("from_qtensor", "from_torch_conv", "to_qtensor")


def __getattr__(name: str) -> object:
    if name in _TORCH_INTEROP:
        from . import torch_interop

        return getattr(torch_interop, name)
    if name == "models":  # imports torch
        import importlib

        return importlib.import_module(".models", __name__)
    if name in ("Q8taQuantizer", "quantize_pt2e"):  # imports torch and torchao
        from . import quantizer

        return getattr(quantizer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
