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

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import q8ta_wgpu as q8  # noqa: E402
from bench.probes.net_host import build_net  # noqa: E402
from bench.probes.net_turns import arguments, compile_like_net, gpu_and_wall_row, run  # noqa: E402
from q8ta_wgpu import forward  # noqa: E402


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
        rows.append(gpu_and_wall_row(net, name, batch, compiled, x, rounds, repeats, dev))
    return rows


def main() -> None:
    run(arguments(__doc__, rounds=5).parse_args(), probe)


if __name__ == "__main__":
    main()
