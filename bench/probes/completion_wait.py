"""When does a submitted forward pass come back? A network call's wall time against its GPU time.

`net(x)` completes 150-190 us after its GPU time on the H200 (bench/probes/net_host.py). This
probe takes one call's GPU part apart, per call, on work recorded beforehand:
- submit: host time of `queue.submit` of the recorded command buffer;
- gpu: that very submission's GPU time (timestamps at the start and end of its compute pass,
  not a figure from a GPU kept busy);
- total: from before the submit until its output is mapped and copied out;
- after: total - submit - gpu, what the launch and the completion add.
Each under two ways of waiting for the map (`_native.Submitter.read`): blocking polls
(wgpuDevicePoll with wait) and non-blocking polls in a loop (`Submitter.spin_s`), in turns.
The same with the busy wait and the work in two command buffers, submitted one after the other,
the first of a few passes (does the GPU start the first while the host submits the rest?).
Then `net(x)` wall time under both ways of waiting, a bare copy's round trip (submit + map)
under both, and a `net(x)` call (busy wait) taken apart into its phases.

    python bench/probes/completion_wait.py --models resnet18 resnet50 mobilenet_v2 --out x.json
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import wgpu

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import q8ta_wgpu as q8  # noqa: E402
from bench.probes.net_host import median_us, model_arguments, run_per_model  # noqa: E402
from q8ta_wgpu.device_core import encode  # noqa: E402

WAITS = {"block": 0.0, "spin": 0.02}  # Device.spin_wait_s of each way of waiting
SPLITS = {"spin_first_4": 4, "spin_first_12": 12}  # busy wait; two submits, the first of N passes


def timed_work(
    dev: q8.Device, passes: list[Any], y: Any, nbytes: int, staging: Any, ts_at: int, first: int = 0
) -> list[Any]:
    """Command buffers of `passes` with timestamps at the start of the first pass and the end
    of the last, then nbytes of `y` copied to staging[0:] and the two timestamps to
    staging[ts_at:]: one command buffer, or with `first` two (the first `first` passes, the rest)."""
    qs = dev.device.create_query_set(type="timestamp", count=2)
    qbuf = dev.device.create_buffer(size=16, usage=wgpu.BufferUsage.QUERY_RESOLVE | wgpu.BufferUsage.COPY_SRC)
    parts = [passes[:first], passes[first:]] if first else [passes]
    cbs = []
    for i, part in enumerate(parts):
        enc = dev.device.create_command_encoder()
        tw: dict[str, Any] = {"query_set": qs}
        if i == 0:
            tw["beginning_of_pass_write_index"] = 0
        if i == len(parts) - 1:
            tw["end_of_pass_write_index"] = 1
        encode(enc.begin_compute_pass(timestamp_writes=tw), part)
        if i == len(parts) - 1:
            enc.resolve_query_set(qs, 0, 2, qbuf, 0)
            enc.copy_buffer_to_buffer(y, 0, staging, 0, nbytes)
            enc.copy_buffer_to_buffer(qbuf, 0, staging, ts_at, 16)
        cbs.append(enc.finish())
    return cbs


def one_call(dev: q8.Device, cbs: list[Any], staging: Any, ts_at: int) -> dict[str, float]:
    """Submit `cbs` (one submit each, in order), wait for the mapped output; figures in us."""
    t0 = time.perf_counter()
    for cb in cbs:
        dev.queue.submit([cb])
    t1 = time.perf_counter()
    data = dev._submitter.read(staging, ts_at + 16, dev.spin_wait_s)
    t2 = time.perf_counter()
    ts = np.frombuffer(bytes(data[ts_at : ts_at + 16]), np.uint64).astype(np.int64)
    gpu = float(ts[1] - ts[0]) * dev.timestamp_period_ns * 1e-3
    submit, total = (t1 - t0) * 1e6, (t2 - t0) * 1e6
    return {"submit": submit, "gpu": gpu, "total": total, "after": total - submit - gpu}


def call_phases(net: q8.Net, x: np.ndarray) -> dict[str, float]:
    """One `net(x)` as Net.run_int8 and __call__ make it, with the time of each phase in us:
    input checks (dtype, shape), write (to the mapped input buffer), submit, the finite check
    (while the GPU runs), recording the next call, waiting for the readback, mapping the input
    buffer for the next call, dequantize."""
    dev = net.device
    t = [time.perf_counter()]
    xc = net._float_input(x)
    t.append(time.perf_counter())
    with dev.lock:
        c = net.compile(xc.shape)
        if c.upload_ptr is None:
            c.upload_ptr = dev.map_for_write(c.upload, xc.nbytes)
        ptr, c.upload_ptr = c.upload_ptr, None
        dev.write_mapped(ptr, xc)
        dev.unmap(c.upload)
        t.append(time.perf_counter())
        src, nbytes = c.readback
        copy = (src, c.staging, c.read_bytes)
        copy_in = (c.upload, c.x_float, xc.nbytes)
        work, c.ahead = c.ahead, None
        dev.submit(work if work is not None else dev.record(c.passes(), copy, copy_in))
        t.append(time.perf_counter())
        assert np.isfinite(xc).all()
        t.append(time.perf_counter())
        c.ahead = dev.record(c.passes(), copy, copy_in)
        t.append(time.perf_counter())
        data = dev.read_mapped(c.staging, c.read_bytes)[:nbytes]
        t.append(time.perf_counter())
        c.upload_ptr = dev.map_for_write(c.upload, xc.nbytes)
        t.append(time.perf_counter())
    q = c.output_array(data, c.values[net.output.output].shape)
    net._dequantize(q)
    t.append(time.perf_counter())
    names = ("checks", "write", "submit", "isfinite", "record_next", "wait_read", "map_input", "dequantize")
    out = {k: (b - a) * 1e6 for k, a, b in zip(names, t[:-1], t[1:], strict=True)}
    out["total"] = (t[-1] - t[0]) * 1e6
    return out


def summary(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {
        k: {"median": float(np.median(v)), "min": float(np.min(v)), "max": float(np.max(v))}
        for k in rows[0]
        for v in [[r[k] for r in rows]]
    }


def probe(net: q8.Net, x: np.ndarray, rounds: int, per_round: int) -> dict[str, Any]:
    dev = net.device
    c = net.compile(x.shape)
    passes = c.passes()
    src, nbytes = c.readback
    nbytes = (nbytes + 3) // 4 * 4
    ts_at = (nbytes + 7) // 8 * 8
    staging = dev.staging_buffer(ts_at + 16, label="probe readback")
    net(x)  # (the probe's work reads what a call copied in)
    out: dict[str, Any] = {"passes": len(passes)}
    out["gpu_busy_us"] = net.gpu_times(x.shape, repeats=20, warm_s=0.5)["whole_s"] * 1e6
    calls: dict[str, list[dict[str, float]]] = {w: [] for w in (*WAITS, *SPLITS)}
    walls: dict[str, list[float]] = {w: [] for w in WAITS}
    floors: dict[str, list[float]] = {w: [] for w in WAITS}
    phases: list[dict[str, float]] = []
    keep = dev.spin_wait_s

    def round_trip() -> None:
        dev.submit(dev.record([], (src, c.staging, c.read_bytes)))
        dev.read_mapped(c.staging, c.read_bytes)

    try:
        for r in range(rounds):
            ways = [*WAITS, *SPLITS]
            for w in ways[r % len(ways) :] + ways[: r % len(ways)]:
                dev.spin_wait_s = WAITS.get(w, WAITS["spin"])
                first = SPLITS.get(w, 0)
                work = [
                    timed_work(dev, passes, src, nbytes, staging, ts_at, first) for _ in range(per_round + 3)
                ]
                for i, cbs in enumerate(work):
                    row = one_call(dev, cbs, staging, ts_at)
                    if i >= 3:  # the first calls of a round warm up
                        calls[w].append(row)
                if w in WAITS:
                    walls[w].append(median_us(lambda: net(x), per_round)["median"])
                    floors[w].append(median_us(round_trip, per_round)["median"])
                if w == "spin":
                    phases += [call_phases(net, x) for _ in range(per_round)]
    finally:
        dev.spin_wait_s = keep
    for w in WAITS:
        out[w] = {
            "per_call_us": summary(calls[w]),
            "net_call_wall_us": float(np.median(walls[w])),
            "copy_round_trip_us": float(np.median(floors[w])),
        }
    for w in SPLITS:
        out[w] = {"per_call_us": summary(calls[w])}
    out["spin_net_call_phases_us"] = summary(phases[3:])
    return out


def main(argv: list[str] | None = None) -> int:
    p = model_arguments(__doc__)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--per-round", type=int, default=25)
    args = p.parse_args(argv)
    dev = q8.default_device()
    if dev._submitter is None or not dev.has_timestamps:
        raise SystemExit(f"{dev.name}: needs wgpu-native's calls and GPU timestamps")
    return run_per_model(args, lambda net, x: probe(net, x, args.rounds, args.per_round))


if __name__ == "__main__":
    raise SystemExit(main())
