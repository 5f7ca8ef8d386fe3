"""Shaders and pipelines of a Device: the packed dot product's probe, compiled modules and
compute pipelines, cached."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import wgpu

from . import _native
from .device_core import DeviceState, KernelError, Pass, is_device_lost

_DOT4_PROBE = """
@group(0) @binding(0) var<storage, read> a: array<u32>;
@group(0) @binding(1) var<storage, read_write> o: array<i32>;
@compute @workgroup_size(1) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  o[g.x] = dot4I8Packed(a[2u * g.x], a[2u * g.x + 1u]);
}
"""


class PipelineCache(DeviceState):
    """Compiled shader modules (per dot4 mode) and pipelines (per constants) of one device."""

    def dot_product(self) -> tuple[str, str]:
        """How the kernels' packed int8 dot product runs here: (kind, detail), kind one of
        "native" (the driver's packed-dot instruction: SPIR-V OpSDot), "naga polyfill" (naga
        expands dot4I8Packed into byte extracts, multiplies and adds), "q8ta fallback" (our own
        by-hand replacement, kernels/dot4_fallback.wgsl) or "unknown" (wgpu does not say which naga chose)."""
        if self.dot4_mode == "fallback":
            why = "forced by Device(dot4='fallback')" if self.dot4_forced else "dot4I8Packed failed the probe"
            return "q8ta fallback", f"by-hand extractBits + dot(vec4<i32>) ({why})"
        backend = self.backend
        if backend == "Vulkan":
            from ._vkquery import vulkan_integer_dot_product

            has = vulkan_integer_dot_product(self.name)
            if has is True:
                return "native", (
                    "naga emits SPIR-V OpSDot: the Vulkan driver reports shaderIntegerDotProduct "
                    "(VK_KHR_shader_integer_dot_product), which is what wgpu-hal checks"
                    + ("; a CPU driver (e.g. lavapipe) lowers OpSDot itself" if self.on_cpu else "")
                )
            if has is False:
                return (
                    "naga polyfill",
                    "the Vulkan driver lacks shaderIntegerDotProduct, so naga polyfills OpSDot",
                )
            return "unknown", (
                "naga emits OpSDot if the driver has shaderIntegerDotProduct, else a polyfill; "
                "the Vulkan loader could not be queried to tell which"
            )
        if backend == "OpenGL":
            return (
                "naga polyfill",
                "naga's GLSL backend always polyfills dot4I8Packed (GLSL has no packed dot)",
            )
        if backend == "Metal":
            return "unknown", (
                "naga writes MSL dot(packed_char4, packed_char4) (MSL 2.1+); whether that becomes a "
                "hardware instruction is up to Apple's compiler, which wgpu does not report"
            )
        if backend == "D3D12":
            return "unknown", (
                "naga writes HLSL dot4add_i8packed for shader model 6.4+ (DXC), else a polyfill "
                "(FXC); wgpu does not report which compiler and shader model it used"
            )
        return "unknown", f"no information for backend {backend!r}"

    # ---- dot4I8Packed probe ----------------------------------------------------------------
    def _probe_dot4(self) -> str:
        """'builtin' if WGSL dot4I8Packed compiles and is exact here, else 'fallback'."""
        rng = np.random.default_rng(0)
        words = rng.integers(0, 2**32, size=64, dtype=np.uint64).astype(np.uint32)
        words[:4] = [0x80808080, 0x80808080, 0x7F7F7F7F, 0x80808080]  # extremes: -128*-128, 127*-128
        b = words.view(np.int8).reshape(32, 2, 4).astype(np.int32)
        want = (b[:, 0] * b[:, 1]).sum(axis=1)
        try:
            mod = self._compile(_DOT4_PROBE, "dot4_probe")
            pipe = self.device.create_compute_pipeline(
                layout="auto", compute={"module": mod, "entry_point": "main"}
            )
        except Exception:  # noqa: BLE001 - any compile failure means: use the fallback
            return "fallback"
        src = self.upload(words)
        out = self.buffer(4 * 32)
        bg = self.bind_group(pipe, [src, out])
        self.run([Pass(pipe, bg, (32, 1, 1))])
        got = np.frombuffer(self.read(out), np.int32)
        return "builtin" if np.array_equal(got, want) else "fallback"

    # ---- shaders and pipelines -------------------------------------------------------------
    def _compile(self, src: str, label: str) -> Any:
        """A shader module of WGSL `src`: without loop bounding unless asked for (and where
        this wgpu cannot, with it)."""
        if not self.loop_bounding:
            mod = _native.create_module(self.device, src, label)
            if mod is not None:
                return mod
        return self.device.create_shader_module(code=src, label=label)

    def shader(self, name: str) -> Any:
        """The shader module of `name` (a kernel file or a registered source, includes resolved
        for this device's dot4 mode: shaders.py), compiled once."""
        key = (name, self.dot4_mode)
        mod = self._modules.get(key)
        if mod is None:
            src = self.library.source(name, dot4=self.dot4_mode)
            try:
                mod = self._compile(src, name)
            except wgpu.GPUError as e:
                if is_device_lost(str(e)):
                    raise self._error(e, f"compiling {name}") from None
                raise KernelError(f"kernel {name} failed to compile on {self.name}:\n{e}") from None
            self._modules[key] = mod
        return mod

    def pipeline(self, name: str, constants: Mapping[str, int | float | bool] | None = None) -> Any:
        """The compute pipeline of kernels/<name> (entry point `main`) with these override
        constants; cached by (file, constants)."""
        consts = dict(sorted((constants or {}).items()))
        key = (name, tuple(consts.items()))
        with self.lock:
            pipe = self._pipelines.get(key)
            if pipe is None:
                mod = self.shader(name)
                stage: dict[str, Any] = {"module": mod, "entry_point": "main"}
                if consts:
                    stage["constants"] = {k: float(v) for k, v in consts.items()}
                try:
                    pipe = self.device.create_compute_pipeline(
                        label=f"{name}{consts or ''}", layout="auto", compute=stage
                    )
                except wgpu.GPUError as e:
                    if is_device_lost(str(e)):
                        raise self._error(e, f"creating the pipeline of {name}") from None
                    raise KernelError(
                        f"kernel {name} with constants {consts} failed to validate on {self.name}:\n{e}"
                    ) from None
                self._pipelines[key] = pipe
        return pipe
