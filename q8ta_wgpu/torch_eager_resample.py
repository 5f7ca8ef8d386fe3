"""The index maps and the transposed conv of a torch.ao eager-converted model, mixed into
`torch_eager._EagerImporter`, each mapped onto a step of q8ta_wgpu/resample.py:

- nn.Upsample(mode="nearest") and F.interpolate(mode="nearest") of a quantized tensor, and
  nn.PixelShuffle / nn.PixelUnshuffle, F.pixel_shuffle / F.pixel_unshuffle: torch's quantized
  kernels move the int8 values and keep the input's parameters: copies;
- torch.ao.nn.quantized.ConvTranspose2d (what convert makes of nn.ConvTranspose2d): its weights
  are per tensor (torch.ao's eager flow refuses a per-channel observer for transposed convs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .torch_import import Pending, QVal, UnsupportedError, Weight, _arg, _conv_transpose_params, _Host, _pair


class _EagerResample(_Host):
    """Nearest upsampling, pixel (un)shuffle and the transposed conv of the eager importer."""

    shift: int  # torch zero point - int8 zero point (128 for quint8)
    input: QVal | None
    input_channels: int | None

    if TYPE_CHECKING:

        def qinput(self, node: Any, i: int = 0) -> QVal: ...
        def bias(self, mod: Any) -> Any: ...
        def weight(self, mod: Any, name: str) -> Weight: ...
        def out(self, p: Pending, mod: Any, node: Any) -> QVal: ...

    def moved(self, node: Any, x: QVal, kind: str, params: dict[str, Any]) -> QVal:
        """An index map's step: its output keeps x's parameters (a copy)."""
        return self.make_step(Pending(kind, node.name, (x,), params), node.name, x.scale, x.zero_point)

    def upsample(
        self, node: Any, x: QVal, size: Any, scale: Any, mode: Any, recompute: Any, what: str
    ) -> QVal:
        if mode != "nearest":
            raise UnsupportedError(f"{what}: mode {mode!r} (only 'nearest')")
        params = dict(size=None if size is None else _pair(size, 1),
                      scale_factor=None if scale is None else tuple(float(v) for v in _pairf(scale)),
                      recompute=bool(recompute))  # fmt: skip
        return self.moved(node, x, "upsample_nearest2d", params)

    def resample_module(self, node: Any, mod: Any, x: QVal) -> QVal | None:
        """The step of module `mod` when it is one of this mixin's, else None."""
        import torch
        import torch.ao.nn.quantized as nnq

        what = f"module {node.target!r} ({type(mod).__name__})"
        if isinstance(mod, torch.nn.Upsample):
            if mod.align_corners:
                raise UnsupportedError(f"{what}: align_corners")
            rec = mod.recompute_scale_factor
            return self.upsample(node, x, mod.size, mod.scale_factor, mod.mode, rec, what)
        if isinstance(mod, torch.nn.PixelShuffle | torch.nn.PixelUnshuffle):
            unshuffle = isinstance(mod, torch.nn.PixelUnshuffle)
            r = getattr(mod, "downscale_factor" if unshuffle else "upscale_factor")
            return self.moved(node, x, "pixel_shuffle", dict(factor=int(r), unshuffle=unshuffle))
        if isinstance(mod, nnq.ConvTranspose2d):
            if mod.padding_mode != "zeros":
                raise UnsupportedError(f"{what}: padding_mode {mod.padding_mode!r} (only zeros)")
            if self.input_channels is None and x is self.input:
                self.input_channels = int(mod.in_channels)
            if mod.weight().qscheme() not in (torch.per_tensor_affine, torch.per_tensor_symmetric):
                raise UnsupportedError(
                    f"{what}: per-channel weights (torch.ao's eager flow makes per-tensor ones)"
                )
            w = self.weight(mod, what)
            group_scales = np.full(w.q.shape[1], w.scales[0], np.float32)  # per tensor
            params = _conv_transpose_params(w.q, group_scales, self.bias(mod), stride=mod.stride, padding=mod.padding,
                                            output_padding=mod.output_padding, dilation=mod.dilation,
                                            groups=mod.groups)  # fmt: skip
            return self.out(Pending("conv_transpose2d", str(node.target), (x,), params), mod, node)
        return None

    def resample_function(self, node: Any) -> QVal | None:
        """The step of function node `node` when it is one of this mixin's, else None."""
        import torch
        import torch.nn.functional as F

        t = node.target
        if t is F.interpolate:
            size, scale = _arg(node, 1, "size"), _arg(node, 2, "scale_factor")
            mode, align = _arg(node, 3, "mode", "nearest"), _arg(node, 4, "align_corners")
            rec = _arg(node, 5, "recompute_scale_factor")
            if align:
                raise self.fail(node, "align_corners")
            return self.upsample(node, self.qinput(node), size, scale, mode, rec, f"node {node.name!r}")
        if t in (F.pixel_shuffle, F.pixel_unshuffle, torch.pixel_shuffle, torch.pixel_unshuffle):
            unshuffle = "unshuffle" in t.__name__
            r = _arg(node, 1, "downscale_factor" if unshuffle else "upscale_factor", None)
            return self.moved(
                node, self.qinput(node), "pixel_shuffle", dict(factor=int(r), unshuffle=unshuffle)
            )
        return None


def _pairf(v: Any) -> tuple[Any, Any]:
    return (v[0], v[1]) if isinstance(v, list | tuple) else (v, v)
