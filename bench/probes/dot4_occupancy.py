"""How the dot4I8Packed peak depends on how many threads run: the peak microkernel
(kernels/dot4_peak.wgsl, 64 independent accumulator chains per thread) timed over a range of
workgroup sizes and counts. On a GPU this shows how many warps per SM it takes to reach the
packed-dot throughput, which is what bounds the GEMM on shapes too small to fill the GPU.

Run on a GPU (the H100 figures in bench/results/archive/2026-11-24_analysis_H100.md came from this):
    python bench/probes/dot4_occupancy.py --sms 132
    python bench/probes/dot4_occupancy.py --like bench/results/NVIDIA_H200.json
"""

from __future__ import annotations

import argparse

import numpy as np


def measure(dev, wg: int, groups: int, iters: int = 1024, repeats: int = 10) -> float:
    """TOPS (2 ops per MAC) of the peak kernel run as `groups` workgroups of `wg` threads."""
    from q8ta_wgpu.bench import peak_pass

    p, macs = peak_pass(dev, wg, groups, iters)
    dev.keep_busy([p], 0.1)
    t = float(np.median(dev.time_passes([p], warmup=2, repeats=repeats)[:, 0]))
    return 2 * macs / t / 1e12


def shaped_like_gemm(results: str) -> None:
    """The peak kernel given each big GEMM's work as the recorded run split it: as many
    workgroups and threads as its tiled GEMM (x split-K slices), each thread as many steps of
    64 dots as the GEMM's threads do k-blocks. What it reaches is a bound for any kernel that
    splits the work that way and no more (it has no loads, no shared memory, no epilogue)."""
    import json

    import q8ta_wgpu as q8
    from q8ta_wgpu.bench import SUITES
    from q8ta_wgpu.planner import tiled_kernel

    by_name = {c.name: c for suite in SUITES.values() for c in suite}
    dev = q8.default_device()
    peak = measure(dev, 256, 2048)
    print(f"{dev.name}: peak {peak:.1f} TOPS", flush=True)
    for row in json.loads(open(results).read())["rows"]:
        if not row.get("big_gemm") or row["gemm_config"] is None:  # None: one-pass patch kernel
            continue
        geo = by_name[row["name"]].geometry()
        cfg = row["gemm_config"]
        wm, wn, splits = cfg["constants"]["WG_M"], cfg["constants"]["WG_N"], cfg["splits"]
        tile = tiled_kernel(cfg["kernel"], cfg["constants"])  # tm x tn blocks a thread
        c4, k4 = -(-geo.C_out // 4), geo.K_per_group // 4
        groups = -(-geo.m_blocks // (tile.tm * wm)) * -(-c4 // (tile.tn * wn)) * splits
        # A GEMM thread does tm*tn*16 dots a k-block; a peak-kernel step is 64.
        iters = -(-k4 * tile.tm * tile.tn // (4 * splits))
        tops = measure(dev, wm * wn, groups, iters)
        print(f"{row['name']:16s} {groups:5d} x {wm * wn:3d} threads x {iters:5d} steps: {tops:5.1f} TOPS "
              f"({100 * tops / peak:4.1f}% of peak); its GEMM: {100 * row['gemm_frac_peak']:4.1f}%", flush=True)  # fmt: skip


def main() -> None:
    import q8ta_wgpu as q8

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sms", type=int, default=132, help="the GPU's SM count (to print warps per SM)")
    ap.add_argument("--warps-per-sm", default="1,2,3,4,6,8,12,16,24,32,48,64")
    ap.add_argument(
        "--like", metavar="RESULTS_JSON", help="instead: the peak kernel shaped like each big GEMM there"
    )
    args = ap.parse_args()
    if args.like:
        shaped_like_gemm(args.like)
        return
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
