"""Submission of a Device: passes recorded into one compute pass and submitted (through
wgpu-native's C calls where it can), `recording()` blocks, wgpu errors mapped to ours."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Self

import wgpu

from .device_core import DeviceLostError, DeviceState, KernelError, Pass, encode, is_device_lost
from .geometry import fold_workgroups


class Submission(DeviceState):
    """Running passes: one command buffer, one compute pass; recording; error mapping."""

    # ---- recording ---------------------------------------------------------------------------
    MAX_PENDING = 4096  # recorded passes that force a submit (bounds one command buffer)

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
                self._dispatch(passes)

    # ---- running -----------------------------------------------------------------------------
    def workgroups(self, count: int) -> tuple[int, int, int]:
        """Fold a 1-D workgroup count into (x, y, 1) with x, y <= max-workgroups-per-dimension;
        kernels rebuild the linear index as gid.x + gid.y * num_workgroups.x * WG."""
        return fold_workgroups(count, self.max_workgroups, self.name)

    def run(
        self, passes: Sequence[Pass], *, timestamps: bool = False, whole: bool = False
    ) -> list[float] | None:
        """Record and submit the passes in one command buffer, in order, all in one compute pass
        (inside `recording()`: record them only). With timestamps=True (and adapter support)
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
            self._dispatch(passes)  # (nothing is pending outside a block: its end flushed)
        return None

    def _dispatch(self, passes: Sequence[Pass]) -> None:
        """Submit `passes` in one compute pass: every dispatch of a call (or of a recording) in
        one pass. wgpu orders them and inserts the barriers between dispatches that touch what
        an earlier one wrote; fewer passes and submits = less host time per call."""
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
