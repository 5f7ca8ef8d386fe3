"""Benchmark: GPU-timestamp timings of each kernel, rated against anchors measured in the same
process on the same adapter: (a) buffer-copy bandwidth, (b) the dot4I8Packed peak, and where
torch with CUDA is present (c) cuDNN float16 conv2d and (d) torch._int_mm on the same shapes.

Counting: ops = 2 per MAC, MACs = N * C_out * H_out * W_out * (C_in / groups) * KH * KW.
im2col traffic = 2 * bytes of the im2col matrix (each byte read once from the input, through
cache, and written once), compared with the copy kernel's 2 * bytes.

    python -m q8ta_wgpu bench [--suite spec,pointwise,resnet50,resnet50_b8,mobilenet_pw,mobilenet_dw]
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import time
from pathlib import Path
from typing import Any

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
    return Pass(pipe, dev.bind_group(pipe, [src, dst]), (groups, 1, 1), "copy")


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
    return Pass(pipe, dev.bind_group(pipe, [out]), (groups, 1, 1), "dot4_peak"), wg * groups * iters * 64 * 4


def warm_up(dev: Device, seconds: float = 1.0) -> None:
    """Keep the GPU busy for `seconds` so its clocks are up before anchors and kernels are timed:
    measured cold, the same kernels ran 2-4x slower. With the peak kernel, whose runs are long
    enough to keep the GPU busy between submits: warmed with a 16 MiB copy instead, the H100's
    copy anchor read 1681 GB/s, against 2953 after this warm-up."""
    dev.keep_busy([peak_pass(dev)[0]], seconds)


class TorchAnchors:
    """cuDNN float16 conv2d and torch._int_mm timed with CUDA events (None without CUDA)."""

    def __init__(self) -> None:
        try:
            import torch
        except ImportError:
            self.torch = None
            return
        self.torch = torch if torch.cuda.is_available() else None
        if self.torch is not None:
            torch.backends.cudnn.benchmark = True

    @property
    def available(self) -> bool:
        return self.torch is not None

    def _time(self, fn, repeats: int) -> float:
        torch = self.torch
        for _ in range(5):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) * 1e-3)
        return float(np.median(times))

    def cudnn_fp16(self, cfg: ConvConfig, repeats: int) -> float | None:
        if not self.available:
            return None
        torch = self.torch
        x = torch.randn(cfg.input_shape, device="cuda", dtype=torch.float16)
        w = torch.randn(cfg.weight_shape, device="cuda", dtype=torch.float16)
        f = torch.nn.functional.conv2d
        kw = dict(stride=cfg.stride, padding=cfg.padding, dilation=cfg.dilation, groups=cfg.groups)
        with torch.no_grad():
            return self._time(lambda: f(x, w, **kw), repeats)

    def int_mm(self, m: int, n: int, k: int, repeats: int) -> float | None:
        """torch._int_mm on [m, k] x [k, n] int8 (sizes padded to its alignment rules)."""
        if not self.available:
            return None
        torch = self.torch
        m, n, k = max(17, m), -(-n // 8) * 8, -(-k // 8) * 8
        a = torch.randint(-128, 127, (m, k), device="cuda", dtype=torch.int8)
        b = torch.randint(-128, 127, (k, n), device="cuda", dtype=torch.int8)
        try:
            return self._time(lambda: torch._int_mm(a, b), repeats)
        except RuntimeError:
            return None


# ---- one conv -----------------------------------------------------------------------------
def bench_conv(
    dev: Device,
    cfg: ConvConfig,
    repeats: int,
    anchors: dict[str, Any],
    torch_anchors: TorchAnchors,
    tune: bool = False,
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
    row["cudnn_fp16_s"] = torch_anchors.cudnn_fp16(cfg, repeats)
    row["speedup_vs_cudnn"] = row["cudnn_fp16_s"] / row["conv_s"]["median"] if row["cudnn_fp16_s"] else None
    row["int_mm_s"] = (
        torch_anchors.int_mm(
            geo.N * geo.H_out * geo.W_out, geo.C_out, conv_geo.KH * conv_geo.KW * conv_geo.C_in, repeats
        )
        if geo.groups == 1
        else None
    )
    return row


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


# ---- reporting ----------------------------------------------------------------------------
def write_benchmarks_md(results_dir: Path, md_path: Path) -> None:
    """BENCHMARKS.md from every bench/results/*.json, with plots next to the JSON files."""
    files = [f for f in sorted(results_dir.glob("*.json")) if '"anchors"' in f.read_text()[:2000]]
    out = [
        "# Benchmarks",
        "",
        "Written by `python -m q8ta_wgpu bench` from `bench/results/*.json`; every figure is a median of",
        "GPU timestamps after warm-up, measured in one process, with its anchors, on the adapter named.",
        "Ops = 2 per MAC with C_in/groups per output. `gemm %peak`: GEMM rate over its padded MACs against",
        "the measured dot4I8Packed peak. `im2col %copy`: im2col rate (2 x bytes of A) against the copy",
        "kernel (256 MiB); `%copy same bytes`: the copy kernel's time for A's bytes over im2col's time.",
        "`vs cuDNN`: cuDNN float16 conv2d time / q8ta conv time (kernel time; > 1 means faster).",
        "",
    ]
    analysis = results_dir.parent / "analysis.md"  # hand-written reading of the results
    if analysis.is_file():
        out += [analysis.read_text().rstrip(), ""]
    for f in files:
        r = json.loads(f.read_text())
        a = r["anchors"]
        out += [
            f"## {r['adapter']} ({r['backend']}), {r['date']}",
            "",
            f"Driver {r.get('driver', '')}; wgpu {r.get('wgpu', '')}. Anchors: copy {a['copy_gbps']:.0f} GB/s, "
            f"dot4I8Packed peak {a['dot4_peak_tops']:.2f} TOPS (hand-unpacked: {a.get('dot4_manual_tops') or 0:.2f} TOPS)"
            + (f"; torch {a['torch']} with CUDA" if a.get("torch") else "; no CUDA torch"),
            "",
        ]
        ho = r.get("host_overhead")
        if ho:
            rec = ""
            if ho.get("recorded_call_us") is not None:
                rec = (
                    f"; {ho['recorded_call_us']:.0f} us per call in a `recording()` block of "
                    f"{ho['recorded_chain']} calls (one submit)"
                )
            out += [
                f"Host overhead: {ho['call_us']:.0f} us per cached QConv2d call on a QTensor (p90 "
                f"{ho['call_us_p90']:.0f} us){rec}; reading back its {ho['readback_bytes'] // 1024} KiB "
                f"result: {ho['readback_us']:.0f} us.",
                "",
            ]
        summ = r.get("summary")
        if summ:
            out += [f"- {k}: {v}" for k, v in summ.items()] + [""]
        out += [
            "| suite | config | shape | method | conv us | TOPS | gemm %peak | im2col_4w4c %copy | %copy same bytes | cuDNN fp16 us | vs cuDNN |",
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]

        def fmt(v, spec):
            return "" if v is None else format(v, spec)

        for row in r["rows"]:
            cud = row.get("cudnn_fp16_s")
            out.append(
                f"| {row['suite']} | {row['name']} | {row['label']} | {row['method']} | "
                f"{row['conv_s']['median'] * 1e6:.1f} | {row['tops']:.2f} | "
                f"{fmt(row.get('gemm_frac_peak') and 100 * row['gemm_frac_peak'], '.0f')} | "
                f"{fmt(row.get('im2col_4w4c_frac_copy') and 100 * row['im2col_4w4c_frac_copy'], '.0f')} | "
                f"{fmt(row.get('im2col_4w4c_frac_copy_same') and 100 * row['im2col_4w4c_frac_copy_same'], '.0f')} | "
                f"{fmt(cud and cud * 1e6, '.1f')} | {fmt(row.get('speedup_vs_cudnn'), '.2f')} |"
            )
        png = results_dir / f"{f.stem}.png"
        if png.exists():
            out += ["", f"![{r['adapter']}](bench/results/{png.name})"]
        out.append("")
    md_path.write_text("\n".join(out))


def plot_results(json_path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    r = json.loads(json_path.read_text())
    rows = r["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    ax = axes[0]
    names = [row["name"] for row in rows]
    xs = np.arange(len(rows))
    ax.bar(xs, [row["tops"] for row in rows], label="q8ta conv (the method it runs)")
    cud = [row["ops"] / row["cudnn_fp16_s"] / 1e12 if row.get("cudnn_fp16_s") else np.nan for row in rows]
    if not np.all(np.isnan(cud)):
        ax.plot(xs, cud, "r.", label="cuDNN fp16 conv2d")
    ax.axhline(r["anchors"]["dot4_peak_tops"], color="k", ls="--", label="dot4I8Packed peak")
    ax.set_yscale("log")
    ax.set_xticks(xs, names, rotation=90, fontsize=6)
    ax.set_ylabel("TOPS (2 ops/MAC)")
    ax.set_title(f"{r['adapter']} ({r['backend']})")
    ax.legend(fontsize=7)
    ax = axes[1]
    gp = [100 * (row.get("gemm_frac_peak") or np.nan) for row in rows]
    ic = [100 * (row.get("im2col_4w4c_frac_copy") or np.nan) for row in rows]
    ax.plot(xs, gp, "o", label="GEMM % of dot4 peak")
    ax.plot(xs, ic, "s", label="im2col_4w4c % of copy bandwidth")
    same = [100 * (row.get("im2col_4w4c_frac_copy_same") or np.nan) for row in rows]
    ax.plot(xs, same, "x", label="im2col_4w4c % of a copy of the same bytes")
    ax.set_xticks(xs, names, rotation=90, fontsize=6)
    ax.set_ylabel("% of anchor")
    ax.legend(fontsize=7)
    fig.tight_layout()
    png = json_path.with_suffix(".png")
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def summarize(rows: list[dict[str, Any]]) -> dict[str, str]:
    s: dict[str, str] = {}
    spec = [r for r in rows if r["suite"] == "spec"]
    sp = [r["speedup_vs_cudnn"] for r in spec if r.get("speedup_vs_cudnn")]
    if sp:
        wins = sum(v > 1 for v in sp)
        s["faster than cuDNN fp16 (spec configs, batch 1)"] = (
            f"{wins} of {len(sp)} ({100 * wins / len(sp):.0f}%); ratios min {min(sp):.2f}, median {np.median(sp):.2f}, max {max(sp):.2f}"
        )
    dw = [r["speedup_vs_cudnn"] for r in rows if r["suite"] == "mobilenet_dw" and r.get("speedup_vs_cudnn")]
    if dw:
        wins = sum(v > 1 for v in dw)
        s["faster than cuDNN fp16 (depthwise layers, batch 1)"] = (
            f"{wins} of {len(dw)}; ratios min {min(dw):.2f}, median {np.median(dw):.2f}, max {max(dw):.2f}"
        )
    big = [r for r in rows if r.get("gemm_frac_peak") is not None and r.get("big_gemm")]
    if big:
        f = [r["gemm_frac_peak"] for r in big]
        s["GEMM % of dot4 peak (K >= 512, M, N >= 256)"] = (
            f"{len(big)} shapes: min {100 * min(f):.0f}%, median {100 * np.median(f):.0f}%, max {100 * max(f):.0f}%"
        )
    ic = [r for r in rows if r.get("im2col_4w4c_frac_copy") is not None]
    if ic:
        f = [r["im2col_4w4c_frac_copy"] for r in ic]
        s["im2col_4w4c % of copy bandwidth (every shape it takes)"] = (
            f"{len(f)} shapes: min {100 * min(f):.0f}%, median {100 * np.median(f):.0f}%, max {100 * max(f):.0f}%"
        )
        f = [r["im2col_4w4c_frac_copy_same"] for r in ic]
        s["im2col_4w4c % of a copy of the same bytes (every shape it takes)"] = (
            f"{len(f)} shapes: min {100 * min(f):.0f}%, median {100 * np.median(f):.0f}%, max {100 * max(f):.0f}%"
        )
        # A pass costs at least 5.5 us on the H100 (bench/probes/dispatch_floor.py): only big
        # matrices can show bandwidth.
        big = [r["im2col_4w4c_frac_copy"] for r in ic if r["a_bytes"] >= 16 * 2**20]
        if big:
            s["im2col_4w4c % of copy bandwidth (A >= 16 MiB)"] = (
                f"{len(big)} shapes: min {100 * min(big):.0f}%, median {100 * np.median(big):.0f}%, "
                f"max {100 * max(big):.0f}%"
            )
    return s


# ---- CLI ----------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default="spec,pointwise,resnet50,resnet50_b8,mobilenet_pw,mobilenet_dw",
                   help="comma-separated suites: " + ", ".join(SUITES))  # fmt: skip
    p.add_argument("--repeats", type=int, default=20, help="timed runs per kernel after warm-up (>= 20)")
    p.add_argument("--max-mmacs", type=float, default=None, help="skip configs above this many million MACs")
    p.add_argument("--out", default="bench/results", help="folder for <adapter>.json and plots")
    p.add_argument("--md", default="BENCHMARKS.md", help="markdown summary to (re)write; '' to skip")
    p.add_argument("--tune", action="store_true",
                   help="autotune each conv's GEMM configuration and method afresh first (then cached per adapter)")  # fmt: skip


def main(args: argparse.Namespace) -> int:
    from .runtime import Device

    dev = Device(args.adapter, backend=args.backend)
    if not dev.has_timestamps:
        print(f"error: {dev.name} has no timestamp-query feature; GPU times cannot be measured")
        return 3
    suites = [s.strip() for s in args.suite.split(",") if s.strip()]
    bad = [s for s in suites if s not in SUITES]
    if bad:
        print(f"error: unknown suite(s) {bad}; choose from {list(SUITES)}")
        return 2
    if args.repeats < 1:
        print("error: --repeats must be >= 1")
        return 2
    if args.tune:
        from . import tuning

        tuning.FORCE_MEASURE = True  # measure afresh, ignoring cached or shipped choices
    torch_anchors = TorchAnchors()
    print(f"adapter {dev.name} ({dev.backend}); measuring anchors...", flush=True)
    warm_up(dev)
    anchors = {
        "copy_gbps": copy_bandwidth(dev),
        "dot4_peak_tops": dot4_peak(dev),
        # The same kernel with the runtime's by-hand dot product (what adapters without a usable
        # dot4I8Packed run): the ratio says whether dot4I8Packed is a native instruction here.
        "dot4_manual_tops": dot4_peak(Device(args.adapter, backend=args.backend, dot4="fallback")),
        "torch": torch_anchors.torch.__version__ if torch_anchors.available else None,
    }
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
        row = bench_conv(dev, cfg, args.repeats, anchors, torch_anchors, tune=args.tune)
        row["suite"] = suite
        geo = cfg.geometry()
        row["big_gemm"] = geo.K_per_group >= 512 and geo.M >= 256 and geo.C_out_per_group >= 256
        rows.append(row)
        partial.write_text(json.dumps({"adapter": dev.name, "anchors": anchors, "rows": rows}, indent=1))
        if it is jobs:
            print(
                f"  {suite:12s} {cfg.name:22s} {row['conv_s']['median'] * 1e6:9.1f} us {row['tops']:7.2f} TOPS",
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
        "anchors": anchors,
        "host_overhead": host_overhead(dev),
        "rows": rows,
    }
    result["summary"] = summarize(rows)
    partial.unlink(missing_ok=True)
    path = out / f"{slug(dev.name)}.json"
    path.write_text(json.dumps(result, indent=1))
    plot_results(path)
    if args.md:
        write_benchmarks_md(out, Path(args.md))
    print(f"wrote {path}")
    for k, v in result["summary"].items():
        print(f"{k}: {v}")
    ho = result["host_overhead"]
    print(
        f"host overhead: {ho['call_us']:.0f} us per cached call, {ho['recorded_call_us']:.0f} us per "
        f"call recorded {ho['recorded_chain']} to a submit; readback {ho['readback_us']:.0f} us"
    )
    return 0
