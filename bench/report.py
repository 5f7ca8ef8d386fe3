"""Benchmark reports: BENCHMARKS.md and a plot per adapter, from the results JSON files that
`python -m q8ta_wgpu bench` and `python bench/run.py` write (bench/results/<adapter>.json).

    python bench/report.py [--results bench/results] [--md BENCHMARKS.md]

(re)plots every results file there (<adapter>.png next to its JSON, with matplotlib) and rewrites
the markdown (with bench/analysis.md, the folder's sibling, on top). bench/run.py calls the same
functions after each run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from q8ta_wgpu.bench import FLOOR_CONFIG  # noqa: E402

ANCHOR_FIGURES = (
    "copy_gbps",
    "dot4_peak_tops",
    "dot4_manual_tops",
    "chain_floor_layer_s",
    "ncnn_floor_layer_s",
)


def fmt(v: float | None, spec: str) -> str:
    """`v` formatted with `spec`, '' for None."""
    return "" if v is None else format(v, spec)


def us(v: float | None) -> str:
    """Seconds as microseconds (one decimal), '' for None."""
    return fmt(v and v * 1e6, ".1f")


def pct(v: float | None) -> str:
    """A fraction as a percentage (no decimals), '' for None."""
    return fmt(v and 100 * v, ".0f")


def result_files(results_dir: Path) -> list[Path]:
    """The results JSON files in `results_dir` (those with anchors), as the markdown lists them."""
    return [f for f in sorted(results_dir.glob("*.json")) if '"anchors"' in f.read_text()[:2000]]


def write_benchmarks_md(results_dir: Path, md_path: Path) -> None:
    """BENCHMARKS.md from every bench/results/*.json, with plots next to the JSON files."""
    files = result_files(results_dir)
    out = [
        "# Benchmarks",
        "",
        "Written by `python bench/run.py` (or `python bench/report.py`) from `bench/results/*.json`,",
        "the results of `bench/run.py` or `python -m q8ta_wgpu bench`; every figure is a median after",
        "warm-up, measured in one process, with its anchors, on the adapter named. q8ta figures are GPU timestamps: `alone` is one conv's",
        "passes in one compute pass; `chain` is per layer in a chain of convs of the shape in one compute",
        "pass (as a network runs it). cuDNN fp16 is its fastest of NCHW and channels_last, each with",
        "its autotuned and its heuristic algorithm, per call in a CUDA graph of many calls (GPU time,",
        "no host launch). ncnn int8 is per layer in a chain of int8 requantizing layers on the same",
        "Vulkan driver (the difference of two chain lengths' wall times; see bench/analysis.md).",
        "`vs X` = X's time / q8ta's chain time (> 1: q8ta faster). Ops = 2 per MAC with C_in/groups per",
        "output. `gemm %peak`: GEMM rate over its padded MACs against the measured dot4I8Packed peak.",
        "`im2col %copy`: im2col rate (2 x bytes of A) against the copy kernel (256 MiB); `%copy same",
        "bytes`: the copy kernel's time for A's bytes over im2col's time.",
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
            f"dot4I8Packed peak {a['dot4_peak_tops']:.2f} TOPS (hand-unpacked: {a.get('dot4_manual_tops') or 0:.2f} TOPS); "
            f"a layer's floor in a chain ({FLOOR_CONFIG.label()}): q8ta {a['chain_floor_layer_s'] * 1e6:.1f} us"
            + (f", ncnn {a['ncnn_floor_layer_s'] * 1e6:.1f} us" if a.get("ncnn_floor_layer_s") else "")
            + "".join(f"; {k} {v}" for k, v in a.items() if k not in ANCHOR_FIGURES and v is not None),
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
            out += [f"- {k}: {v}" for k, v in summ["lines"].items()] + [""]
        out += [
            "| suite | config | shape | method | alone us | chain us | chain TOPS | gemm %peak | im2col_4w4c %copy | %copy same bytes | cuDNN fp16 us | layout | vs cuDNN | ncnn int8 us | vs ncnn |",
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
        ]

        for row in r["rows"]:
            out.append(
                f"| {row['suite']} | {row['name']} | {row['label']} | {row['method']} | "
                f"{us(row['conv_s']['median'])} | {us(row['chain_layer_s']['median'])} | "
                f"{row['chain_tops']:.2f} | {pct(row.get('gemm_frac_peak'))} | "
                f"{pct(row.get('im2col_4w4c_frac_copy'))} | {pct(row.get('im2col_4w4c_frac_copy_same'))} | "
                f"{us(row.get('cudnn_fp16_s'))} | {row.get('cudnn_layout') or ''} | "
                f"{fmt(row.get('vs_cudnn_fp16'), '.2f')} | {us(row.get('ncnn_int8_s'))} | "
                f"{fmt(row.get('vs_ncnn_int8'), '.2f')} |"
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
    ax.bar(xs, [row["chain_tops"] for row in rows], label="q8ta int8, per layer in a chain")
    ax.plot(xs, [row["tops"] for row in rows], "k_", label="q8ta int8, standalone conv")
    for key, style, label in (
        ("cudnn_fp16_s", "r.", "cuDNN fp16 (best layout, CUDA graph)"),
        ("ncnn_int8_s", "g^", "ncnn int8 Vulkan, per layer in a chain"),
    ):
        peer = [row["ops"] / row[key] / 1e12 if row.get(key) else np.nan for row in rows]
        if not np.all(np.isnan(peer)):
            ax.plot(xs, peer, style, label=label)
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=ROOT / "bench" / "results",
                   help="folder of <adapter>.json results (default: the repository's bench/results)")  # fmt: skip
    p.add_argument("--md", default=str(ROOT / "BENCHMARKS.md"),
                   help="markdown summary to (re)write; '' to skip (default: the repository's BENCHMARKS.md)")  # fmt: skip
    args = p.parse_args(argv)
    files = result_files(args.results)
    if not files:
        print(f"no results JSON in {args.results}")
    for f in files:
        png = plot_results(f)
        print(f"wrote {png}" if png else f"not plotted {f.name}: matplotlib is not installed")
    if args.md:
        write_benchmarks_md(args.results, Path(args.md))
        print(f"wrote {args.md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
