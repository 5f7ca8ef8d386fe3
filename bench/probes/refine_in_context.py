"""What `Net.refine` (each conv shape's alternatives tried inside the whole forward pass) gains
over the choices a net starts with, per whole network, on one adapter.

For each built-in model (random weights, PT2E with Q8taQuantizer) and batch: a net refined into a
fresh tuning cache (on top of the shipped table, if any), then that net and a second one planned
from the shipped table alone, timed in turns (`--rounds`, whole-forward GPU time from timestamps,
median of medians), with their outputs compared byte for byte. Reported: both times, their
ratio, how long refining took, and what it kept.

    python bench/probes/refine_in_context.py --models resnet18 resnet50 mobilenet_v2 --batches 1 8 --out x.json
    python bench/probes/refine_in_context.py --ship x.json   # its kept choices -> q8ta_wgpu/tuned/

`--ship` (no GPU needed) writes what a run kept into the table shipped for its adapter: a kept
choice replaces the shape's entry, a kept "default" (None) removes it (the planner's default then
plans the shape). Each entry names the net and batch it was kept in.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import q8ta_wgpu as q8  # noqa: E402
from bench.probes.net_host import build_net  # noqa: E402
from bench.probes.net_turns import arguments, run, times_in_turns, with_choices  # noqa: E402


def probe(name: str, hw: int, batches: list[int], rounds: int, repeats: int, dev: q8.Device) -> list[dict]:
    rows = []
    for batch in batches:
        shape = (batch, 3, hw, hw)
        x = np.random.default_rng(batch).standard_normal(shape).astype(np.float32)
        with tempfile.TemporaryDirectory() as tmp:
            refined_cache, empty = Path(tmp) / "refined.json", Path(tmp) / "empty.json"
            refined = with_choices(True, refined_cache, lambda: build_net(name, hw, dev))
            t0 = time.perf_counter()
            result = refined.refine(shape)
            refine_s = time.perf_counter() - t0
            shipped = with_choices(True, empty, lambda: build_net(name, hw, dev))
            shipped.compile(shape)
            nets = {"shipped": shipped, "refined": refined}
            same = bool(np.array_equal(shipped.run_int8(x), refined.run_int8(x)))
            times, med = times_in_turns(dev, {k: n.compile(shape) for k, n in nets.items()}, rounds, repeats)
        kept = [t for t in result["tried"] if t["kept"]]
        row = {
            "model": name, "batch": batch, "refine_s": refine_s, "tried": len(result["tried"]),
            "kept": kept, "same_output": same,
            "refine_before_s": result["before_s"], "refine_after_s": result["after_s"],
            **{f"{k}_s": v for k, v in med.items()},
            **{f"{k}_rounds_s": v for k, v in times.items()},
            "refined_over_shipped": med["refined"] / med["shipped"],
            # what refining stored, by shape key (the last kept choice of each)
            "refined_choices": {t["key"]: t["choice"] for t in kept},
            "shapes": sorted({t["key"] for t in result["tried"]}),  # every conv shape tried
        }  # fmt: skip
        rows.append(row)
        print(
            f"{name:14s} B={batch}: shipped {1e6 * med['shipped']:8.1f} us  refined {1e6 * med['refined']:8.1f} us  "
            f"ratio {row['refined_over_shipped']:.3f}  kept {len(kept)} of {len(result['tried'])} tried "
            f"({refine_s:.0f} s)  same output {same}",
            flush=True,
        )
        for t in kept:
            g = (t["choice"] or {}).get("gemm")
            what = (
                "default"
                if t["choice"] is None
                else f"{t['choice']['method']} reduce={g and g.get('reduce')}"
            )
            print(
                f"    {t['key']}: {what}  {1e6 * t['before_s']:.1f} -> {1e6 * t['after_s']:.1f} us",
                flush=True,
            )
    return rows


def ship(results: Path) -> Path:
    """Apply a run's kept choices (`refined_choices` of each row) to the table shipped for its
    adapter (q8ta_wgpu/tuned/, as bench/run.py --ship-tuning names it). A shape's choice kept in
    one net is left out where another net of the run has the shape (its `shapes`) and did not
    keep the same: it was not measured there. Prints what it leaves out."""
    from q8ta_wgpu import tuning

    run = json.loads(results.read_text())
    path = tuning.shipped_table_path(run["adapter"], run["backend"])
    table = json.loads(path.read_text())
    missing = object()
    for row in run["rows"]:
        context = f"kept by Net.refine in {row['model']} at batch {row['batch']} ({run['created'][:10]})"
        for key, choice in row["refined_choices"].items():
            others = [r for r in run["rows"] if r is not row and key in r.get("shapes", ())]
            if any(r["refined_choices"].get(key, missing) != choice for r in others):
                print(f"left out (other nets did not keep it): {key} from {row['model']} B={row['batch']}")
                continue
            if choice is None:
                table["choices"].pop(key, None)
            else:
                table["choices"][key] = {
                    "method": choice["method"],
                    "gemm": choice["gemm"],
                    "context": context,
                }
    path.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    return path


def main() -> None:
    p = arguments(__doc__, rounds=4)
    p.add_argument("--ship", type=Path, help="write this results file's kept choices into the shipped table")
    args = p.parse_args()
    if args.ship:
        print("wrote", ship(args.ship))
        return
    run(args, probe)


if __name__ == "__main__":
    main()
