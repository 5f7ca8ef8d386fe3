"""Where a network call's host time goes: `net(x)` taken apart on one adapter.

For each built-in model (random weights, PT2E with Q8taQuantizer) at one input shape, the
median of many calls after warm-up of:
- wall: `net(x)` (numpy float32 in and out), and gpu: the forward pass's GPU time (timestamps);
- its parts, each timed alone: the input checks, the input write, recording + submitting
  every pass (no wait: the GPU runs behind), a readback of the output with nothing queued
  (the floor of one round trip), the output dequantize;
- wall time of `net.run(qtensor)` and a wait by the dispatches in the first command buffer
  (`Device.submit_chunk`; later ones grow by `submit_growth`);
- a call's GPU part alone: pre-recorded work submitted and its output mapped (`submit_wait`),
  and the same with the next call's recording in between (`submit_record_wait`);
- the call as it was before the work was recorded ahead (one command buffer, then wgpu-py's
  `queue.read_buffer`: `old_wall`), and that read alone (`old_readback_floor`) against
  `Device.read` (`device_read_floor`).

    python bench/probes/net_host.py --models resnet18 resnet50 mobilenet_v2 --hw 224 --out x.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import q8ta_wgpu as q8  # noqa: E402
from bench.wall_time import median_wall  # noqa: E402
from q8ta_wgpu import reference  # noqa: E402


def median_us(f: Callable[[], Any], repeats: int, after: Callable[[], Any] | None = None) -> dict[str, float]:
    """median_wall's figures in microseconds (after 5 warm-up calls)."""
    return {k: v * 1e6 for k, v in median_wall(f, repeats, warmup=5, after=after).items()}


def build_net(name: str, hw: int, dev: q8.Device) -> q8.Net:
    """Built-in model `name` (random weights, seed 0) through PT2E, calibrated on 2 batches of 2
    of normal noise, on `dev`."""
    import torch

    from q8ta_wgpu import models

    gen = torch.Generator().manual_seed(0)
    calib = [torch.randn(2, 3, hw, hw, generator=gen) for _ in range(2)]
    return q8.from_torch(q8.quantize_pt2e(models.build(name, seed=0), calib), device=dev)


def probe(net: q8.Net, x: np.ndarray, repeats: int) -> dict[str, Any]:
    dev = net.device
    c = net.compile(x.shape)
    passes = c.passes()
    y = c.values[net.output.output]
    n_out = int(np.prod(y.shape))
    out: dict[str, Any] = {"passes": len(passes), "steps": len(net.steps), "out_bytes": n_out}
    if dev.has_timestamps:
        out["gpu_us"] = net.gpu_times(x.shape, repeats=20, warm_s=0.3)["whole_s"] * 1e6
    out["wall_us"] = median_us(lambda: net(x), repeats)

    src, nbytes = c.readback  # the output as a call reads it (packed where no unpack pass)

    def wgpu_py_read() -> np.ndarray:  # the readback before Device.read mapped its own buffer
        return c.output_array(dev.queue.read_buffer(src, 0, (nbytes + 3) // 4 * 4)[:nbytes], y.shape)

    def old_call() -> np.ndarray:  # as net(x) was: submit, then wgpu-py's read_buffer
        dev.write(c.x_float, x)
        dev.run(c.passes())
        return wgpu_py_read()

    q = net.run_int8(x)
    assert np.array_equal(old_call(), q), "old and new readback differ"
    keep = dev.submit_chunk
    try:  # the code before this probe: one command buffer for the whole forward pass
        dev.submit_chunk = len(passes)
        out["old_wall_us"] = median_us(old_call, repeats)
    finally:
        dev.submit_chunk = keep
    out["input_checks_us"] = median_us(lambda: net._float_input(x), repeats)
    out["write_us"] = median_us(lambda: dev.write(c.x_float, x), repeats)
    out["passes_list_us"] = median_us(c.passes, repeats)
    if c.staging is not None:
        out["record_submit_us"] = median_us(lambda: dev._submitter(passes), repeats, after=dev.sync)
        copy = (src, c.staging, c.read_bytes)
        out["record_us"] = median_us(lambda: dev.record(passes, copy).release(), repeats)

        def round_trip() -> None:
            dev.submit(dev.record([], copy))
            dev.read_mapped(c.staging, c.read_bytes)

        out["readback_floor_us"] = median_us(round_trip, repeats)
        # A call's GPU part alone: work recorded beforehand, submitted, its output mapped (no
        # input write, no recording): what it adds to gpu_us is the submission's and the
        # completion's latency. Then the same with the next call's recording in between, as
        # net(x) does it (does recording while the GPU runs slow the call down?).
        ahead = [dev.record(passes, copy) for _ in range(repeats + 5)]

        def submit_wait() -> None:
            dev.submit(ahead.pop())
            dev.read_mapped(c.staging, c.read_bytes)

        out["submit_wait_us"] = median_us(submit_wait, repeats)
        ahead = [dev.record(passes, copy) for _ in range(repeats + 5)]

        def submit_record_wait() -> None:
            dev.submit(ahead.pop())
            dev.record(passes, copy).release()
            dev.read_mapped(c.staging, c.read_bytes)

        out["submit_record_wait_us"] = median_us(submit_record_wait, repeats)
    out["old_readback_floor_us"] = median_us(wgpu_py_read, repeats)
    out["device_read_floor_us"] = median_us(lambda: dev.read(src, nbytes), repeats)
    out["dequantize_us"] = median_us(lambda: net._dequantize(q), repeats)
    # Dispatches per command buffer (net.run on a QTensor, which records as it submits): wall
    # time of a run and a wait, the chunk sizes alternated in rounds.
    qx = reference.quantize_per_tensor(x, net.input_scale, net.input_zero_point)
    qt = q8.QTensor.from_numpy(qx, net.input_scale, net.input_zero_point, device=dev)
    chunks = [len(passes), 32, 16, 8]
    walls: dict[int, list[float]] = {k: [] for k in chunks}
    try:
        for _ in range(4):
            for k in chunks:
                dev.submit_chunk = k
                walls[k].append(median_us(lambda: (net.run(qt), dev.sync()), max(5, repeats // 4))["median"])
    finally:
        dev.submit_chunk = keep
    out["run_sync_us_by_chunk"] = {str(k): float(np.median(v)) for k, v in walls.items()}
    return out


def model_arguments(doc: str) -> argparse.ArgumentParser:
    """A per-model host probe's command line: models, input size, batch, results file."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["resnet18", "resnet50", "mobilenet_v2"])
    p.add_argument("--hw", type=int, default=224)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--out", help="write the results as JSON here")
    return p


def run_per_model(args: argparse.Namespace, probe: Callable[[q8.Net, np.ndarray], dict[str, Any]]) -> int:
    """probe(net, x) for each built-in model of args.models (`build_net`) on the default device,
    x normal noise of the batch and size asked; printed, and written to args.out."""
    dev = q8.default_device()
    results: dict[str, Any] = {
        "adapter": dev.name,
        "backend": dev.backend,
        "hw": args.hw,
        "batch": args.batch,
    }
    rng = np.random.default_rng(0)
    for name in args.models:
        net = build_net(name, args.hw, dev)
        x = rng.standard_normal((args.batch, 3, args.hw, args.hw)).astype(np.float32)
        results[name] = probe(net, x)
        print(name, json.dumps(results[name]))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = model_arguments(__doc__)
    p.add_argument("--repeats", type=int, default=50)
    args = p.parse_args(argv)
    return run_per_model(args, lambda net, x: probe(net, x, args.repeats))


if __name__ == "__main__":
    raise SystemExit(main())
