"""Two wgpu-native calls that wgpu-py does not expose: shader modules without naga's forced loop
bounding (`wgpuDeviceCreateShaderModuleTrusted`) and the queue's timestamp period
(`wgpuQueueGetTimestampPeriod`). Both go through wgpu-native's C entry points with wgpu-py's own
structures (the wgpu version is pinned in pyproject.toml); where anything here is missing, they
return None and the runtime does without (the ordinary module call; 1 ns a tick).

Loop bounding: by default wgpu compiles every WGSL loop with an extra 64-bit iteration counter and
exit test (`ShaderRuntimeChecks::force_loop_bounding`), so that a driver may not assume an infinite
loop away. It protects nothing in practice (the bound is 2^64 iterations) and it stands in the way
of the driver's loop optimizations: on the H100 the tiled GEMM ran up to 6% faster without it
(bench/analysis.md). Every loop in kernels/ ends by construction (its trip count comes from a
validated shape or an override constant), so the runtime compiles its own kernels without the
counter. Bounds checks stay on.

Timestamps: wgpu-native resolves timestamp queries in the GPU's ticks unless its instance was
made with automatic normalization (off by default); the period converts them to nanoseconds. It
is 1 on NVIDIA and lavapipe, not on every GPU (e.g. Intel's integrated GPUs tick slower).
"""

from __future__ import annotations

from typing import Any

BOUNDS_CHECKS = 0x1  # WGPUShaderRuntimeChecks_BoundsChecks
LOOP_BOUNDING = 0x2  # WGPUShaderRuntimeChecks_ForceLoopBounding


def create_module(device: Any, code: str, label: str, checks: int = BOUNDS_CHECKS) -> Any | None:
    """A GPUShaderModule of WGSL `code` compiled with only `checks`, or None where this wgpu
    build has no trusted entry point. Compile errors raise as from `create_shader_module`."""
    try:
        from wgpu.backends.wgpu_native import _api
        from wgpu.backends.wgpu_native._ffi import ffi, lib

        create = _api.libf.wgpuDeviceCreateShaderModuleTrusted
        source = _api.new_struct_p("WGPUShaderSourceWGSL *", code=_api.to_c_string_view(code))
        source[0].chain.next = ffi.NULL
        source[0].chain.sType = lib.WGPUSType_ShaderSourceWGSL
        desc = _api.new_struct_p(
            "WGPUShaderModuleDescriptor *",
            nextInChain=ffi.cast("WGPUChainedStruct *", source),
            label=_api.to_c_string_view(label),
        )
        module_class = _api.GPUShaderModule
    except (ImportError, AttributeError):
        return None
    handle = create(device._internal, desc, checks)
    if handle == ffi.NULL:
        raise RuntimeError(f"shader module {label} could not be created")
    return module_class(label, handle, device)


def timestamp_period(queue: Any) -> float | None:
    """Nanoseconds per timestamp tick of `queue`, or None where this wgpu build cannot tell."""
    try:
        from wgpu.backends.wgpu_native import _api

        period = float(_api.libf.wgpuQueueGetTimestampPeriod(queue._internal))
    except (ImportError, AttributeError, TypeError):
        return None
    return period if period > 0 else None
