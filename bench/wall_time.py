"""Wall time per call, the one timer of the host-inclusive figures in bench/ (net(x), PyTorch's
eager and CPU calls, ncnn's inferences, the host-time probe)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from q8ta_wgpu.bench import stats


def median_wall(
    fn: Callable[[], Any],
    repeats: int,
    warmup: int = 3,
    warm_s: float = 0.0,
    after: Callable[[], Any] | None = None,
) -> dict[str, float]:
    """Wall time per call of fn in seconds (perf_counter around each call): median, min, max of
    `repeats` calls (at least 1), after `warmup` calls and then `warm_s` seconds of calls;
    `after()`, when given, runs untimed after every call (e.g. a wait for the GPU)."""
    for _ in range(warmup):
        fn()
        if after:
            after()
    end = time.perf_counter() + warm_s
    while time.perf_counter() < end:
        fn()
        if after:
            after()
    times = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if after:
            after()
    return stats(np.array(times))
