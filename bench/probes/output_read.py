"""A classifier's output read packed (no unpack pass) against an unpack pass, A/B per network.

For each built-in model (random weights, PT2E with Q8taQuantizer) and batch, two forward passes
of one net on one Device: `packed` (`forward.READ_ONE_PIXEL_PACKED`: the [N, classes] output's
packed words are read and unpacked on the host) and `unpack_pass` (the GPU unpacks it to NCHW
bytes first, one dispatch more). Reported: each one's whole-forward GPU time (timestamps) and
`net(x)` wall time, medians of rounds timed in turns; pass counts; whether the outputs are the
same bytes.

    python bench/probes/output_read.py --models resnet18 resnet50 mobilenet_v2 --batches 1 8 --out x.json
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import q8ta_wgpu as q8  # noqa: E402
from bench.probes.net_host import build_net  # noqa: E402
from bench.probes.net_turns import (  # noqa: E402
    arguments,
    compile_like_net,
    outputs_of,
    run,
    times_in_turns,
    turns_row,
)
from bench.wall_time import median_wall  # noqa: E402
from q8ta_wgpu import forward  # noqa: E402


def walls_in_turns(net: q8.Net, compiled: dict[str, Any], x: np.ndarray, rounds: int, repeats: int) -> dict:
    """net(x)'s median wall time with each compiled forward pass, `rounds` rounds in turns."""
    key = (tuple(x.shape), None)
    walls: dict[str, list[float]] = {k: [] for k in compiled}
    order = list(compiled)
    try:
        for r in range(rounds):
            for k in order[r % len(order) :] + order[: r % len(order)]:
                net._compiled[key] = compiled[k]
                walls[k].append(median_wall(lambda: net(x), repeats, warm_s=0.1)["median"])
    finally:
        net._compiled.pop(key, None)
    return walls


def probe(name: str, hw: int, batches: list[int], rounds: int, repeats: int, dev: q8.Device) -> list[dict]:
    net = build_net(name, hw, dev)
    rows = []
    for batch in batches:
        shape = (batch, 3, hw, hw)
        x = np.random.default_rng(batch).standard_normal(shape).astype(np.float32)
        compiled = {}
        for label, packed in (("packed", True), ("unpack_pass", False)):
            old = forward.READ_ONE_PIXEL_PACKED
            forward.READ_ONE_PIXEL_PACKED = packed
            try:
                compiled[label] = compile_like_net(net, shape)
            finally:
                forward.READ_ONE_PIXEL_PACKED = old
        outs = outputs_of(net, compiled, x)
        times, med = times_in_turns(dev, compiled, rounds, repeats)
        row = turns_row(name, batch, compiled, outs, times, med)
        walls = walls_in_turns(net, compiled, x, rounds, 5 * repeats)
        row.update({f"{k}_wall_s": float(np.median(v)) for k, v in walls.items()})
        row.update({f"{k}_wall_rounds_s": v for k, v in walls.items()})
        rows.append(row)
        print(
            f"{name:14s} B={batch}: "
            + "  ".join(
                f"{k} GPU {1e6 * med[k]:7.1f} us wall {1e6 * row[k + '_wall_s']:7.1f} us ({row['passes'][k]})"
                for k in compiled
            )
            + f"  same output {row['same_output']}",
            flush=True,
        )
    return rows


def main() -> None:
    run(arguments(__doc__, rounds=5).parse_args(), probe)


if __name__ == "__main__":
    main()
