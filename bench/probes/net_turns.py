"""What the whole-network comparisons share (untuned.py, split_k_in_gemm.py,
refine_in_context.py): built-in nets under given tuning choices, their GPU times taken in turns,
and the command line and results file of a probe over models and batches."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

import q8ta_wgpu as q8
from bench.wall_time import median_wall
from q8ta_wgpu import tuning
from q8ta_wgpu.forward import Compiled, compile_forward, whole_gpu_times


def with_choices(shipped: bool, cache: Path, make: Callable[[], Any]) -> Any:
    """make() with the tuning choices of: the shipped table or not, and the cache file `cache`
    (plans are made when a net first compiles, under the choices in effect then)."""
    os.environ[tuning.SHIPPED_ENV] = "1" if shipped else "0"
    os.environ[tuning.CACHE_ENV] = str(cache)
    tuning.forget()
    return make()


def compile_like_net(net: q8.Net, shape: tuple[int, ...], steps: Any = None, **options: Any) -> Compiled:
    """`net`'s forward pass for numpy inputs of `shape` as `Net.compile` makes it (not cached),
    of `steps` (default: the net's) and with compile_forward's keyword `options`."""
    return compile_forward(
        net.steps if steps is None else steps, net.shapes(shape), input_name=net.input_name,
        input_scale=net.input_scale, input_zero_point=net.input_zero_point,
        quantize_scale=net._quantize_scale, device=net.device, in_layout=None, **options,
    )  # fmt: skip


def outputs_of(net: q8.Net, compiled: Mapping[str, Compiled], x: np.ndarray) -> dict[str, np.ndarray]:
    """net(x) with each of `compiled` (forward passes of net's graph for x's shape) run instead
    of the net's own."""
    key = (tuple(x.shape), None)
    outs = {}
    try:
        for k, c in compiled.items():
            net._compiled[key] = c
            outs[k] = net(x)
    finally:
        net._compiled.pop(key, None)
    return outs


def times_in_turns(
    dev: q8.Device, compiled: Mapping[str, Compiled], rounds: int, repeats: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Each compiled forward pass's whole GPU time (median of `repeats`) in `rounds` rounds, in
    turns, each round starting with another one (drifting clocks hit them alike); and the median
    of each one's rounds."""
    times: dict[str, list[float]] = {k: [] for k in compiled}
    order = list(compiled)
    for r in range(rounds):
        for k in order[r % len(order) :] + order[: r % len(order)]:
            times[k].append(float(np.median(whole_gpu_times(dev, compiled[k], repeats=repeats, warm_s=0.2))))
    return times, {k: float(np.median(v)) for k, v in times.items()}


def turns_row(
    model: str,
    batch: int,
    compiled: Mapping[str, Compiled],
    outs: Mapping[str, np.ndarray],
    times: Mapping[str, list[float]],
    med: Mapping[str, float],
) -> dict[str, Any]:
    """A probe's row for forward passes timed in turns (`times_in_turns`): each one's pass
    count, whether all their outputs are the same bytes, their medians and rounds."""
    first = next(iter(outs.values()))
    return {
        "model": model, "batch": batch,
        "passes": {k: len(c.passes()) for k, c in compiled.items()},
        "same_output": all(bool(np.array_equal(first, o)) for o in outs.values()),
        **{f"{k}_s": v for k, v in med.items()},
        **{f"{k}_rounds_s": v for k, v in times.items()},
    }  # fmt: skip


def walls_in_turns(
    net: q8.Net, compiled: Mapping[str, Compiled], x: np.ndarray, rounds: int, repeats: int
) -> dict[str, list[float]]:
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


def gpu_and_wall_row(
    net: q8.Net,
    model: str,
    batch: int,
    compiled: Mapping[str, Compiled],
    x: np.ndarray,
    rounds: int,
    repeats: int,
    dev: q8.Device,
) -> dict[str, Any]:
    """`turns_row` of compiled forward passes of `net` on input x (GPU times in turns), with each
    one's `net(x)` wall time in turns too (`<k>_wall_s`, `<k>_wall_rounds_s`), printed as a line."""
    outs = outputs_of(net, compiled, x)
    times, med = times_in_turns(dev, compiled, rounds, repeats)
    row = turns_row(model, batch, compiled, outs, times, med)
    walls = walls_in_turns(net, compiled, x, rounds, 5 * repeats)
    row.update({f"{k}_wall_s": float(np.median(v)) for k, v in walls.items()})
    row.update({f"{k}_wall_rounds_s": v for k, v in walls.items()})
    print(
        f"{model:14s} B={batch}: "
        + "  ".join(
            f"{k} GPU {1e6 * med[k]:7.1f} us wall {1e6 * row[k + '_wall_s']:7.1f} us ({row['passes'][k]})"
            for k in compiled
        )
        + f"  same output {row['same_output']}",
        flush=True,
    )
    return row


def arguments(doc: str, rounds: int) -> argparse.ArgumentParser:
    """A probe's command line: models, batches, input size, rounds, repeats, results file."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet18", "resnet50", "mobilenet_v2"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--hw", type=int, default=224)
    p.add_argument("--rounds", type=int, default=rounds)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out", help="results JSON")
    return p


def run(args: argparse.Namespace, probe: Callable[..., list[dict[str, Any]]]) -> None:
    """probe(model, hw, batches, rounds, repeats, device) for each of args.models on the default
    device (it must have GPU timestamps), its rows written to args.out."""
    dev = q8.default_device()
    if not dev.has_timestamps:
        raise SystemExit(f"{dev.name} has no timestamp queries: nothing to measure")
    rows = [r for m in args.models for r in probe(m, args.hw, args.batches, args.rounds, args.repeats, dev)]
    out = {
        "adapter": dev.name, "backend": dev.backend, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "hw": args.hw, "rounds": args.rounds, "repeats": args.repeats, "rows": rows,
    }  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
        print("wrote", args.out)
