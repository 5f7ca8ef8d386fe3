"""How far the untuned defaults are from tuned choices, per whole network, on one adapter.

For each built-in model (random weights, PT2E with Q8taQuantizer) and batch, the whole forward
pass's GPU time (timestamps, median; `Net.gpu_times`) with:
- untuned: no shipped table and an empty cache ($Q8TA_WGPU_SHIPPED_TUNING=0): the planner's
  measured default heuristics (`planner.default_gemm_config`, `resolve_method`);
- shipped: the table the project ships for this adapter model, if any (`q8ta_wgpu/tuned/`);
- tuned: every conv measured on this adapter into a fresh cache (`forward.tune_steps`, force),
  its choices kept whatever the whole net does with them (`Net.tune` keeps them only where the
  net gets faster).
The three nets are timed in turns (`--rounds`, each round starting with another), so drifting
clocks hit them alike. The issue's
target: untuned within 10% of tuned (ratio untuned / tuned <= 1.10).

    python bench/probes/untuned.py --models resnet18 resnet50 mobilenet_v2 --batches 1 8 --out x.json

--no-tune leaves the tuned net out (minutes of tuning a net): untuned against shipped only.
"""

from __future__ import annotations

import functools
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import q8ta_wgpu as q8  # noqa: E402
from bench.probes.net_host import build_net  # noqa: E402
from bench.probes.net_turns import arguments, run, times_in_turns, with_choices  # noqa: E402
from q8ta_wgpu.forward import tune_steps  # noqa: E402


def probe(
    name: str, hw: int, batches: list[int], rounds: int, repeats: int, dev: q8.Device, tune: bool = True
) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        empty, tuned_cache = Path(tmp) / "empty.json", Path(tmp) / "tuned.json"
        for batch in batches:
            shape = (batch, 3, hw, hw)
            nets = {
                "untuned": with_choices(False, empty, lambda: build_net(name, hw, dev)),
                "shipped": with_choices(True, empty, lambda: build_net(name, hw, dev)),
            }
            choices: list[Any] = []
            tune_s = 0.0
            if tune:
                tuned = with_choices(False, tuned_cache, lambda: build_net(name, hw, dev))
                t0 = time.perf_counter()
                # Every conv's measured choice, kept whatever the whole net does with it
                # (Net.tune would put back what ran before where the net gets slower: here that
                # is measured).
                choices = tune_steps(tuned.steps, tuned.shapes(shape), force=True)
                tune_s = time.perf_counter() - t0
                nets["tuned"] = tuned
            # Plans are made on first compile, under the choices in effect then.
            for k, net in nets.items():
                with_choices(k == "shipped", tuned_cache if k == "tuned" else empty, lambda: None)
                net.compile(shape)
            times, med = times_in_turns(dev, {k: n.compile(shape) for k, n in nets.items()}, rounds, repeats)
            ref = "tuned" if tune else "shipped"
            row = {
                "model": name, "batch": batch, "convs": len(choices), "tune_s": tune_s,
                **{f"{k}_s": v for k, v in med.items()},
                **{f"{k}_rounds_s": v for k, v in times.items()},
                "untuned_over_shipped": med["untuned"] / med["shipped"],
            }  # fmt: skip
            if tune:
                row |= {
                    "untuned_over_tuned": med["untuned"] / med["tuned"],
                    "shipped_over_tuned": med["shipped"] / med["tuned"],
                    "tuned_methods": sorted({c["method"] for c in choices}),
                }
            rows.append(row)
            print(
                f"{name:14s} B={batch}: "
                + "  ".join(f"{k} {1e6 * v:8.1f} us" for k, v in med.items())
                + f"  untuned/{ref} {med['untuned'] / med[ref]:.3f}"
                + (f"  (tuning took {tune_s:.0f} s)" if tune else ""),
                flush=True,
            )
    return rows


def main() -> None:
    p = arguments(__doc__, rounds=3)
    p.add_argument("--no-tune", action="store_true", help="untuned against shipped only")
    args = p.parse_args()
    run(args, functools.partial(probe, tune=not args.no_tune))


if __name__ == "__main__":
    main()
