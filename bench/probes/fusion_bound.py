"""What fusing a kind of step into the step that reads its output could save at most, per network:
the whole forward pass's GPU time and the host's time to record it, with the passes of those
steps left out. Timing only: their readers then read a stale buffer, so outputs are wrong, and a
fused kernel would do the left-out work itself (its cost is not in this bound).

Kinds: `depthwise` (MobileNetV2's depthwise convs, which an inverted residual's projection conv
could compute as it loads its input), `pools` (max and average pools: the stem's max pool, the
classifier's global average pool). Each net as compiled (`net`), without each kind it has
(`without_*`), and with each such step's passes run twice (`twice_*`: the second run rewrites
the same output, so it waits for the first and its readers wait for it). GPU times
(timestamps) and recording times (`Device.record` of the passes and the readback's copy) in
turns, medians of the rounds.

Leaving steps out also drops their readers' dependencies (a reader of a stale buffer need not
wait), so `net - without_*` overstates what a fusion saves on the GPU; `twice_* - net` is the
steps' cost in the chain with every dependency kept, the better bound. The recording saved is
`net - without_*` either way.

    python bench/probes/fusion_bound.py --models resnet18 resnet50 mobilenet_v2 --batches 1 8 --out x.json
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import q8ta_wgpu as q8  # noqa: E402
from bench.probes.net_host import build_net  # noqa: E402
from bench.probes.net_turns import arguments, compile_like_net, run, times_in_turns  # noqa: E402

KINDS = {
    "depthwise": lambda step, passes: any(p.label.startswith("depthwise") for p in passes),
    "pools": lambda step, passes: "pool" in step.kind,
}


def record_s(dev: q8.Device, c: Any, repeats: int) -> float:
    """Median host time to record compiled forward `c`'s passes and its readback copy."""
    copy = (c.readback[0], c.staging, c.read_bytes)
    times = []
    for _ in range(repeats + 3):
        t = time.perf_counter()
        dev.record(c.passes(), copy).release()
        times.append(time.perf_counter() - t)
    return float(np.median(times[3:]))


def probe(name: str, hw: int, batches: list[int], rounds: int, repeats: int, dev: q8.Device) -> list[dict]:
    net = build_net(name, hw, dev)
    rows = []
    for batch in batches:
        c = compile_like_net(net, (batch, 3, hw, hw))
        variants = {"net": c}
        for kind, left_out in KINDS.items():
            drop = {
                i for i, (s, ps) in enumerate(zip(net.steps, c.step_passes, strict=True)) if left_out(s, ps)
            }
            if drop:
                step_passes = [[] if i in drop else ps for i, ps in enumerate(c.step_passes)]
                variants[f"without_{kind}"] = dataclasses.replace(c, step_passes=step_passes, _passes=None)
                step_passes = [ps + ps if i in drop else ps for i, ps in enumerate(c.step_passes)]
                variants[f"twice_{kind}"] = dataclasses.replace(c, step_passes=step_passes, _passes=None)
        _, gpu = times_in_turns(dev, variants, rounds, repeats)
        rec: dict[str, list[float]] = {k: [] for k in variants}
        for r in range(rounds):
            order = list(variants)
            for k in order[r % len(order) :] + order[: r % len(order)]:
                rec[k].append(record_s(dev, variants[k], 5 * repeats))
        row = {"model": name, "batch": batch, "passes": {k: len(v.passes()) for k, v in variants.items()}}
        row.update({f"{k}_gpu_s": v for k, v in gpu.items()})
        row.update({f"{k}_record_s": float(np.median(v)) for k, v in rec.items()})
        rows.append(row)
        print(
            f"{name:14s} B={batch}: "
            + "  ".join(
                f"{k} ({row['passes'][k]}) GPU {1e6 * gpu[k]:7.1f} us record {1e6 * row[k + '_record_s']:6.1f} us"
                for k in variants
            ),
            flush=True,
        )
    return rows


def main() -> None:
    run(arguments(__doc__, rounds=4).parse_args(), probe)


if __name__ == "__main__":
    main()
