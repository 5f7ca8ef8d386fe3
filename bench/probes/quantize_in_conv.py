"""The net's float input quantized by its first conv against a quantize pass, per whole network.

For each built-in model (random weights, PT2E with Q8taQuantizer) and batch, two forward passes
of one graph on one Device: the net's own (`Net.compile`: where the first conv runs the patch
kernel, it quantizes the float input as it loads it, `forward.input_quantizing_conv`) and the
same compiled with `quantize_in_conv=False` (a quantize pass first, the conv reading its int8
output). The choices are the same (the shipped table or the defaults); residual adds are fused in
both. Reported: both whole-forward GPU times (timestamps, median of the rounds' medians, timed in
turns), their pass counts, and whether their outputs are the same bytes.

    python bench/probes/quantize_in_conv.py --models resnet18 resnet50 mobilenet_v2 --batches 1 8 --out x.json
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


def probe(name: str, hw: int, batches: list[int], rounds: int, repeats: int, dev: q8.Device) -> list[dict]:
    net = build_net(name, hw, dev)
    rows = []
    for batch in batches:
        shape = (batch, 3, hw, hw)
        x = np.random.default_rng(batch).standard_normal(shape).astype(np.float32)
        compiled: dict[str, Any] = {
            "in_conv": compile_like_net(net, shape),
            "pass": compile_like_net(net, shape, quantize_in_conv=False),
        }
        outs = outputs_of(net, compiled, x)
        times, med = times_in_turns(dev, compiled, rounds, repeats)
        row = turns_row(name, batch, compiled, outs, times, med)
        row["fused"] = not compiled["in_conv"].quantize
        row["in_conv_over_pass"] = med["in_conv"] / med["pass"]
        rows.append(row)
        print(
            f"{name:14s} B={batch}: quantize pass {1e6 * med['pass']:8.1f} us ({row['passes']['pass']} passes)  "
            f"in the conv {1e6 * med['in_conv']:8.1f} us ({row['passes']['in_conv']} passes)  "
            f"ratio {row['in_conv_over_pass']:.3f}  same output {row['same_output']}",
            flush=True,
        )
    return rows


def main() -> None:
    run(arguments(__doc__, rounds=4).parse_args(), probe)


if __name__ == "__main__":
    main()
