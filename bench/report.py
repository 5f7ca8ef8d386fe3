"""Benchmark reports: BENCHMARKS.md and a plot per adapter, from the results JSON files that
`python -m q8ta_wgpu bench` and `python bench/run.py` write (bench/results/<adapter>.json).

    python bench/report.py [--results bench/results] [--md BENCHMARKS.md]

(re)plots every results file there (<adapter>.png next to its JSON, with matplotlib) and rewrites
the markdown (with bench/analysis.md, the folder's sibling, on top, then a "Whole networks" section
from every <adapter>-networks.json that bench/networks.py writes there). bench/run.py calls the
same functions after each run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

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
    out += networks_md(results_dir)
    out += untuned_md(results_dir)
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


# ---- whole networks (bench/networks.py) -------------------------------------------------------
NETWORK_BATCHES = (1, 8)  # the batches of the per-op breakdown, where a file has them
TOP_STEPS = 10  # the most expensive steps listed per model
NOT_MEASURED = "not measured"
ERROR_CHARS = 300  # of an error message recorded in a row


def network_files(results_dir: Path) -> list[Path]:
    """The whole-network results in `results_dir` (bench/networks.py's <adapter>-networks.json)."""
    return sorted(results_dir.glob("*-networks.json"))


def share(part: float, whole: float) -> str:
    """`part` as a percentage of `whole` ('75%'), '' where `whole` is 0."""
    return f"{pct(part / whole)}%" if whole else ""


def noted(text: str, note: object) -> str:
    """`text (note)`, or `text` alone where the note (or the text) is empty."""
    return f"{text} ({note})" if text and note not in (None, "") else text


def ratio(peer: float | None, q8ta: float | None) -> str:
    """`vs X`: the peer's time / q8ta's (> 1: q8ta faster), '' where either is missing."""
    return fmt(peer / q8ta if peer and q8ta else None, ".2f")


def op_label(step: dict[str, Any]) -> str:
    """A step's op kind, with the conv method it ran (`conv2d im2col_4w4c`)."""
    return " ".join(filter(None, (step["kind"], step.get("method"))))


def op_breakdown(row: dict[str, Any]) -> dict[str, tuple[int, float]]:
    """GPU seconds by op kind (conv2d and linear by method; the input quantize and the output
    unpack as their own kinds), summed over the row's steps, each timed alone: {kind: (steps, s)}."""
    by_kind: dict[str, tuple[int, float]] = {}
    steps = [
        *row["steps"],
        {"kind": "quantize (input)", "s": row.get("quantize_s")},
        {"kind": "unpack (output)", "s": row.get("unpack_s")},
    ]
    for st in steps:
        if st["s"] is not None:
            n, s = by_kind.get(op_label(st), (0, 0.0))
            by_kind[op_label(st)] = (n + 1, s + st["s"])
    return by_kind


def network_table(r: dict[str, Any]) -> list[str]:
    """One adapter's whole-network table: a row per (model, batch), then the errors recorded."""
    models = r.get("models") or {}
    out = [
        "| model | batch | ops | q8ta GPU us | q8ta wall us | host us | PyTorch fp16 CUDA graph us (layout) "
        "| PyTorch fp16 eager wall us | PyTorch CPU int8 us (threads) | ncnn int8 Vulkan wall us | vs fp16 graph (GPU) "
        "| vs fp16 eager (wall) | vs CPU int8 (wall) | vs ncnn (wall) | max LSB | % within 1 LSB | top-1 agree (classes, tied) "
        "| per-op max LSB (ops checked) | vs float64: q8ta max LSB (% within 1) | vs float64: PyTorch max LSB (% within 1) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|",
    ]
    errors = []
    for row in r["rows"]:
        gpu, wall = row.get("gpu_s"), row.get("wall_s")
        graph, eager, cpu = (
            row.get(k) for k in ("torch_fp16_graph_s", "torch_fp16_eager_wall_s", "torch_cpu_int8_s")
        )
        classes = row.get("top1_classes")
        tops = None if classes is None else f"{classes}, {row.get('top1_tied')}"
        top1 = noted(fmt(row.get("top1_agree"), ".2f"), tops)
        per_op = noted(
            fmt(row.get("per_op_max_lsb"), "d"), models.get(row["model"], {}).get("per_op_checked")
        )
        within = row.get("within_1lsb")
        vs64 = [
            noted(fmt(c.get("max_lsb"), "d"), fmt(100 * c["within_1lsb"], ".2f")) if c else ""
            for c in (row.get("gpu_vs_float64"), models.get(row["model"], {}).get("torch_vs_float64"))
        ]
        out.append(
            f"| {row['model']} | {row['batch']} | {row.get('ops') or ''} | {us(gpu)} | {us(wall)} | "
            f"{us(row.get('host_s'))} | {noted(us(graph), row.get('torch_fp16_layout')) or NOT_MEASURED} | "
            f"{us(eager) or NOT_MEASURED} | {noted(us(cpu), row.get('torch_cpu_int8_threads')) or NOT_MEASURED} | "
            f"{us(row.get('ncnn_int8_wall_s')) or NOT_MEASURED} | {ratio(graph, gpu)} | {ratio(eager, wall)} | "
            f"{ratio(cpu, wall)} | {ratio(row.get('ncnn_int8_wall_s'), wall)} | {fmt(row.get('max_lsb'), 'd')} | {fmt(within and 100 * within, '.2f')} | "
            f"{top1} | {per_op} | {vs64[0]} | {vs64[1]} |"
        )
        errors += [
            f"- {row['model']}, batch {row['batch']}: `{k}` {' '.join(str(v).split())[:ERROR_CHARS]}"
            for k, v in row.items()
            if k.endswith("error") and v
        ]
    if errors:
        out += ["", "Errors recorded:", *errors]
    return out


def fusion_table(r: dict[str, Any]) -> list[str]:
    """The residual-add fusion measured: GPU time with each add in its conv's epilogue against
    the same net with the adds as passes of their own, in the same run ([] if not measured)."""
    rows = [row for row in r["rows"] if row.get("gpu_unfused_s") and row.get("gpu_s")]
    if not rows:
        return []
    out = [
        "#### Residual adds fused into the conv epilogue",
        "",
        "The same graph with each add a pass of its own (`fuse=False`), against the fused net in the",
        "same run: rows with `fusion` timed the two in turns (whole forward, median of the turns);",
        "older rows timed the unfused net once after the fused one (the fused column is then gpu_s).",
        "Rows with `input_quantized_in_conv` fuse the input's quantize into the first conv too (the",
        "unfused net has its quantize pass), and their fused net runs the adds after patch-kernel convs",
        "as passes of their own (they count as fused here). Same bytes: the outputs of both on the",
        "exactness inputs compared.",
        "",
        "| model | batch | adds fused | GPU us fused | GPU us unfused | saved us | saved per add us | same bytes |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        turns = row.get("fusion") or {}
        fused, unfused = turns.get("fused_s", row["gpu_s"]), turns.get("unfused_s", row["gpu_unfused_s"])
        n = row.get("fused_adds") or 0
        saved = unfused - fused
        out.append(
            f"| {row['model']} | {row['batch']} | {n} | {us(fused)} | {us(unfused)} | {fmt(1e6 * saved, '+.1f')} | "
            f"{fmt(n and 1e6 * saved / n, '+.2f')} | {row.get('fused_equal_unfused')} |"
        )
    return [*out, ""]


def breakdown_md(name: str, rows: dict[int, dict[str, Any]]) -> list[str]:
    """One model's per-op GPU time at the batches in `rows`: by op kind, then its costliest steps."""
    batches = list(rows)
    kinds = {b: op_breakdown(rows[b]) for b in batches}
    total = {b: sum(s for _, s in kinds[b].values()) for b in batches}
    first = batches[0]
    order = sorted(
        {k for b in batches for k in kinds[b]}, key=lambda k: (-kinds[first].get(k, (0, 0.0))[1], k)
    )
    cols = "".join(f" B={b} steps | B={b} us | B={b} share |" for b in batches)
    out = [f"| {name}: op kind |{cols}", "|---|" + "---:|" * 3 * len(batches)]
    for k in order:
        cells = [kinds[b].get(k) for b in batches]
        out.append(
            f"| {k} |"
            + "".join(
                f" {c[0]} | {us(c[1])} | {share(c[1], total[b])} |" if c else " | | |"
                for b, c in zip(batches, cells, strict=True)
            )
        )
    out.append(
        "| **sum, each step alone** |"
        + "".join(f" {sum(n for n, _ in kinds[b].values())} | {us(total[b])} | 100% |" for b in batches)
    )
    out.append("| **whole forward, one pass** |" + "".join(f" | {us(rows[b]['gpu_s'])} | |" for b in batches))
    over = [
        f"{fmt(total[b] / rows[b]['gpu_s'], '.2f')}x the whole forward "
        f"({fmt(1e6 * (total[b] - rows[b]['gpu_s']), '+.1f')} us) at batch {b}"
        for b in batches
    ]
    out += ["", f"The steps timed alone sum to {', '.join(over)}.", ""]
    steps = {b: rows[b]["steps"] for b in batches}
    top = sorted(range(len(steps[first])), key=lambda i: -steps[first][i]["s"])[:TOP_STEPS]
    cols = "".join(f" B={b} us | B={b} share |" for b in batches)
    out += [f"| {name}: step | source | op |{cols}", "|---:|---|---|" + "---:|" * 2 * len(batches)]
    for i in top:
        st = steps[first][i]
        line = f"| {i} | `{st['source']}` | {op_label(st)} |"
        for b in batches:  # the same step (by index and source) at each batch
            same = i < len(steps[b]) and steps[b][i]["source"] == st["source"]
            line += f" {us(steps[b][i]['s'])} | {share(steps[b][i]['s'], total[b])} |" if same else " | |"
        out.append(line)
    return out + [""]


def networks_md(results_dir: Path) -> list[str]:
    """The "Whole networks" section from every <adapter>-networks.json in `results_dir` ([] if none)."""
    files = network_files(results_dir)
    if not files:
        return []
    out = [
        "## Whole networks",
        "",
        "Written by `python bench/report.py` from `bench/results/*-networks.json`, the results of",
        "`python bench/networks.py`: int8 networks quantized with PT2E and imported with `q8.from_torch`,",
        "every peer measured in the same process on the same inputs. Times are medians per forward pass",
        "of the batch. q8ta GPU: the whole forward's GPU timestamps (input quantize and output unpack",
        "included); wall: `net(x)`, numpy float32 in and out; host = wall - GPU. `vs X` = X's time /",
        "q8ta's (> 1: q8ta faster): against PyTorch's CUDA graph, GPU time to GPU time; against its eager",
        "call and its CPU int8 model, wall time to wall time. Exactness is against PyTorch's int8 output",
        "of the same PT2E graph: max LSB, the share of output values within 1 LSB, top-1 agreement (the",
        "distinct classes PyTorch's output picks, the inputs whose top value is tied); per-op max LSB:",
        "each GPU op run alone on PyTorch's int8 inputs; vs float64 (--weights digits): against the same",
        "graph evaluated in float64 (every dequantize, op and quantize), q8ta's output and PyTorch's.",
        "Each file's own notes on its figures follow its name.",
        "",
    ]
    for f in files:
        r = json.loads(f.read_text())
        code = r.get("code") or {}
        state = (
            f"commit `{code['commit']}`" + (" with uncommitted changes" if code.get("dirty") else " (clean)")
            if code.get("commit")
            else "not recorded"
        )
        if code.get("note"):
            state += f"; {code['note']}"
        versions = ", ".join(f"{k} {v}" for k, v in (r.get("versions") or {}).items() if v)
        cuda = r.get("cuda")
        host = r.get("host") or {}
        out += [
            f"### {r['adapter']} ({r['backend']}), {r['created'][:10]}",
            "",
            f"`bench/results/{f.name}`, created {r['created']}. Code: {state}. Input {r['hw']}x{r['hw']}, "
            f"{r['repeats']} repeats; {versions}; host {host.get('machine', '')}, {host.get('cpu_count', '')} CPUs; "
            + (
                f"PyTorch fp16 on {cuda['device']} (cuDNN {cuda['cudnn']}, "
                f"{cuda['graph_replays_per_measurement']} graph replays per measurement)."
                if cuda
                else "no CUDA device (no PyTorch fp16 figures)."
            ),
            "",
            *(f"- `{k}`: {v}" for k, v in (r.get("method") or {}).items()),
            "",
            *network_table(r),
            "",
            *fusion_table(r),
        ]
        rows: dict[str, dict[int, dict[str, Any]]] = {}
        for row in r["rows"]:
            if row.get("steps") and row.get("gpu_s"):
                rows.setdefault(row["model"], {})[row["batch"]] = row
        if rows:
            out += [
                "#### GPU time per op",
                "",
                "From each row's per-step profile: every step's passes timed alone (median), so a step",
                "pays its own pass start and drain, and the steps sum to more than the whole forward in",
                "one compute pass (the table's q8ta GPU). Shares are of that sum.",
                "",
            ]
        for name, by_batch in rows.items():
            batches = [b for b in NETWORK_BATCHES if b in by_batch] or sorted(by_batch)[:1]
            out += breakdown_md(name, {b: by_batch[b] for b in batches})
    return out


def untuned_md(results_dir: Path) -> list[str]:
    """The "Untuned against tuned" section from every <adapter>-untuned.json
    (bench/probes/untuned.py) in `results_dir` ([] if none)."""
    files = sorted(results_dir.glob("*-untuned.json"))
    if not files:
        return []
    out = [
        "## Untuned defaults against tuned choices, whole networks",
        "",
        "Written from `bench/results/*-untuned.json`, the results of `bench/probes/untuned.py`: the",
        "whole forward's GPU time (median of the rounds' medians, the three timed in turns) with the",
        "planner's defaults (no shipped table, empty cache), with the table shipped for the adapter,",
        "and after `net.tune(shape, force=True)` measured every conv on the adapter. The target:",
        "untuned within 10% of tuned (untuned / tuned <= 1.10).",
        "",
    ]
    for f in files:
        r = json.loads(f.read_text())
        code = r.get("code") or {}
        out += [
            f"### {r['adapter']} ({r['backend']}), {r['created'][:10]}",
            "",
            f"`bench/results/{f.name}`; input {r['hw']}x{r['hw']}, {r['rounds']} rounds of {r['repeats']} "
            f"repeats; code: {code.get('commit', 'not recorded')}{'; ' + code['note'] if code.get('note') else ''}.",
            "",
            "| model | batch | convs | untuned us | shipped us | tuned us | untuned / tuned | shipped / tuned | tuning took s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in r["rows"]:
            out.append(
                f"| {row['model']} | {row['batch']} | {row['convs']} | {us(row['untuned_s'])} | {us(row['shipped_s'])} | "
                f"{us(row['tuned_s'])} | {fmt(row['untuned_over_tuned'], '.3f')} | {fmt(row['shipped_over_tuned'], '.3f')} | "
                f"{fmt(row['tune_s'], '.0f')} |"
            )
        out.append("")
    return out


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
