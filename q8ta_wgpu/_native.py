"""wgpu-native's C entry points, used directly where wgpu-py does not expose a call or where its
Python layer costs most of a call: shader modules without naga's forced loop bounding
(`wgpuDeviceCreateShaderModuleTrusted`), the queue's timestamp period
(`wgpuQueueGetTimestampPeriod`), recording + submitting a call's dispatches (`Submitter`) and
reading a result back in the same submit (`Submitter.read`).
They use wgpu-py's own structures and library handle (the wgpu version is pinned in
pyproject.toml); where anything here is missing, they return None and the runtime does without
(the ordinary module call; 1 ns a tick; wgpu-py's encoder objects).

Loop bounding: by default wgpu compiles every WGSL loop with an extra 64-bit iteration counter and
exit test (`ShaderRuntimeChecks::force_loop_bounding`), so that a driver may not assume an infinite
loop away. It protects nothing in practice (the bound is 2^64 iterations) and it stands in the way
of the driver's loop optimizations: on the H100 the tiled GEMM ran up to 6% faster without it
(bench/results/archive/2026-11-24_analysis_H100.md). Every loop in kernels/ ends by construction (its trip count comes from a
validated shape or an override constant), so the runtime compiles its own kernels without the
counter. Bounds checks stay on.

Timestamps: wgpu-native resolves timestamp queries in the GPU's ticks unless its instance was
made with automatic normalization (off by default); the period converts them to nanoseconds. It
is 1 on NVIDIA and lavapipe, not on every GPU (e.g. Intel's integrated GPUs tick slower).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
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


class Submitter:
    """Records dispatches into one compute pass of a new command buffer and submits it, through
    wgpu-native's C functions with descriptors made once.

    Why: wgpu-py wraps each call in Python (descriptor structs, an error capture per call, an
    object per encoder). For a conv's two dispatches that was ~25 us of host time on the CI
    machine against ~7 us for the same native calls (bench/results/archive/2026-11-24_analysis_H100.md). Errors are still
    raised: one capture of wgpu-py's error handler spans the whole recording, and wgpu-native
    reports validation errors synchronously, inside the failing call."""

    def __init__(self, device: Any, queue: Any) -> None:
        from wgpu.backends.wgpu_native import _api
        from wgpu.backends.wgpu_native._ffi import ffi, lib
        from wgpu.backends.wgpu_native._helpers import ERROR_TYPES

        self._lib, self._ffi, self._null, self._errors, self._error_types = (
            lib,
            ffi,
            ffi.NULL,
            _api.error_handler,
            ERROR_TYPES,
        )
        empty = _api.to_c_string_view("")
        self._enc_desc = _api.new_struct_p("WGPUCommandEncoderDescriptor *", label=empty)
        self._pass_desc = _api.new_struct_p(
            "WGPUComputePassDescriptor *", label=empty, timestampWrites=ffi.NULL
        )
        self._cb_desc = _api.new_struct_p("WGPUCommandBufferDescriptor *", label=empty)
        self._cbs = ffi.new("WGPUCommandBuffer[1]")
        self._device, self._queue = device._internal, queue._internal

        # Buffer mapping (read): one callback for every map, reporting into _map_status.
        self._map_status: list[int] = []
        self._map_callback = ffi.callback(
            "void(WGPUMapAsyncStatus, WGPUStringView, void *, void *)",
            lambda status, _msg, _u1, _u2: self._map_status.append(int(status)),
        )
        self._map_info = _api.new_struct_p(
            "WGPUBufferMapCallbackInfo *",
            mode=lib.WGPUCallbackMode_AllowProcessEvents,
            callback=self._map_callback,
        )
        self._map_ok = int(lib.WGPUMapAsyncStatus_Success)
        self._map_read = int(lib.WGPUMapMode_Read)
        self._map_write = int(lib.WGPUMapMode_Write)

    def __call__(self, passes: Sequence[Any], copy: tuple[Any, Any, int] | None = None) -> None:
        """Record `passes` (pipeline, bind_group, workgroups) in order in one compute pass and
        submit; with `copy` = (source, destination, nbytes), the command buffer then copies
        nbytes from the start of source to destination (for `read`). Raises wgpu's GPUError (or
        its subclass) for an error wgpu-native reports."""
        self._submit_cb(self._encode(passes, copy))

    def record(
        self,
        passes: Sequence[Any],
        copy: tuple[Any, Any, int] | None = None,
        copy_in: tuple[Any, Any, int] | None = None,
    ) -> Recorded:
        """The command buffer `__call__` submits, recorded and finished but not submitted: the
        work of a call made ahead of it (it reads buffers when it runs, not when recorded).
        With `copy_in` = (source, destination, nbytes), that copy comes before the passes."""
        return Recorded(self._lib, self._encode(passes, copy, copy_in), self._null)

    def submit(self, work: Recorded) -> None:
        """Submit recorded work (once: it is released after)."""
        if work.cb == self._null:
            raise RuntimeError("this recorded work was already submitted or released")
        cb, work.cb = work.cb, self._null
        self._submit_cb(cb)

    def _encode(
        self,
        passes: Sequence[Any],
        copy: tuple[Any, Any, int] | None,
        copy_in: tuple[Any, Any, int] | None = None,
    ) -> Any:
        """A finished command buffer of `copy_in`, `passes`, then `copy`; one that failed
        validation is released and the error raised (wgpu-native aborts the process on
        submitting one)."""
        lib, null = self._lib, self._null
        enc = cp = cb = null
        self._errors.capture("q8ta_record")
        try:
            enc = lib.wgpuDeviceCreateCommandEncoder(self._device, self._enc_desc)
            if copy_in is not None:
                src, dst, nbytes = copy_in
                lib.wgpuCommandEncoderCopyBufferToBuffer(enc, src._internal, 0, dst._internal, 0, nbytes)
            if passes:  # (a copy alone needs no compute pass)
                cp = lib.wgpuCommandEncoderBeginComputePass(enc, self._pass_desc)
                for p in passes:
                    lib.wgpuComputePassEncoderSetPipeline(cp, p.pipeline._internal)
                    lib.wgpuComputePassEncoderSetBindGroup(cp, 0, p.bind_group._internal, 0, null)
                    x, y, z = p.workgroups
                    lib.wgpuComputePassEncoderDispatchWorkgroups(cp, x, y, z)
                lib.wgpuComputePassEncoderEnd(cp)
            if copy is not None:
                src, dst, nbytes = copy
                lib.wgpuCommandEncoderCopyBufferToBuffer(enc, src._internal, 0, dst._internal, 0, nbytes)
            cb = lib.wgpuCommandEncoderFinish(enc, self._cb_desc)
        finally:
            error = self._errors.release("q8ta_record")
            # Our references only: wgpu-native keeps what submitted work still needs.
            if cp != null:
                lib.wgpuComputePassEncoderRelease(cp)
            if enc != null:
                lib.wgpuCommandEncoderRelease(enc)
        if error is not None:
            if cb != null:
                lib.wgpuCommandBufferRelease(cb)
            self._raise(error)
        return cb

    def _submit_cb(self, cb: Any) -> None:
        """Submit command buffer `cb` and release our reference to it."""
        lib = self._lib
        self._errors.capture("q8ta_submit")
        try:
            self._cbs[0] = cb
            lib.wgpuQueueSubmit(self._queue, 1, self._cbs)
        finally:
            error = self._errors.release("q8ta_submit")
            lib.wgpuCommandBufferRelease(cb)
        self._raise(error)

    MAX_POLLS = 1000  # blocking polls while a map is pending (each waits for the queue)

    def read(self, staging: Any, nbytes: int, spin_s: float = 0.0) -> bytearray:
        """The first nbytes of `staging` (a MAP_READ buffer that submitted work copied into),
        once that work is done: mapped, copied out, unmapped.

        Why not wgpu-py's `queue.read_buffer`: it makes a buffer, an encoder and a submit per
        read, and waits for the map on its poll thread (a thread handoff); this maps the
        caller's staging buffer and polls on the calling thread (wgpuDevicePoll with wait).
        For up to `spin_s` seconds it first polls without waiting (a busy wait, as CUDA's default
        synchronization spins): a blocking wait returns some time after the work is done."""
        lib = self._lib
        self._map(staging, self._map_read, nbytes, spin_s, "readback")
        try:
            ptr = lib.wgpuBufferGetConstMappedRange(staging._internal, 0, nbytes)
            if ptr == self._null:
                raise RuntimeError("wgpu-native gave no mapped range for the readback buffer")
            return bytearray(self._ffi.buffer(ptr, nbytes))
        finally:
            lib.wgpuBufferUnmap(staging._internal)

    def map_for_write(self, upload: Any, nbytes: int, spin_s: float = 0.0) -> Any:
        """Map the first nbytes of `upload` (a MAP_WRITE buffer) once the work that reads it is
        done (waiting as `read` does); the pointer to write them at, valid until `unmap`."""
        self._map(upload, self._map_write, nbytes, spin_s, "upload")
        ptr = self._lib.wgpuBufferGetMappedRange(upload._internal, 0, nbytes)
        if ptr == self._null:
            self._lib.wgpuBufferUnmap(upload._internal)
            raise RuntimeError("wgpu-native gave no mapped range for the upload buffer")
        return ptr

    def write_mapped(self, ptr: Any, data: Any, nbytes: int) -> None:
        """Copy nbytes of `data` (a buffer: contiguous numpy) to `ptr` from `map_for_write`."""
        self._ffi.memmove(ptr, data, nbytes)

    def unmap(self, buffer: Any) -> None:
        """Unmap a mapped buffer (its pointers are then invalid)."""
        self._lib.wgpuBufferUnmap(buffer._internal)

    def _map(self, buffer: Any, mode: int, nbytes: int, spin_s: float, what: str) -> None:
        """Map the first nbytes of `buffer` in `mode`: non-blocking polls for up to spin_s
        seconds, then blocking ones; raises where it is not mapped."""
        lib = self._lib
        self._map_status.clear()
        self._errors.capture("q8ta_map")
        try:
            lib.wgpuBufferMapAsync(buffer._internal, mode, 0, nbytes, self._map_info[0])
            if spin_s > 0:
                deadline = time.perf_counter() + spin_s
                while not self._map_status and time.perf_counter() < deadline:
                    lib.wgpuDevicePoll(self._device, 0, self._null)
            polls = 0
            while not self._map_status and polls < self.MAX_POLLS:
                lib.wgpuDevicePoll(self._device, 1, self._null)
                polls += 1
        finally:
            error = self._errors.release("q8ta_map")
        self._raise(error)
        if not self._map_status:
            lib.wgpuBufferUnmap(buffer._internal)  # cancels the pending map
            raise RuntimeError(f"the {what} buffer was not mapped after {polls} polls")
        if self._map_status[0] != self._map_ok:  # not mapped: nothing to unmap
            raise RuntimeError(f"mapping the {what} buffer failed (status {self._map_status[0]})")

    def _raise(self, error: tuple[str, str] | None) -> None:
        if error is not None:
            kind, message = error
            raise self._error_types.get(kind, self._error_types[""])(message)


class Recorded:
    """A finished, unsubmitted command buffer (`Submitter.record`); released when submitted,
    when `release()` is called, or when it is garbage."""

    def __init__(self, lib: Any, cb: Any, null: Any) -> None:
        self._lib, self._null, self.cb = lib, null, cb

    def release(self) -> None:
        if self.cb != self._null:
            cb, self.cb = self.cb, self._null
            self._lib.wgpuCommandBufferRelease(cb)

    def __del__(self) -> None:
        self.release()


def submitter(device: Any, queue: Any) -> Submitter | None:
    """A Submitter for `device`, or None where this wgpu build lacks what it uses."""
    try:
        return Submitter(device, queue)
    except (ImportError, AttributeError, TypeError):
        return None
