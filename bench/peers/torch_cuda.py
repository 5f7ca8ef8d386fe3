"""PyTorch on CUDA as a benchmark peer: cuDNN fp16 conv2d and torch._int_mm, each timed as GPU
time with no host launch in it.

A figure is one call's share of a CUDA graph of CALLS captured calls, replayed: the events around
a replay see the GPU work of CALLS calls and one graph launch, so the host's per-call dispatch
(15-25 us of PyTorch's eager path) is not counted, just as q8ta_wgpu's GPU timestamps count none.
cuDNN runs in both NCHW and channels_last, each with two ways of choosing its algorithm: its
autotuner (`cudnn.benchmark = True`, every algorithm tried: `benchmark_limit = 0`) and its
heuristic (`benchmark = False`). The fastest of the four is the figure (the autotuner times each
algorithm once, and in separate processes it picked algorithms up to 2x apart on the H200); the
best of each layout is kept beside it. As an independent check, the winner's kernels are also
timed by the PyTorch profiler (the sum of the CUDA kernel durations of one call):
`cudnn_fp16_kernel_s`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from q8ta_wgpu.bench import stats
from q8ta_wgpu.configs import ConvConfig

CALLS = 50  # calls captured in one graph
WARM_S = 0.1  # seconds of replays before timing (GPU clocks up)


def cuda_graph_seconds(
    torch: Any, fn: Callable[[], Any], *, calls: int, replays: int, repeats: int, warm_s: float
) -> np.ndarray:
    """Seconds per call of `fn`: `calls` calls captured in one CUDA graph (three calls before,
    on a side stream, let cudnn.benchmark choose its algorithms), replayed for `warm_s` seconds
    (clocks up), then `repeats` measurements of `replays` replays between two CUDA events, each
    divided by calls * replays: GPU time, no host launch per call."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture: cudnn.benchmark picks here
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < warm_s:
        graph.replay()
        torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(replays):
            graph.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e-3 / (calls * replays))
    del graph
    return np.array(times)


class TorchCudaPeer:
    """cuDNN fp16 conv2d and torch._int_mm on the first CUDA device; `available` is False
    without a CUDA build of torch or a CUDA device (its row fields are then null)."""

    def __init__(self, repeats: int = 20, profile: bool = True) -> None:
        self.repeats = repeats
        self.profile = profile
        try:
            import torch
        except ImportError:
            self.torch: Any = None
            return
        self.torch = torch if torch.cuda.is_available() else None
        if self.torch is not None:
            torch.backends.cudnn.benchmark_limit = 0  # the autotuner tries every algorithm

    @property
    def available(self) -> bool:
        return self.torch is not None

    def anchors(self) -> dict[str, Any]:
        if not self.available:
            return {"torch": None}
        torch = self.torch
        return {
            "torch": torch.__version__,
            "cudnn": torch.backends.cudnn.version(),
            "cuda_device": torch.cuda.get_device_name(0),
            "cuda_graph_calls": CALLS,
        }

    # -- timing --
    def graph_time(self, fn: Callable[[], Any]) -> np.ndarray:
        """Seconds per call of `fn`, one value per replay of a graph of CALLS calls (the calls
        before the capture choose cuDNN's algorithm, as `cudnn.benchmark` says at that time)."""
        return cuda_graph_seconds(self.torch, fn, calls=CALLS, replays=1, repeats=self.repeats, warm_s=WARM_S)

    def kernel_time(self, fn: Callable[[], Any], calls: int = 20) -> float:
        """Sum of the CUDA kernel durations of `calls` calls of `fn` (PyTorch profiler), per call."""
        torch = self.torch
        from torch.profiler import ProfilerActivity, profile

        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(calls):
                fn()
            torch.cuda.synchronize()
        total_us = sum(e.device_time_total for e in prof.key_averages())
        return total_us * 1e-6 / calls

    # -- the peers' figures for one conv --
    def cudnn_fp16(self, cfg: ConvConfig) -> dict[str, Any]:
        torch = self.torch
        x = torch.randn(cfg.input_shape, device="cuda", dtype=torch.float16)
        w = torch.randn(cfg.weight_shape, device="cuda", dtype=torch.float16)
        kw = dict(stride=cfg.stride, padding=cfg.padding, dilation=cfg.dilation, groups=cfg.groups)
        conv = torch.nn.functional.conv2d
        per_variant: dict[tuple[str, str], dict[str, float]] = {}
        fns = {}
        with torch.no_grad():
            for layout, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
                xl, wl = x.contiguous(memory_format=fmt), w.contiguous(memory_format=fmt)
                fns[layout] = lambda xl=xl, wl=wl: conv(xl, wl, **kw)
                for choice, benchmark in (("autotuned", True), ("heuristic", False)):
                    torch.backends.cudnn.benchmark = benchmark
                    per_variant[layout, choice] = stats(self.graph_time(fns[layout]))
            best = min(per_variant, key=lambda k: per_variant[k]["median"])
            torch.backends.cudnn.benchmark = best[1] == "autotuned"
            kernel_s = self.kernel_time(fns[best[0]]) if self.profile else None

        def layout_best(layout: str) -> float:
            return min(per_variant[layout, c]["median"] for c in ("autotuned", "heuristic"))

        return {
            "cudnn_fp16_s": per_variant[best]["median"],
            "cudnn_layout": best[0],
            "cudnn_algo": best[1],
            "cudnn_fp16_stats": per_variant[best],
            "cudnn_fp16_nchw_s": layout_best("nchw"),
            "cudnn_fp16_channels_last_s": layout_best("channels_last"),
            "cudnn_fp16_kernel_s": kernel_s,
        }

    def int_mm(self, m: int, n: int, k: int) -> float | None:
        """torch._int_mm on [m, k] x [k, n] int8 (sizes padded to its alignment rules)."""
        torch = self.torch
        m, n, k = max(17, m), -(-n // 8) * 8, -(-k // 8) * 8
        a = torch.randint(-128, 127, (m, k), device="cuda", dtype=torch.int8)
        b = torch.randint(-128, 127, (k, n), device="cuda", dtype=torch.int8)
        try:
            return float(np.median(self.graph_time(lambda: torch._int_mm(a, b))))
        except RuntimeError:
            return None

    def row(self, cfg: ConvConfig) -> dict[str, Any]:
        if not self.available:
            return {}
        out = self.cudnn_fp16(cfg)
        geo = cfg.geometry()
        out["int_mm_s"] = (
            self.int_mm(geo.N * geo.H_out * geo.W_out, geo.C_out, geo.KH * geo.KW * geo.C_in)
            if geo.groups == 1
            else None
        )
        return out
