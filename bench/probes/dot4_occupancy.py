"""How the dot4I8Packed peak depends on how many threads run: the peak microkernel
(kernels/dot4_peak.wgsl, 64 independent accumulator chains per thread) timed over a range of
workgroup sizes and counts. On a GPU this shows how many warps per SM it takes to reach the
packed-dot throughput, which is what bounds the GEMM on shapes too small to fill the GPU.

Run on a GPU (the H100 figures in bench/analysis.md came from this):
    python bench/probes/dot4_occupancy.py --sms 132
"""

from __future__ import annotations

import argparse

import numpy as np


def measure(dev, wg: int, groups: int, iters: int = 1024, repeats: int = 10) -> float:
    """TOPS (2 ops per MAC) of the peak kernel run as `groups` workgroups of `wg` threads."""
    from q8ta_wgpu.runtime import Pass

    pipe = dev.pipeline("dot4_peak.wgsl", {"WG": wg, "ITERS": iters})
    out = dev.buffer(4 * wg * groups)
    p = Pass(pipe, dev.bind_group(pipe, [out]), (groups, 1, 1), "dot4_peak")
    dev.keep_busy([p], 0.1)
    t = float(np.median(dev.time_passes([p], warmup=2, repeats=repeats)[:, 0]))
    return 2 * wg * groups * iters * 64 * 4 / t / 1e12


def main() -> None:
    import q8ta_wgpu as q8

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sms", type=int, default=132, help="the GPU's SM count (to print warps per SM)")
    ap.add_argument("--warps-per-sm", default="1,2,3,4,6,8,12,16,24,32,48,64")
    args = ap.parse_args()
    dev = q8.default_device()
    peak = measure(dev, 256, 2048)
    print(f"{dev.name}: peak {peak:.1f} TOPS (2048 x 256 threads)", flush=True)
    for wps in (int(v) for v in args.warps_per_sm.split(",")):
        for wg in (32, 64, 256):
            if (wps * 32) % wg or (wg == 32 and wps > 4):
                continue
            groups = args.sms * wps * 32 // wg
            tops = measure(dev, wg, groups)
            print(f"{wps:3d} warps/SM  ({groups:5d} x {wg:3d} threads)  {tops:6.1f} TOPS  "
                  f"{100 * tops / peak:5.1f}% of peak", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
