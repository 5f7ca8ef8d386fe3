"""GPU timing of a Device: passes timed with timestamp queries on a GPU kept busy."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import wgpu

from .device_core import DeviceState, Pass, encode


class Timing(DeviceState):
    """GPU time of passes (timestamp queries), after keeping the GPU busy."""

    def _timed(self, passes: Sequence[Pass], whole: bool) -> list[float]:
        """Run `passes` with timestamp queries: each in its own compute pass, or (whole) all in
        one; their GPU times in seconds (waits for completion)."""
        enc = self.device.create_command_encoder()
        groups = [list(passes)] if whole else [[p] for p in passes]
        qs = self.device.create_query_set(type="timestamp", count=2 * len(groups))
        for i, group in enumerate(groups):
            tw = {
                "query_set": qs,
                "beginning_of_pass_write_index": 2 * i,
                "end_of_pass_write_index": 2 * i + 1,
            }
            label = group[0].label if len(group) == 1 else None
            encode(enc.begin_compute_pass(label=label, timestamp_writes=tw), group)
        qbuf = self.device.create_buffer(
            size=16 * len(groups), usage=wgpu.BufferUsage.QUERY_RESOLVE | wgpu.BufferUsage.COPY_SRC
        )
        enc.resolve_query_set(qs, 0, 2 * len(groups), qbuf, 0)
        self._submit(enc, passes)
        t = np.frombuffer(self.queue.read_buffer(qbuf), np.uint64).astype(np.int64)
        qs.destroy()
        qbuf.destroy()
        return [float(d) * self.timestamp_period_ns * 1e-9 for d in (t[1::2] - t[0::2])]

    def keep_busy(self, passes: Sequence[Pass], seconds: float) -> None:
        """Run `passes` back to back for about `seconds` of wall time. GPUs lower their clocks when
        idle (after 1 s idle the H100 ran a GEMM 4.8x slower, and still 2.8x slower after 0.3 s of
        work; 1 s brought it to speed), so timing starts from a busy GPU."""
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            self.run(passes)
            n += 1
            if n % 8 == 0:
                self.sync()  # bounded queue: `seconds` of submitting ~ of GPU work
        self.sync()

    def time_passes(
        self,
        passes: Sequence[Pass],
        *,
        warmup: int = 3,
        repeats: int = 20,
        warm_s: float = 0.0,
        whole: bool = False,
    ) -> np.ndarray:
        """GPU time of each pass, in seconds, over `repeats` runs after `warmup` untimed runs (and
        `warm_s` seconds of keeping the GPU busy with them): an array [repeats, len(passes)] from
        timestamp queries (needs "timestamp-query"). whole=True: [repeats, 1], the time of all
        passes run in one compute pass, as a call runs them."""
        self.keep_busy(passes, warm_s)
        for _ in range(warmup):
            self.run(passes)
        self.sync()
        return np.array([self.run(passes, timestamps=True, whole=whole) for _ in range(repeats)])
