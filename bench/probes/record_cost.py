"""What recording a dispatch costs the host, by the number of buffers its bind group binds: 64
dispatches of a one-workgroup kernel, each with its own buffers, recorded into one command
buffer through `Device.record` (wgpu-native's calls) and released, per dispatch.

    python bench/probes/record_cost.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import q8ta_wgpu as q8  # noqa: E402
from q8ta_wgpu.runtime import Pass  # noqa: E402


def kernel(bindings: int) -> str:
    """A kernel whose thread 0 writes the sum of word 0 of every other binding to binding 0."""
    decl = "\n".join(
        f"@group(0) @binding({i}) var<storage, read_write> b{i}: array<u32>;" for i in range(bindings)
    )
    body = " + ".join(f"b{i}[0]" for i in range(1, bindings)) or "0u"
    return (
        f"{decl}\n@compute @workgroup_size(64)\n"
        f"fn main(@builtin(global_invocation_id) g: vec3<u32>) {{ if (g.x == 0u) {{ b0[0] = {body}; }} }}"
    )


def main() -> None:
    dev = q8.default_device()
    if dev.record([]) is None:
        raise SystemExit("needs wgpu-native's calls (Device.record)")
    print(dev.name, dev.backend)
    for bindings in (1, 2, 4, 8, 12):
        module = dev.device.create_shader_module(code=kernel(bindings))
        pipe = dev.device.create_compute_pipeline(
            layout="auto", compute={"module": module, "entry_point": "main"}
        )
        passes = [
            Pass(pipe, dev.bind_group(pipe, [dev.buffer(256) for _ in range(bindings)]), (1, 1, 1), "p")
            for _ in range(64)
        ]
        for _ in range(10):
            dev.record(passes).release()
        times = []
        for _ in range(100):
            t0 = time.perf_counter()
            dev.record(passes).release()
            times.append(time.perf_counter() - t0)
        print(f"{bindings:2d} bindings: {np.median(times) * 1e6 / len(passes):.2f} us a dispatch recorded")


if __name__ == "__main__":
    main()
