"""How many dispatches per command buffer (`Device.submit_chunk`, `submit_growth`): host time
per conv call recorded in a `recording()` block (q8ta_wgpu.bench.host_overhead: the block's
CPU time over its calls, its submits included) and wall time of `net.run(qtensor)` plus a wait
for the built-in networks at 224x224, batch 1, each policy alternated over rounds.

    python bench/probes/submit_chunks.py --out chunks.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import q8ta_wgpu as q8  # noqa: E402
from bench.probes.net_host import build_net  # noqa: E402
from bench.wall_time import median_wall  # noqa: E402
from q8ta_wgpu import reference  # noqa: E402
from q8ta_wgpu.bench import host_overhead  # noqa: E402

# (first command buffer's dispatches, growth of each next one); the first: one command buffer
POLICIES = [(1 << 30, 1.0), (16, 1.0), (16, 1.5), (16, 2.0), (32, 2.0)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["resnet18", "resnet50", "mobilenet_v2"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    dev = q8.default_device()
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    nets = {m: build_net(m, 224, dev) for m in args.models}
    qts = {
        m: q8.QTensor.from_numpy(
            reference.quantize_per_tensor(x, n.input_scale, n.input_zero_point),
            n.input_scale,
            n.input_zero_point,
            device=dev,
        )
        for m, n in nets.items()
    }
    got: dict[str, dict[str, list[float]]] = {str(p): {} for p in POLICIES}
    keep = dev.submit_chunk, dev.submit_growth
    try:
        for _ in range(args.rounds):
            for p in POLICIES:
                dev.submit_chunk, dev.submit_growth = p
                r = got[str(p)]
                r.setdefault("recorded_call_us", []).append(host_overhead(dev, calls=200)["recorded_call_us"])
                for m, n in nets.items():
                    w = median_wall(lambda n=n, m=m: (n.run(qts[m]), dev.sync()), 15)["median"]
                    r.setdefault(f"{m}_run_wait_us", []).append(w * 1e6)
    finally:
        dev.submit_chunk, dev.submit_growth = keep
    out = {p: {k: float(np.median(v)) for k, v in r.items()} for p, r in got.items()}
    for p, r in out.items():
        print(p, {k: round(v, 1) for k, v in r.items()})
    if args.out:
        Path(args.out).write_text(json.dumps({"adapter": dev.name, "policies": out}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
