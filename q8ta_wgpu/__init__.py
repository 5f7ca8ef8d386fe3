"""q8ta_wgpu: int8 quantized conv2d on any WebGPU adapter (Vulkan, Metal, D3D12, OpenGL).

    import q8ta_wgpu as q8
    y = q8.conv2d(x, weight, weight_scales, bias, input_scale=..., input_zero_point=...,
                  output_scale=..., output_zero_point=..., stride=1, padding=1)
"""

from __future__ import annotations

from . import layouts, reference
from .conv import QConv2d, QTensor, conv2d, im2col, prepack_weights, weight_sums
from .geometry import ConvGeometry
from .layouts import LAYOUTS, pack, pack_gpu, unpack, unpack_gpu
from .quant import dequantize, quantize, quantize_weights
from .runtime import Device, KernelError, NoAdapterError, default_device, info, list_adapters

__version__ = "0.1.0"

__all__ = [
    "LAYOUTS",
    "ConvGeometry",
    "Device",
    "KernelError",
    "NoAdapterError",
    "QConv2d",
    "QTensor",
    "conv2d",
    "default_device",
    "dequantize",
    "im2col",
    "info",
    "layouts",
    "list_adapters",
    "pack",
    "pack_gpu",
    "prepack_weights",
    "quantize",
    "quantize_weights",
    "reference",
    "unpack",
    "unpack_gpu",
    "weight_sums",
]
