"""Benchmark: GPU-timestamp timings of each conv on this adapter, rated against anchors measured
in the same process: (a) buffer-copy bandwidth and (b) the dot4I8Packed peak. Each conv is timed
two ways: standalone (its passes alone, one compute pass: `conv_s`) and as a network runs it
(`chain_layer_s`: CHAIN_LAYERS convs of the shape back to back in one compute pass, ping-ponging
between two tensors where the output can feed the input, GPU timestamps around the whole chain,
divided by the layer count). The chain figure is the one comparable with a CUDA-graph call.

Comparisons with other libraries (cuDNN fp16 and torch._int_mm under CUDA graphs, ncnn's int8
Vulkan convolution) are peers passed to `main` by `bench/run.py` in the repository; without them
their columns are null.

Counting: ops = 2 per MAC, MACs = N * C_out * H_out * W_out * (C_in / groups) * KH * KW.
im2col traffic = 2 * bytes of the im2col matrix (each byte read once from the input, through
cache, and written once), compared with the copy kernel's 2 * bytes.

    python -m q8ta_wgpu bench [--suite spec,pointwise,resnet50,resnet50_b8,mobilenet_pw,mobilenet_dw]

writes bench/results/<adapter>.json. BENCHMARKS.md and the plots are the repository's, from those
files: bench/run.py writes them after its run, bench/report.py from the results alone.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .configs import (
    MOBILENET_DW_CONFIGS,
    MOBILENET_PW_CONFIGS,
    POINTWISE_CONFIGS,
    RESNET50_CONFIGS,
    SPEC_CONFIGS,
    ConvConfig,
    make_case,
)
from .conv import QConv2d, QTensor
from .runtime import Device, Pass

# Seconds of keeping the GPU busy with a conv's kernels before they are timed (clocks up).
WARM_S = 0.2

SUITES: dict[str, list[ConvConfig]] = {
    "spec": SPEC_CONFIGS,
    "pointwise": POINTWISE_CONFIGS,
    "resnet50": RESNET50_CONFIGS,
    "resnet50_b8": [c.with_batch(8) for c in RESNET50_CONFIGS],
    "mobilenet_pw": MOBILENET_PW_CONFIGS,
    "mobilenet_dw": MOBILENET_DW_CONFIGS,
}


def stats(values: np.ndarray) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max())}


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


# ---- anchors ------------------------------------------------------------------------------
def copy_pass(dev: Device, nbytes: int) -> Pass:
    """The copy kernel's pass over two fresh buffers of `nbytes` (rounded up to 16 bytes)."""
    nbytes = -(-nbytes // 16) * 16
    src = dev.buffer(nbytes)
    dst = dev.buffer(nbytes)
    pipe = dev.pipeline("copy_bw.wgsl", {"WG": 256})
    groups = min(-(-nbytes // (16 * 256)), 65535)
    return Pass(pipe, dev.bind("copy_bw.wgsl", pipe, {"src": src, "dst": dst}), (groups, 1, 1), "copy")


def copy_bandwidth(dev: Device, nbytes: int = 256 * 2**20, repeats: int = 20, rounds: int = 3) -> float:
    """Copy-kernel bandwidth in GB/s (2 * nbytes moved per run): the best of `rounds` medians."""
    nbytes = min(nbytes, dev.max_binding_size // 16 * 16)
    p = copy_pass(dev, nbytes)
    t = min(float(np.median(dev.time_passes([p], warmup=3, repeats=repeats)[:, 0])) for _ in range(rounds))
    return 2 * nbytes / t / 1e9


def dot4_peak(dev: Device, repeats: int = 10, rounds: int = 5) -> float:
    """Packed-dot throughput in TOPS (2 ops per MAC) of the microkernel dot4_peak.wgsl (with the
    device's dot product: dot4I8Packed, or its by-hand fallback): the best of `rounds` medians (a
    peak is what the adapter can reach; clocks ramp up during the first)."""
    p, macs = peak_pass(dev)
    t = min(float(np.median(dev.time_passes([p], warmup=2, repeats=repeats)[:, 0])) for _ in range(rounds))
    return 2 * macs / t / 1e12


def peak_pass(dev: Device, wg: int = 256, groups: int | None = None, iters: int = 1024) -> tuple[Pass, int]:
    """The pass of the peak microkernel (dot4_peak.wgsl), `groups` workgroups of `wg` threads
    running `iters` steps (default: as the bench runs it), and its MACs."""
    if groups is None:
        groups = 8 if dev.on_cpu else 2048
    pipe = dev.pipeline("dot4_peak.wgsl", {"WG": wg, "ITERS": iters})
    out = dev.buffer(4 * wg * groups)
    bg = dev.bind("dot4_peak.wgsl", pipe, {"o": out})
    return Pass(pipe, bg, (groups, 1, 1), "dot4_peak"), wg * groups * iters * 64 * 4


def warm_up(dev: Device, seconds: float = 1.0) -> None:
    """Keep the GPU busy for `seconds` so its clocks are up before anchors and kernels are timed:
    measured cold, the same kernels ran 2-4x slower. With the peak kernel, whose runs are long
    enough to keep the GPU busy between submits: warmed with a 16 MiB copy instead, the H100's
    copy anchor read 1681 GB/s, against 2953 after this warm-up."""
    dev.keep_busy([peak_pass(dev)[0]], seconds)


class Peer(Protocol):
    """Another library timed on the same shapes (bench/run.py's cuDNN and ncnn peers): its
    anchors (versions, devices) and, per conv, row fields (`cudnn_fp16_s`, `ncnn_int8_s`, ...)."""

    def anchors(self) -> dict[str, Any]: ...

    def row(self, cfg: ConvConfig) -> dict[str, Any]: ...


# A conv of almost no work (4 -> 4 channels, 4x4, 1x1): its per-layer time in a chain is the
# fixed cost of a layer (dispatches and the barriers between them), q8ta's and each peer's.
FLOOR_CONFIG = ConvConfig("floor.4x4x4.1x1", 4, 4, 4, 4, (1, 1))

# Fields that peers fill, null in a run without them (keys of the results JSON).
PEER_FIELDS = ("cudnn_fp16_s", "cudnn_layout", "int_mm_s", "ncnn_int8_s")


def floor_layer_time(dev: Device, layers: int, repeats: int) -> float:
    """Median per-layer time of FLOOR_CONFIG in a chain (seconds)."""
    case = make_case(FLOOR_CONFIG, seed=0)
    x, w, ws, b = case["args"]
    conv = QConv2d(w, ws, b, device=dev, **case["kwargs"])
    xt = QTensor.from_numpy(x, case["kwargs"]["input_scale"], case["kwargs"]["input_zero_point"], device=dev)
    return float(np.median(chain_layer_time(dev, conv, xt, layers=layers, repeats=repeats)[0]))


def chain_layer_time(
    dev: Device, conv: QConv2d, xt: QTensor, *, layers: int, repeats: int, warm_s: float = WARM_S / 2
) -> tuple[np.ndarray, str]:
    """Per-layer GPU time of `layers` calls of `conv` recorded back to back in one compute pass,
    as a network runs them: ping-ponging between the input tensor and an output tensor where
    the output has the input's shape and layout (the input is overwritten), else each call
    reading `xt` and writing the same output (the GPU kept busy `warm_s` first). Times [repeats]
    and the chain's mode."""
    plan = conv.plan(xt.shape, xt.layout, False)
    y = plan.take_output(dev)
    pingpong = tuple(plan.geo.output_shape) == tuple(xt.shape) and plan.out_layout == xt.layout
    links = [plan.passes(dev, xt.buffer, y)]
    if pingpong:
        links.append(plan.passes(dev, y, xt.buffer))
    chain = [p for i in range(layers) for p in links[i % len(links)]]
    t = dev.time_passes(chain, warmup=2, repeats=repeats, warm_s=warm_s, whole=True)[:, 0]
    plan.free_outputs.append(y)
    return t / layers, "ping-pong" if pingpong else "repeat"


# ---- one conv -----------------------------------------------------------------------------
def bench_conv(
    dev: Device,
    cfg: ConvConfig,
    repeats: int,
    anchors: dict[str, Any],
    peers: Sequence[Peer] = (),
    tune: bool = False,
    chain_layers: int = 24,
) -> dict[str, Any]:
    case = make_case(cfg, seed=0)
    x, w, ws, b = case["args"]
    conv = QConv2d(w, ws, b, device=dev, tune=tune, **case["kwargs"])
    xt = QTensor.from_numpy(x, case["kwargs"]["input_scale"], case["kwargs"]["input_zero_point"], device=dev)
    plan, passes, _ = conv.passes(xt)
    # Per-kernel times (each kernel in its own timed pass), then the whole conv as a call runs
    # it: every dispatch in one compute pass, timed from its start to its end.
    t = dev.time_passes(passes, warmup=5, repeats=repeats, warm_s=WARM_S)
    whole = dev.time_passes(passes, warmup=2, repeats=repeats, whole=True)[:, 0]
    labels = [p.label for p in passes]
    im2col_cols = [i for i, lb in enumerate(labels) if lb.startswith("im2col")]
    gemm_cols = [i for i, lb in enumerate(labels) if lb.startswith("gemm")]
    geo = plan.geo  # as the kernels run it (conv.kernel_geometry: C_in may be padded to 4)
    conv_geo = conv.geometry(x.shape)  # the conv itself: its MACs are the ops counted
    ops = 2 * conv_geo.macs
    conv_t = whole
    row: dict[str, Any] = {
        "name": cfg.name,
        "label": cfg.label(),
        "macs": int(conv_geo.macs),
        "ops": int(ops),
        "method": plan.method,
        "conv_s": stats(conv_t),
        "kernels_sum_s": stats(t.sum(axis=1)),
        "im2col_s": stats(t[:, im2col_cols].sum(axis=1)) if im2col_cols else None,
        "tops": ops / float(np.median(conv_t)) / 1e12,
    }
    # GEMM figures, where the conv runs a GEMM (depthwise_4w4c does not).
    for k in (
        "gemm_config",
        "gemm_s",
        "gemm_passes_sum_s",
        "gemm_tops",
        "gemm_padded_tops",
        "gemm_frac_peak",
    ):
        row[k] = None
    if gemm_cols:
        # The GEMM's dispatches (with split-K, the slices and their reduction) in one compute
        # pass, as a call runs them: a pass of its own per dispatch would charge the pass's fixed
        # cost (~5 us on the H100) once more for each.
        gemm_each_t = t[:, gemm_cols].sum(axis=1)
        gemm_t = gemm_each_t
        if len(gemm_cols) > 1:
            gemm_passes = [passes[i] for i in gemm_cols]
            gemm_t = dev.time_passes(gemm_passes, warmup=2, repeats=repeats, whole=True)[:, 0]
        row["gemm_config"] = conv.gemm_config(geo, geo.m_blocks)
        row["gemm_s"] = stats(gemm_t)
        row["gemm_passes_sum_s"] = stats(gemm_each_t)
        row["gemm_tops"] = ops / float(np.median(gemm_t)) / 1e12
        # The GEMM runs M_pad x K_pad x C_out_pad MACs: rate those against the dot4 peak.
        gemm_macs = geo.M * geo.K_per_group * (-(-geo.C_out_per_group // 4) * 4) * geo.groups
        row["gemm_padded_tops"] = 2 * gemm_macs / float(np.median(gemm_t)) / 1e12
        if anchors.get("dot4_peak_tops"):
            row["gemm_frac_peak"] = row["gemm_padded_tops"] / anchors["dot4_peak_tops"]
    row["a_bytes"] = int(geo.M * geo.K)  # the im2col matrix (of the kernels' geometry)

    def im2col_gbps(s: dict[str, float]) -> tuple[float, float | None]:
        """Bandwidth (A written + the same read) of an im2col timed `s`, and its copy fraction."""
        gbps = 2 * row["a_bytes"] / s["median"] / 1e9
        return gbps, gbps / anchors["copy_gbps"] if anchors.get("copy_gbps") else None

    row["im2col_gbps"] = row["im2col_frac_copy"] = None
    if im2col_cols:
        row["im2col_gbps"], row["im2col_frac_copy"] = im2col_gbps(row["im2col_s"])
    # The 4W4C im2col kernel on every shape it can take, whichever method the conv runs (its
    # own passes' times where it runs it), and the copy kernel moving the same bytes: a dispatch
    # costs some microseconds before it moves any, which small matrices cannot hide.
    row["im2col_4w4c_s"] = row["im2col_4w4c_frac_copy"] = row["copy_same_s"] = None
    row["im2col_4w4c_frac_copy_same"] = None
    if geo.C_in_per_group % 4 == 0:
        if plan.method == "im2col_4w4c":
            ti = t[:, im2col_cols].sum(axis=1)
        else:
            c2 = QConv2d(w, ws, b, device=dev, method="im2col_4w4c", **case["kwargs"])
            only = [p for p in c2.passes(xt)[1] if p.label.startswith("im2col_4w4c")]
            ti = dev.time_passes(only, warmup=3, repeats=repeats, warm_s=WARM_S / 2).sum(axis=1)
        row["im2col_4w4c_s"] = stats(ti)
        row["im2col_4w4c_frac_copy"] = im2col_gbps(row["im2col_4w4c_s"])[1]
        tc = dev.time_passes([copy_pass(dev, row["a_bytes"])], warmup=3, repeats=repeats)[:, 0]
        row["copy_same_s"] = stats(tc)
        row["im2col_4w4c_frac_copy_same"] = row["copy_same_s"]["median"] / row["im2col_4w4c_s"]["median"]
    # As a network runs it: per layer in a chain of calls in one compute pass.
    chain_t, row["chain_mode"] = chain_layer_time(dev, conv, xt, layers=chain_layers, repeats=repeats)
    row["chain_layer_s"] = stats(chain_t)
    row["chain_layers"] = chain_layers
    row["chain_tops"] = ops / row["chain_layer_s"]["median"] / 1e12
    row.update(dict.fromkeys(PEER_FIELDS))
    for peer in peers:
        row.update(peer.row(cfg))
    row.update(peer_ratios(row))
    return row


def peer_ratios(row: dict[str, Any]) -> dict[str, float | None]:
    """Peer time / q8ta time (> 1: q8ta faster), per layer in a chain against a peer's per-call
    (CUDA graph) or per-layer-in-a-chain figure; vs cuDNN also for the standalone conv."""
    chain, conv = row["chain_layer_s"]["median"], row["conv_s"]["median"]

    def ratio(peer_s: float | None, ours: float) -> float | None:
        return peer_s / ours if peer_s else None

    return {
        "vs_cudnn_fp16": ratio(row.get("cudnn_fp16_s"), chain),
        "vs_cudnn_fp16_standalone": ratio(row.get("cudnn_fp16_s"), conv),
        "vs_ncnn_int8": ratio(row.get("ncnn_int8_s"), chain),
    }


def host_overhead(dev: Device, calls: int = 300, chain: int = 50) -> dict[str, float]:
    """CPU time per cached QConv2d call on a GPU-resident tensor (no readback); the same per
    call for `chain` calls recorded in one `Device.recording()` block (the block's CPU time,
    its submit included, over `chain`); and the wall time of reading back a result (the whole
    packed output buffer, 256 KiB)."""
    cfg = SPEC_CONFIGS[3]  # spec4: 64x32 64x64 3x3
    case = make_case(cfg)
    x, w, ws, b = case["args"]
    conv = QConv2d(w, ws, b, device=dev, **case["kwargs"])
    xt = QTensor.from_numpy(x, case["kwargs"]["input_scale"], case["kwargs"]["input_zero_point"], device=dev)
    for _ in range(10):
        conv(xt)
    dev.sync()
    per_call = []
    for _ in range(calls):
        t0 = time.perf_counter()
        y = conv(xt)
        per_call.append(time.perf_counter() - t0)
        if len(per_call) % 50 == 0:
            dev.sync()  # keep the queue from growing without bound
    dev.sync()
    blocks = []
    for _ in range(calls // chain):
        t0 = time.perf_counter()
        with dev.recording():
            ys = [conv(xt) for _ in range(chain)]
        blocks.append((time.perf_counter() - t0) / chain)
        del ys
        dev.sync()
    reads = []
    for _ in range(20):
        t0 = time.perf_counter()
        dev.read(y.buffer)
        reads.append(time.perf_counter() - t0)
    return {
        "call_us": float(np.median(per_call)) * 1e6,
        "call_us_p90": float(np.percentile(per_call, 90)) * 1e6,
        "recorded_call_us": float(np.median(blocks)) * 1e6,
        "recorded_chain": chain,
        "readback_us": float(np.median(reads)) * 1e6,
        "readback_bytes": int(y.buffer.size),
    }


def ratio_stats(values: Sequence[float | None]) -> dict[str, float] | None:
    """Wins (ratio > 1: q8ta faster), count, median, min and max of the non-null ratios."""
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {"wins": sum(x > 1 for x in v), "of": len(v), "median": float(np.median(v)),
            "min": min(v), "max": max(v)}  # fmt: skip


def _frac_line(f: Sequence[float]) -> str:
    return (
        f"{len(f)} shapes: min {100 * min(f):.0f}%, median {100 * np.median(f):.0f}%, max {100 * max(f):.0f}%"
    )


def _ratio_line(r: dict[str, float]) -> str:
    return (
        f"q8ta faster on {r['wins']} of {r['of']}; peer/q8ta median {r['median']:.2f} "
        f"(min {r['min']:.2f}, max {r['max']:.2f})"
    )


RATIOS = {
    "vs_cudnn_fp16": "vs cuDNN fp16 (q8ta per layer in a chain / cuDNN per call, CUDA graph)",
    "vs_ncnn_int8": "vs ncnn int8 Vulkan (both per layer in a chain)",
    "vs_cudnn_fp16_standalone": "vs cuDNN fp16 (q8ta standalone conv / cuDNN per call, CUDA graph)",
}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per suite and over all rows: ratio statistics against each peer, the chain's saving over
    standalone calls, GEMM and im2col fractions of their anchors; and the same as text lines."""
    suites: dict[str, Any] = {}
    lines: dict[str, str] = {}
    for suite in ["all", *dict.fromkeys(r["suite"] for r in rows)]:
        rs = rows if suite == "all" else [r for r in rows if r["suite"] == suite]
        entry: dict[str, Any] = {"convs": len(rs)}
        for key, what in RATIOS.items():
            entry[key] = ratio_stats([r.get(key) for r in rs])
            if entry[key] and suite != "all":
                lines[f"{suite}: {what}"] = _ratio_line(entry[key])
        chain = [r["chain_layer_s"]["median"] / r["conv_s"]["median"] for r in rs if r.get("chain_layer_s")]
        entry["chain_over_standalone_median"] = float(np.median(chain)) if chain else None
        suites[suite] = entry
    s: dict[str, Any] = {"suites": suites}
    if suites["all"]["chain_over_standalone_median"] is not None:
        lines["per layer in a chain / standalone (all convs)"] = (
            f"median {suites['all']['chain_over_standalone_median']:.2f}"
        )
    big = [r["gemm_frac_peak"] for r in rows if r.get("gemm_frac_peak") is not None and r.get("big_gemm")]
    if big:
        s["gemm_frac_peak_big"] = float(np.median(big))
        lines["GEMM % of dot4 peak (K >= 512, M, N >= 256)"] = _frac_line(big)
    ic = [r for r in rows if r.get("im2col_4w4c_frac_copy") is not None]
    if ic:
        lines["im2col_4w4c % of copy bandwidth (every shape it takes)"] = _frac_line(
            [r["im2col_4w4c_frac_copy"] for r in ic]
        )
        lines["im2col_4w4c % of a copy of the same bytes (every shape it takes)"] = _frac_line(
            [r["im2col_4w4c_frac_copy_same"] for r in ic]
        )
        # A pass costs microseconds before it moves a byte (bench/probes/dispatch_floor.py):
        # only big matrices can show bandwidth.
        bigc = [r["im2col_4w4c_frac_copy"] for r in ic if r["a_bytes"] >= 16 * 2**20]
        if bigc:
            lines["im2col_4w4c % of copy bandwidth (A >= 16 MiB)"] = _frac_line(bigc)
    s["lines"] = lines
    return s


# ---- CLI ----------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default="spec,pointwise,resnet50,resnet50_b8,mobilenet_pw,mobilenet_dw",
                   help="comma-separated suites: " + ", ".join(SUITES))  # fmt: skip
    p.add_argument("--repeats", type=int, default=20, help="timed runs per kernel after warm-up (>= 20)")
    p.add_argument("--chain", type=int, default=24,
                   help="layers in the chain whose per-layer time is chain_layer_s (>= 20 for reported figures)")  # fmt: skip
    p.add_argument("--max-mmacs", type=float, default=None, help="skip configs above this many million MACs")
    p.add_argument("--out", default="bench/results", help="folder for <adapter>.json")
    p.add_argument("--append", action="store_true",
                   help="keep the other suites' rows of an earlier run's <adapter>.json in --out")  # fmt: skip
    p.add_argument("--tune", action="store_true",
                   help="autotune each conv's GEMM configuration and method afresh first (then cached per adapter)")  # fmt: skip


def main(args: argparse.Namespace, peers: Sequence[Peer] = ()) -> int:
    """The bench command: measure, write <adapter>.json in --out; the exit code."""
    return run_bench(args, peers)[0]


def run_bench(args: argparse.Namespace, peers: Sequence[Peer] = ()) -> tuple[int, Path | None]:
    """`main`'s run: the exit code and the results JSON written (None where none was), for
    callers that report on it (bench/run.py plots it and rewrites BENCHMARKS.md)."""
    dev = Device(args.adapter, backend=args.backend)
    if not dev.has_timestamps:
        print(f"error: {dev.name} has no timestamp-query feature; GPU times cannot be measured")
        return 3, None
    suites = [s.strip() for s in args.suite.split(",") if s.strip()]
    bad = [s for s in suites if s not in SUITES]
    if bad:
        print(f"error: unknown suite(s) {bad}; choose from {list(SUITES)}")
        return 2, None
    if args.repeats < 1:
        print("error: --repeats must be >= 1")
        return 2, None
    if args.chain < 2:
        print("error: --chain must be >= 2")
        return 2, None
    if args.tune:
        from . import tuning

        tuning.FORCE_MEASURE = True  # measure afresh, ignoring cached or shipped choices
    print(f"adapter {dev.name} ({dev.backend}); measuring anchors...", flush=True)
    warm_up(dev)
    anchors = {
        "copy_gbps": copy_bandwidth(dev),
        "dot4_peak_tops": dot4_peak(dev),
        # The same kernel with the runtime's by-hand dot product (what adapters without a usable
        # dot4I8Packed run): the ratio says whether dot4I8Packed is a native instruction here.
        "dot4_manual_tops": dot4_peak(Device(args.adapter, backend=args.backend, dot4="fallback")),
        "chain_floor_layer_s": floor_layer_time(dev, args.chain, args.repeats),
    }
    for peer in peers:
        anchors.update(peer.anchors())
    print(
        f"copy {anchors['copy_gbps']:.1f} GB/s, dot4I8Packed {anchors['dot4_peak_tops']:.2f} TOPS "
        f"(by hand {anchors['dot4_manual_tops']:.2f})",
        flush=True,
    )
    jobs = [(s, c) for s in suites for c in SUITES[s]]
    if args.max_mmacs is not None:
        jobs = [(s, c) for s, c in jobs if c.geometry().macs <= args.max_mmacs * 1e6]
    try:
        from tqdm import tqdm

        it = tqdm(jobs, desc="bench", unit="conv")
    except ImportError:
        it = jobs
    rows = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    partial = out / f"{slug(dev.name)}.partial.json"  # rows so far, should the run be cut short
    for suite, cfg in it:
        row = bench_conv(dev, cfg, args.repeats, anchors, peers, tune=args.tune, chain_layers=args.chain)
        row["suite"] = suite
        geo = cfg.geometry()
        row["big_gemm"] = geo.K_per_group >= 512 and geo.M >= 256 and geo.C_out_per_group >= 256
        rows.append(row)
        partial.write_text(json.dumps({"adapter": dev.name, "anchors": anchors, "rows": rows}, indent=1))
        if it is jobs:
            print(
                f"  {suite:12s} {cfg.name:22s} {row['conv_s']['median'] * 1e6:9.1f} us alone, "
                f"{row['chain_layer_s']['median'] * 1e6:9.1f} us in a chain",
                flush=True,
            )
    result = {
        "adapter": dev.name,
        "backend": dev.backend,
        "driver": dev.adapter.info.get("description", ""),
        "date": datetime.date.today().isoformat(),
        "wgpu": dev.info()["wgpu"],
        "repeats": args.repeats,
        "tuned": bool(args.tune),
        "chain_layers": args.chain,
        "peers": [type(peer).__name__ for peer in peers],
        "anchors": anchors,
        "host_overhead": host_overhead(dev),
        "rows": rows,
    }
    path = out / f"{slug(dev.name)}.json"
    this_run = {k: result[k] for k in ("date", "tuned", "anchors")} | {"suites": suites}
    result["runs"] = [this_run]
    if args.append and path.is_file():
        # Rows of the suites this run did not measure stay, each suite from its latest run.
        old = json.loads(path.read_text())
        kept = [r for r in old["rows"] if r["suite"] not in suites]
        result["rows"] = kept + rows
        result["runs"] = [run for run in old.get("runs", []) if set(run["suites"]) - set(suites)] + [this_run]
    result["summary"] = summarize(result["rows"])
    partial.unlink(missing_ok=True)
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")
    for k, v in result["summary"]["lines"].items():
        print(f"{k}: {v}")
    ho = result["host_overhead"]
    print(
        f"host overhead: {ho['call_us']:.0f} us per cached call, {ho['recorded_call_us']:.0f} us per "
        f"call recorded {ho['recorded_chain']} to a submit; readback {ho['readback_us']:.0f} us"
    )
    return 0, path
