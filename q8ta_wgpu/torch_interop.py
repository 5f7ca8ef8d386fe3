"""PyTorch interop (optional dependency): build a `QConv2d` from a torch quantized conv module and
convert quantized torch tensors to and from `QTensor`.

    import q8ta_wgpu as q8
    conv = q8.from_torch_conv(torch_qconv, input_scale=0.02, input_zero_point=128)
    y = q8.from_qtensor(conv(q8.to_qtensor(x_quint8)))          # torch quint8 in, quint8 out

Conventions. q8ta_wgpu activations are int8 with a zero point in [-128, 127]; torch's default
activation dtype is quint8 (uint8, zero point in [0, 255]). The same real values are represented
by shifting both the stored values and the zero point by 128: int8 q = quint8 q - 128,
int8 zp = quint8 zp - 128, so (q - zp) * scale does not change. qint8 tensors map 1:1.
Weights must be symmetric qint8 (zero point 0), per tensor or per output channel.

torch is imported lazily: importing q8ta_wgpu or this module never imports it; the functions
raise an ImportError with the install command when it is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .conv import QConv2d, QTensor
from .runtime import Device

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["from_qtensor", "from_torch_conv", "to_qtensor"]

_INSTALL_HINT = (
    "q8ta_wgpu's PyTorch interop needs PyTorch: pip install 'q8ta_wgpu[torch]' (or pip install torch)"
)


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:  # pragma: no cover - exercised only without torch
        raise ImportError(_INSTALL_HINT) from e
    return torch


def _shift_for(dtype: Any) -> int:
    """What to add to a torch activation value / zero point of `dtype` to get the int8 one."""
    torch = _torch()
    if dtype == torch.quint8:
        return -128
    if dtype == torch.qint8:
        return 0
    raise TypeError(f"activations must be torch.quint8 or torch.qint8, got {dtype}")


def _torch_zero_point(dtype: Any, zero_point: int, name: str) -> int:
    """A torch-convention zero point of `dtype` as an int8 zero point (range-checked)."""
    shift = _shift_for(dtype)
    zp = int(zero_point)
    lo, hi = (0, 255) if shift else (-128, 127)
    if not lo <= zp <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}] for {dtype}, got {zp}")
    return zp + shift


# ---- tensors ------------------------------------------------------------------------------
def to_qtensor(t: torch.Tensor, layout: str = "4W4C", device: Device | None = None) -> QTensor:
    """A per-tensor quantized torch tensor [N, C, H, W] (quint8 or qint8) as a QTensor on the GPU.

    Args:
        t: torch quantized tensor, dtype torch.quint8 or torch.qint8, qscheme per-tensor
           (affine or symmetric), 4 dimensions (NCHW; any memory format, any torch device).
        layout: packed layout on the GPU: "4W4C" (default, what convs read fastest), "4C"
           or "4C1W".
        device: a q8ta_wgpu.Device (default: the process-wide one).

    Returns:
        QTensor of shape [N, C, H, W], scale = t.q_scale() (as float32) and int8 zero point
        (t.q_zero_point() - 128 for quint8). Real values are unchanged.
    """
    torch = _torch()
    if not isinstance(t, torch.Tensor) or not t.is_quantized:
        raise TypeError(f"t must be a quantized torch.Tensor, got {type(t).__name__}")
    if t.qscheme() not in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        raise ValueError(f"t must be quantized per tensor, got qscheme {t.qscheme()}")
    if t.dim() != 4:
        raise ValueError(f"t must have 4 dimensions [N, C, H, W], got shape {tuple(t.shape)}")
    shift = _shift_for(t.dtype)
    zp = _torch_zero_point(t.dtype, t.q_zero_point(), "t.q_zero_point()")
    q = t.detach().cpu().int_repr().contiguous().numpy()
    x = (q.astype(np.int16) + shift).astype(np.int8) if shift else q.astype(np.int8, copy=False)
    return QTensor.from_numpy(x, float(t.q_scale()), zp, layout=layout, device=device)


def from_qtensor(qt: QTensor, dtype: Any = None) -> torch.Tensor:
    """A QTensor read back from the GPU as a per-tensor quantized torch tensor (CPU, NCHW).

    Args:
        qt: the QTensor (any layout).
        dtype: torch.quint8 (default; values and zero point + 128) or torch.qint8 (as stored).

    Returns:
        torch quantized tensor [N, C, H, W] with scale qt.scale and the zero point in `dtype`'s
        convention; the same real values as qt.
    """
    torch = _torch()
    if not isinstance(qt, QTensor):
        raise TypeError(f"qt must be a q8ta_wgpu.QTensor, got {type(qt).__name__}")
    dtype = torch.quint8 if dtype is None else dtype
    shift = -_shift_for(dtype)
    x = qt.numpy()
    if shift:
        data = torch.from_numpy((x.astype(np.int16) + shift).astype(np.uint8))
    else:
        data = torch.from_numpy(x)
    return torch._make_per_tensor_quantized_tensor(data, float(qt.scale), int(qt.zero_point) + shift)


# ---- modules ------------------------------------------------------------------------------
def _input_quant(input_from: Any, input_dtype: Any) -> tuple[float, int, Any]:
    """(scale, zero point in torch convention, dtype) of whatever produced the conv's input."""
    torch = _torch()
    if isinstance(input_from, QConv2d):  # already int8 convention
        return input_from.output_scale, input_from.output_zero_point + 128, torch.quint8
    if isinstance(input_from, QTensor):
        return input_from.scale, input_from.zero_point + 128, torch.quint8
    if isinstance(input_from, torch.Tensor):
        if not input_from.is_quantized or input_from.qscheme() not in (
            torch.per_tensor_affine,
            torch.per_tensor_symmetric,
        ):
            raise ValueError("input_from must be a per-tensor quantized torch tensor")
        return float(input_from.q_scale()), int(input_from.q_zero_point()), input_from.dtype
    if hasattr(input_from, "scale") and hasattr(input_from, "zero_point"):
        # torch.ao.nn.quantized.Quantize (tensor buffers, has .dtype) or a quantized conv /
        # linear module (python float / int; its output keeps its input's dtype, quint8 by default)
        scale = float(input_from.scale)
        zp = int(input_from.zero_point)
        dtype = getattr(input_from, "dtype", None)
        if dtype not in (torch.quint8, torch.qint8):
            dtype = torch.quint8 if input_dtype is None else input_dtype
        return scale, zp, dtype
    raise TypeError(
        "input_from must be a torch quantized module with scale/zero_point (e.g. QuantStub's "
        "converted Quantize, or the previous quantized conv), a quantized torch tensor, a "
        f"q8ta_wgpu.QConv2d or a QTensor; got {type(input_from).__name__}"
    )


def quantized_weight(wq: Any) -> tuple[np.ndarray, np.ndarray]:
    """A torch qint8 weight (symmetric per-tensor or per output channel, axis 0) as int8 numpy
    and float32 per-channel scales; ValueError for any other."""
    torch = _torch()
    if wq.dtype != torch.qint8:
        raise ValueError(f"weights must be torch.qint8, got {wq.dtype}")
    c_out = wq.shape[0]
    scheme = wq.qscheme()
    if scheme in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        if int(wq.q_zero_point()) != 0:
            raise ValueError(f"weight zero point must be 0 (symmetric), got {int(wq.q_zero_point())}")
        w_scales = np.full(c_out, wq.q_scale(), np.float64)
    elif scheme in (torch.per_channel_affine, torch.per_channel_symmetric):
        if int(wq.q_per_channel_axis()) != 0:
            raise ValueError(f"per-channel weights must use axis 0, got {wq.q_per_channel_axis()}")
        zps = wq.q_per_channel_zero_points()
        if bool((zps != 0).any()):
            raise ValueError("weight zero points must all be 0 (symmetric per-channel weights)")
        w_scales = wq.q_per_channel_scales().detach().cpu().double().numpy()
    else:
        raise ValueError(f"unsupported weight qscheme {scheme}")
    weight = wq.detach().cpu().int_repr().contiguous().numpy().astype(np.int8, copy=False)
    return weight, w_scales.astype(np.float32)


def from_torch_conv(
    module: Any,
    *,
    input_scale: float | None = None,
    input_zero_point: int | None = None,
    input_dtype: Any = None,
    input_from: Any = None,
    device: Device | None = None,
    method: str = "auto",
    output_layout: str = "4W4C",
) -> QConv2d:
    """A `QConv2d` computing what a torch quantized conv module computes (to within 1 LSB).

    Supported modules: torch.ao.nn.quantized.Conv2d and torch.ao.nn.intrinsic.quantized.ConvReLU2d
    (fused ReLU), with padding_mode "zeros" and qint8 weights quantized per tensor (the scale is
    repeated for every output channel) or per output channel (axis 0); weight zero points must
    be 0 (symmetric).

    torch modules do not store their input's quantization, so give it either as
    `input_scale` + `input_zero_point` (zero point in `input_dtype`'s convention: quint8, the
    default, in [0, 255]; qint8 in [-128, 127]) or as `input_from`: the module that produced the
    input (a converted QuantStub, i.e. torch.ao.nn.quantized.Quantize, or the previous quantized
    conv), a quantized torch tensor of the input, or the previous q8ta_wgpu QConv2d / a QTensor.

    The output quantization is module.scale and module.zero_point (a quantized conv's output keeps
    its input's dtype, so a quint8 zero point is shifted by -128 to int8).

    Args:
        module: the torch quantized conv module (CPU or not; weights are copied).
        input_scale, input_zero_point, input_dtype, input_from: the input quantization (above).
        device: a q8ta_wgpu.Device (default: the process-wide one).
        method, output_layout: passed to `QConv2d`.

    Returns:
        q8ta_wgpu.QConv2d expecting int8 NCHW input (numpy, or a QTensor made by `to_qtensor`).

    Raises:
        ImportError: torch is not installed.
        TypeError: module is not a supported quantized conv, or input_from is of an unknown type.
        ValueError: non-zero weight zero points, an unsupported padding mode or weight qscheme,
            or a missing / out-of-range input quantization.
    """
    torch = _torch()
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.quantized as nnq

    if isinstance(module, nniq.ConvReLU2d):
        activation = "relu"
    elif type(module) is nnq.Conv2d:
        activation = "none"
    else:
        raise TypeError(
            "module must be a torch.ao.nn.quantized.Conv2d or torch.ao.nn.intrinsic.quantized."
            f"ConvReLU2d, got {type(module).__module__}.{type(module).__name__}"
        )
    if getattr(module, "padding_mode", "zeros") != "zeros":
        raise ValueError(f"only padding_mode 'zeros' is supported, got {module.padding_mode!r}")

    # input quantization
    if input_from is not None:
        if input_scale is not None or input_zero_point is not None:
            raise TypeError("give either input_from or input_scale/input_zero_point, not both")
        in_scale, in_zp_torch, in_dtype = _input_quant(input_from, input_dtype)
    else:
        if input_scale is None or input_zero_point is None:
            raise ValueError(
                "torch modules do not store their input quantization: pass input_scale and "
                "input_zero_point (torch convention of input_dtype, quint8 by default) or input_from"
            )
        in_scale, in_zp_torch = float(input_scale), int(input_zero_point)
        in_dtype = torch.quint8 if input_dtype is None else input_dtype
    in_zp = _torch_zero_point(in_dtype, in_zp_torch, "input_zero_point")
    out_zp = _torch_zero_point(in_dtype, int(module.zero_point), "module.zero_point")

    weight, w_scales = quantized_weight(module.weight())
    b = module.bias()
    bias = None if b is None else b.detach().cpu().float().numpy()

    return QConv2d(
        weight,
        w_scales,
        bias,
        input_scale=in_scale,
        input_zero_point=in_zp,
        output_scale=float(module.scale),
        output_zero_point=out_zp,
        stride=tuple(module.stride),
        padding=tuple(module.padding),
        dilation=tuple(module.dilation),
        groups=int(module.groups),
        activation=activation,
        method=method,
        output_layout=output_layout,
        device=device,
    )
