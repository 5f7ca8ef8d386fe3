"""Split-K reduced inside the GEMM against a reduce pass, per whole network, on one adapter.

For each built-in model (random weights, PT2E with Q8taQuantizer) and batch, two nets of the same
graph compiled on one Device: one with `Device.reduce_in_gemm` off while it plans (each split-K
GEMM followed by gemm_q8_splitk.wgsl, one more dispatch), one with it on (the GEMM's last K slice
of a tile reduces). The choices are the same (the shipped table or the defaults); only the
reduction differs. Reported: both nets' whole-forward GPU time (timestamps, median of the rounds'
medians, timed in turns), their pass counts, and whether their outputs are the same bytes.

    python bench/probes/split_k_in_gemm.py --models resnet18 resnet50 mobilenet_v2 --batches 1 8 --out x.json
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
from bench.probes.net_turns import arguments, run, times_in_turns, turns_row  # noqa: E402


def probe(name: str, hw: int, batches: list[int], rounds: int, repeats: int, dev: q8.Device) -> list[dict]:
    nets = {"reduce_pass": build_net(name, hw, dev), "in_gemm": build_net(name, hw, dev)}
    rows = []
    for batch in batches:
        shape = (batch, 3, hw, hw)
        x = np.random.default_rng(batch).standard_normal(shape).astype(np.float32)
        compiled: dict[str, Any] = {}
        outs = {}
        for k, net in nets.items():
            dev.reduce_in_gemm = k == "in_gemm"  # read when the net plans its convs
            try:
                compiled[k] = net.compile(shape)
                outs[k] = net(x)
            finally:
                dev.reduce_in_gemm = dev.default_reduce_in_gemm
        times, med = times_in_turns(dev, compiled, rounds, repeats)
        row = turns_row(name, batch, compiled, outs, times, med)
        row["in_gemm_over_reduce_pass"] = med["in_gemm"] / med["reduce_pass"]
        rows.append(row)
        print(
            f"{name:14s} B={batch}: reduce pass {1e6 * med['reduce_pass']:8.1f} us ({row['passes']['reduce_pass']} passes)  "
            f"in the GEMM {1e6 * med['in_gemm']:8.1f} us ({row['passes']['in_gemm']} passes)  "
            f"ratio {row['in_gemm_over_reduce_pass']:.3f}  same output {row['same_output']}",
            flush=True,
        )
    return rows


def main() -> None:
    run(arguments(__doc__, rounds=4).parse_args(), probe)


if __name__ == "__main__":
    main()
