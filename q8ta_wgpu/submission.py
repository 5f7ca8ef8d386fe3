"""Submission of a Device: passes recorded into one compute pass and submitted (through
wgpu-native's C calls where it can), `recording()` blocks, wgpu errors mapped to ours."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Self

import numpy as np
import wgpu

from .device_core import DeviceLostError, DeviceState, KernelError, Pass, encode, is_device_lost
from .geometry import fold_workgroups


class Submission(DeviceState):
    """Running passes: one command buffer, one compute pass; recording; error mapping."""

    # ---- recording ---------------------------------------------------------------------------
    MAX_PENDING = 4096  # recorded passes that force a submit (bounds one command buffer)
    submit_chunk = 16  # dispatches in the first command buffer of a run (see _chunks)
    submit_growth = 2.0  # each next command buffer's dispatches, times the last's

    @contextlib.contextmanager
    def recording(self) -> Iterator[Self]:
        """Collect the dispatches of every call in the block, submitted together when the
        outermost block ends (or at `flush()`), in one compute pass, in call order.

            with dev.recording():
                y = conv3(conv2(conv1(x)))  # QTensors: nothing submitted yet
            out = y.numpy()

        Anything that must see the GPU's results or the queue in order submits what is recorded
        first: reading back (`numpy()`, `read`, `sync`), writing a buffer (a numpy input),
        timing. So calls in a block give the same bytes as outside it; what a block saves is
        the host's cost of a submit per call. Blocks nest; the device is shared by threads, so
        a block also collects other threads' calls made meanwhile, in the order they came."""
        with self.lock:
            self._recording += 1
        try:
            yield self
        finally:
            with self.lock:
                self._recording -= 1
                if not self._recording:
                    self.flush()

    def flush(self) -> None:
        """Submit the passes recorded so far (see `recording`); nothing when none are."""
        with self.lock:
            if self._pending:
                passes, self._pending = self._pending, []
                self._dispatch(passes)  # a block asks for the fewest submits: one

    # ---- running -----------------------------------------------------------------------------
    def workgroups(self, count: int) -> tuple[int, int, int]:
        """Fold a 1-D workgroup count into (x, y, 1) with x, y <= max-workgroups-per-dimension;
        kernels rebuild the linear index as gid.x + gid.y * num_workgroups.x * WG."""
        return fold_workgroups(count, self.max_workgroups, self.name)

    def run(
        self, passes: Sequence[Pass], *, timestamps: bool = False, whole: bool = False
    ) -> list[float] | None:
        """Record and submit the passes in order, in command buffers of `_chunks` (inside
        `recording()`: record them only, submitted in one at the block's end). With timestamps=True (and adapter support)
        returns each pass's GPU time in seconds, each timed in its own compute pass; with
        whole=True too, one time: that of the single compute pass running them all, as an
        untimed call runs them (waits for completion)."""
        timed = timestamps and self.has_timestamps
        if timestamps and not timed:
            raise RuntimeError(f"adapter {self.name} has no timestamp-query feature")
        with self.lock:
            if timed:
                self.flush()  # recorded work goes first, untimed
                return self._timed(passes, whole)
            if self._recording:
                self._pending.extend(passes)
                if len(self._pending) >= self.MAX_PENDING:
                    self.flush()
                return None
            # (Nothing is pending outside a block: its end flushed.)
            for part in self._chunks(passes):
                self._dispatch(part)
        return None

    # ---- work recorded ahead (wgpu-native only) ---------------------------------------------
    def record(
        self,
        passes: Sequence[Pass],
        copy: tuple[Any, Any, int] | None = None,
        copy_in: tuple[Any, Any, int] | None = None,
    ) -> Any | None:
        """The passes recorded into one command buffer, then (source, destination, nbytes) `copy`
        (`copy_in` before them), submitted later by `submit`; None where wgpu-native's calls are
        missing (then `run`).

        Why: recording costs the host about as much as the GPU spends on the work (4-7 us a
        dispatch in wgpu-native's validation and tracking: bench/probes/net_host.py). Work
        recorded while the GPU runs the previous call's costs a call only its submit. A command
        buffer holds no data, only what to run on which buffers, read when it runs."""
        if self._submitter is None:
            return None
        try:
            return self._submitter.record(passes, copy, copy_in)
        except wgpu.GPUError as e:
            raise self._dispatch_error(e, passes) from None

    def submit(self, work: Any) -> None:
        """Submit work from `record` (after anything recorded in a `recording()` block)."""
        with self.lock:
            self.flush()
            try:
                self._submitter.submit(work)
            except wgpu.GPUError as e:
                raise self._error(e, "submitting recorded work", kernel=True) from None

    def read_mapped(self, staging: Any, nbytes: int) -> memoryview:
        """The first nbytes (a multiple of 4) of `staging`, a mappable buffer (`staging_buffer`)
        that submitted work copies into, once that work is done (a busy wait for up to
        `spin_wait_s` seconds, then blocking ones)."""
        with self.lock:
            try:
                return memoryview(self._submitter.read(staging, nbytes, self.spin_wait_s))
            except (wgpu.GPUError, RuntimeError) as e:
                raise self._error(e, "reading back a buffer") from None

    def map_for_write(self, upload: Any, nbytes: int) -> Any:
        """Map the first nbytes of `upload` (`upload_buffer`) for writing, once submitted work
        that reads it is done; the pointer for `write_mapped`, valid until `unmap`. Why: a queue
        write copies the bytes twice on the host and allocates a staging buffer each time; on
        the H200 writing a network's 0.6 MB input took 73-86 us that way, against 42-57 us mapped
        (bench/probes/completion_wait.py)."""
        with self.lock:
            try:
                return self._submitter.map_for_write(upload, nbytes, self.spin_wait_s)
            except (wgpu.GPUError, RuntimeError) as e:
                raise self._error(e, "mapping an upload buffer") from None

    def write_mapped(self, ptr: Any, array: np.ndarray) -> None:
        """Copy the bytes of C-contiguous `array` to `ptr` (`map_for_write`)."""
        self._submitter.write_mapped(ptr, array, array.nbytes)

    def unmap(self, buffer: Any) -> None:
        """Unmap a buffer mapped by `map_for_write` (its pointer is then invalid)."""
        with self.lock:
            self._submitter.unmap(buffer)

    def _dispatch_copy(self, source: Any, destination: Any, nbytes: int) -> None:
        """Submit a copy of nbytes from the start of source to destination (wgpu-native)."""
        try:
            self._submitter([], (source, destination, nbytes))
        except wgpu.GPUError as e:
            raise self._error(e, "copying a buffer for its readback") from None

    def _dispatch(self, passes: Sequence[Pass]) -> None:
        """Submit `passes` in one command buffer, one compute pass. wgpu orders the dispatches
        and puts barriers between those that touch what an earlier one wrote."""
        if self._submitter is not None:  # wgpu-native's C calls (_native.Submitter)
            try:
                self._submitter(passes)
            except wgpu.GPUError as e:
                raise self._dispatch_error(e, passes) from None
            return
        enc = self.device.create_command_encoder()
        encode(enc.begin_compute_pass(), passes)
        self._submit(enc, passes)

    def _submit(self, enc: Any, passes: Sequence[Pass]) -> None:
        """Finish and submit `enc`. Validation errors of the recorded dispatches surface at
        finish(): raised as KernelError naming the kernels (or DeviceLostError)."""
        try:
            self.queue.submit([enc.finish()])
        except wgpu.GPUError as e:
            raise self._dispatch_error(e, passes) from None

    def _chunks(self, passes: Sequence[Pass]) -> list[Sequence[Pass]]:
        """`passes` cut for `run`'s command buffers: submit_chunk dispatches, each next part
        submit_growth times the last.

        Why: recording costs the host 4-7 us a dispatch in wgpu-native (its validation and
        resource tracking: bench/probes/net_host.py), about what the GPU spends on one, so one
        command buffer for a whole network kept the GPU idle until the host had recorded it all;
        in parts, the GPU runs the first while the host records the next, and growing parts keep
        the submits few (bench/probes/submit_chunks.py: net.run + wait on the H200 at batch 1
        950 / 1609 / 1041 us for resnet18 / resnet50 / mobilenet_v2 against 1299 / 2326 / 1331 us
        in one command buffer). wgpu's barriers hold across submits too. A recording() block is
        submitted whole: it asks for the fewest submits (host time per call)."""
        step = max(1, self.submit_chunk)
        if len(passes) <= step:  # a call's few dispatches: no slicing on the hot path
            return [passes]
        parts, start = [], 0
        while start < len(passes):
            parts.append(passes[start : start + step])
            start += step
            step = max(1, int(step * self.submit_growth))
        return parts

    def _dispatch_error(self, e: Exception, passes: Sequence[Pass]) -> Exception:
        kernels = ", ".join(dict.fromkeys(getattr(p.pipeline, "label", "") or p.label for p in passes))
        return self._error(e, f"dispatch of {kernels}", kernel=True)

    def _error(self, e: Exception, what: str, *, kernel: bool = False) -> Exception:
        """The exception for wgpu error `e` during `what`: DeviceLostError (and the device marked
        lost) when the device is gone, else (kernel=True) KernelError with wgpu's message, else e."""
        msg = str(e).strip()
        if self.lost is not None or is_device_lost(msg):
            self.lost = self.lost or msg
            return DeviceLostError(
                f"the WebGPU device {self.name!r} was lost ({what} failed): {msg}\n"
                "Create a new q8ta_wgpu.Device (q8ta_wgpu.default_device() does so by itself)."
            )
        return KernelError(f"{what} failed on {self.name}:\n{msg}") if kernel else e
