"""What a residual add fused into a conv's epilogue saves, per whole network, by the conv's kernel.

For each built-in model (random weights, PT2E with Q8taQuantizer) and batch, three forward passes
of one graph on one Device, the same choices (the shipped table or the defaults), the float input
quantized by the first conv in all three:
- fused: the net's own (every add that can be fused runs in a conv's epilogue);
- patch_apart: the adds fused into convs on the patch kernel run as the conv's pass and the add's
  (`forward.ADD_IN_PATCH_EPILOGUE` off while it compiles); the others stay fused;
- apart: no add fused (the graph's steps).
Reported: each one's whole-forward GPU time (timestamps, median of the rounds' medians, timed in
turns), its pass count, and whether their outputs are the same bytes.

    python bench/probes/fused_add_cost.py --models resnet18 resnet50 mobilenet_v2 --batches 1 8 --out x.json
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
from bench.probes.net_turns import arguments, run, times_in_turns  # noqa: E402
from q8ta_wgpu import forward  # noqa: E402


def probe(name: str, hw: int, batches: list[int], rounds: int, repeats: int, dev: q8.Device) -> list[dict]:
    net = build_net(name, hw, dev)
    rows = []
    for batch in batches:
        shape = (batch, 3, hw, hw)
        x = np.random.default_rng(batch).standard_normal(shape).astype(np.float32)

        def compiled_of(steps: Any, shape: tuple[int, ...] = shape) -> Any:
            return forward.compile_forward(
                steps, net.shapes(shape), input_name=net.input_name, input_scale=net.input_scale,
                input_zero_point=net.input_zero_point, quantize_scale=net._quantize_scale, device=dev,
                in_layout=None,
            )  # fmt: skip

        compiled: dict[str, Any] = {"fused": compiled_of(net.steps)}
        forward.ADD_IN_PATCH_EPILOGUE = False
        try:
            compiled["patch_apart"] = compiled_of(net.steps)
        finally:
            forward.ADD_IN_PATCH_EPILOGUE = True
        compiled["apart"] = compiled_of(net.graph_steps)
        outs = {}
        for k, c in compiled.items():
            net._compiled[(shape, None)] = c  # what net(x) runs
            outs[k] = net(x)
        net._compiled.clear()
        times, med = times_in_turns(dev, compiled, rounds, repeats)
        row = {
            "model": name, "batch": batch,
            "passes": {k: len(c.passes()) for k, c in compiled.items()},
            "same_output": all(np.array_equal(outs["fused"], o) for o in outs.values()),
            **{f"{k}_s": v for k, v in med.items()},
            **{f"{k}_rounds_s": v for k, v in times.items()},
        }  # fmt: skip
        rows.append(row)
        print(
            f"{name:14s} B={batch}: "
            + "  ".join(f"{k} {1e6 * med[k]:7.1f} us ({row['passes'][k]} passes)" for k in compiled)
            + f"  same output {row['same_output']}",
            flush=True,
        )
    return rows


def main() -> None:
    run(arguments(__doc__, rounds=4).parse_args(), probe)


if __name__ == "__main__":
    main()
