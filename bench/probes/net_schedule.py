"""How a net's steps are fused, ordered and given buffers, A/B per whole network.

For each built-in model (random weights, PT2E with Q8taQuantizer) and batch, forward passes of
one graph on one Device, the same choices (the shipped table or the defaults), the float input
quantized by the first conv in all:
- net: as `Net.compile` makes it (fuse_residual_adds prefers the main branch's conv, so a
  shortcut's conv runs on its own, early; steps that can run beside the one before get buffers
  of their own, `forward.side_steps`; adds on patch-kernel convs in their epilogue or as their
  own pass as `forward.ADD_IN_PATCH_EPILOGUE` says; runs before 8e145dd reported a variant
  patch_epilogue: the adds in patch convs' epilogues where the flag was off);
- no_side: the same, with side steps' outputs taken from dead values' buffers as any other's
  (`forward.SIDE_OUTPUTS_FRESH` off: a barrier before them);
- patch_adds_apart: the same, adds on patch convs as passes of their own (whatever the flag says);
- old: the later conv of an add fuses it (a ResNet's downsample), no side buffers, adds in
  patch epilogues (the scheduling of code 8d45771);
- apart: no add fused (the graph's steps), otherwise as net;
- side_implicit, side_patch: as net, with side steps' convs that run im2col + GEMM on the
  implicit GEMM or the patch kernel (one pass: all of it beside the step before; not run yet).
Reported: each one's whole-forward GPU time (timestamps, median of the rounds' medians, timed in
turns), its pass count, and whether all outputs are the same bytes.

    python bench/probes/net_schedule.py --models resnet18 resnet50 mobilenet_v2 --batches 1 8 --out x.json
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
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
from q8ta_wgpu import forward, planner  # noqa: E402


@contextmanager
def flags(side: bool, patch_epilogue: bool) -> Iterator[None]:
    """forward's scheduling switches, set while a forward pass compiles."""
    old = forward.SIDE_OUTPUTS_FRESH, forward.ADD_IN_PATCH_EPILOGUE
    forward.SIDE_OUTPUTS_FRESH, forward.ADD_IN_PATCH_EPILOGUE = side, patch_epilogue
    try:
        yield
    finally:
        forward.SIDE_OUTPUTS_FRESH, forward.ADD_IN_PATCH_EPILOGUE = old


def side_method(net: Any, shape: tuple[int, ...], method: str, compile_net: Any) -> Any:
    """The net compiled with each side step's conv that runs more than one pass (im2col + GEMM)
    on `method` instead (one pass, all of it beside the step before), where the conv takes it."""
    shapes = net.shapes(shape)
    changed = []
    for i in forward.side_steps(net.steps, lambda v: v):
        s = net.steps[i]
        if isinstance(s.op, forward.ConvOp):
            conv = s.op.conv
            x_shape = shapes[s.inputs[0]]
            geo = planner.kernel_geometry(conv.geometry(x_shape), "4W4C")
            runs = len(conv.plan(x_shape, "4W4C", False).specs) > 1
            if runs and method in planner.valid_methods(geo):
                changed.append((conv, conv.method))
                conv.method = method
                conv._plans.clear()
    try:
        return compile_net()
    finally:
        for conv, old in changed:
            conv.method = old
            conv._plans.clear()


def probe(name: str, hw: int, batches: list[int], rounds: int, repeats: int, dev: q8.Device) -> list[dict]:
    net = build_net(name, hw, dev)
    graph = net.graph_steps
    later = forward.fuse_residual_adds(graph, graph[-1].output, prefer="later")
    rows = []
    for batch in batches:
        shape = (batch, 3, hw, hw)
        x = np.random.default_rng(batch).standard_normal(shape).astype(np.float32)

        def compiled_of(steps: Any, side: bool, patch_epilogue: bool, shape: tuple[int, ...] = shape) -> Any:
            with flags(side, patch_epilogue):
                return compile_like_net(net, shape, steps)

        d = forward.SIDE_OUTPUTS_FRESH, forward.ADD_IN_PATCH_EPILOGUE
        compiled = {
            "net": compiled_of(net.steps, *d),
            "side_implicit": side_method(net, shape, "implicit_4w4c", lambda d=d: compiled_of(net.steps, *d)),
            "side_patch": side_method(net, shape, "patch_4w4c", lambda d=d: compiled_of(net.steps, *d)),
            "no_side": compiled_of(net.steps, False, d[1]),
            "patch_adds_apart": compiled_of(net.steps, d[0], False),
            "old": compiled_of(later, False, True),
            "apart": compiled_of(graph, *d),
        }
        outs = outputs_of(net, compiled, x)
        times, med = times_in_turns(dev, compiled, rounds, repeats)
        row = turns_row(name, batch, compiled, outs, times, med)
        row["net_over_old"] = med["net"] / med["old"]
        rows.append(row)
        print(
            f"{name:14s} B={batch}: "
            + "  ".join(f"{k} {1e6 * med[k]:7.1f} us ({row['passes'][k]})" for k in compiled)
            + f"  net/old {row['net_over_old']:.3f}  same output {row['same_output']}",
            flush=True,
        )
    return rows


def main() -> None:
    run(arguments(__doc__, rounds=4).parse_args(), probe)


if __name__ == "__main__":
    main()
