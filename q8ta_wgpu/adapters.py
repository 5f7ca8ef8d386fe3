"""Adapter choice: which WebGPU adapters exist and which one a Device takes."""

from __future__ import annotations

import os
from typing import Any

import wgpu

from .device_core import NoAdapterError

ADAPTER_ENV = "Q8TA_WGPU_ADAPTER"
BACKEND_ENV = "WGPU_BACKEND_TYPE"

_ADAPTER_RANK = {"DiscreteGPU": 0, "IntegratedGPU": 1, "VirtualGPU": 2, "CPU": 3}
_BACKEND_RANK = {"Vulkan": 0, "Metal": 1, "D3D12": 2, "OpenGL": 3}

NO_ADAPTER_HELP = (
    "No WebGPU adapter was found{detail}. q8ta_wgpu needs a GPU driver reachable by wgpu: on "
    "Debian/Ubuntu without a GPU install Mesa's software Vulkan driver with "
    "`sudo apt-get update && sudo apt-get install -y mesa-vulkan-drivers` (lavapipe); on other "
    "Linux distributions install the Mesa Vulkan drivers package (Fedora: mesa-vulkan-drivers, "
    "Arch: vulkan-swrast, Alpine: mesa-vulkan-swrast); macOS (Metal) and Windows (D3D12) need "
    "nothing extra."
)


def _adapter_sort_key(adapter: Any) -> tuple[int, int]:
    info = adapter.info
    return (
        _ADAPTER_RANK.get(info.get("adapter_type", ""), 4),
        _BACKEND_RANK.get(info.get("backend_type", ""), 4),
    )


def list_adapters() -> list[dict[str, Any]]:
    """Every adapter wgpu sees: name, backend and type, in the order `Device()` prefers them."""
    ads = sorted(wgpu.gpu.enumerate_adapters_sync(), key=_adapter_sort_key)
    return [
        {
            "name": a.info.get("device", ""),
            "backend": a.info.get("backend_type", ""),
            "type": a.info.get("adapter_type", ""),
            "description": a.info.get("description", ""),
        }
        for a in ads
    ]


def select_adapter(
    name: str | None = None,
    backend: str | None = None,
    power_preference: str = "high-performance",
) -> Any:
    """Pick an adapter: by name substring (argument or $Q8TA_WGPU_ADAPTER), by backend (argument or
    $WGPU_BACKEND_TYPE), else a discrete GPU first, then integrated, virtual, CPU; Vulkan first."""
    name = name if name is not None else os.environ.get(ADAPTER_ENV) or None
    backend = backend if backend is not None else os.environ.get(BACKEND_ENV) or None
    adapters = list(wgpu.gpu.enumerate_adapters_sync())
    if not adapters:
        raise NoAdapterError(NO_ADAPTER_HELP.format(detail=""))
    cands = adapters
    if backend:
        cands = [a for a in cands if a.info.get("backend_type", "").lower() == backend.lower()]
    if name:
        cands = [a for a in cands if name.lower() in a.info.get("device", "").lower()]
    if not cands:
        seen = ", ".join(f"{a.info.get('device')} ({a.info.get('backend_type')})" for a in adapters)
        want = " and ".join(
            s
            for s in (f"name containing {name!r}" if name else "", f"backend {backend!r}" if backend else "")
            if s
        )
        raise NoAdapterError(f"No WebGPU adapter with {want}; available: {seen}")
    if power_preference == "low-power":
        rank = {"IntegratedGPU": 0, "DiscreteGPU": 1, "VirtualGPU": 2, "CPU": 3}
        return min(
            cands, key=lambda a: (rank.get(a.info.get("adapter_type", ""), 4), _adapter_sort_key(a)[1])
        )
    return min(cands, key=_adapter_sort_key)
