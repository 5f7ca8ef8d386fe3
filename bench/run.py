"""The comparison benchmark: `python -m q8ta_wgpu bench` plus the peers, on the same shapes.

    python bench/run.py [--tune] [--suite spec,...] [--append] [--no-torch] [--no-ncnn] [--md BENCHMARKS.md]
    python bench/run.py --ship-tuning tuning.json...   # a --tune run's cache -> q8ta_wgpu/tuned/

Peers (each optional; its columns are null where it is absent):
- PyTorch with CUDA (bench/peers/torch_cuda.py): cuDNN fp16 conv2d at its best (cudnn.benchmark,
  the faster of NCHW and channels_last) and torch._int_mm, per call in a CUDA graph (GPU time).
- ncnn (bench/peers/ncnn_int8.py, PyPI `ncnn`): its int8 Vulkan convolution, laid out as its int8
  converter lays out consecutive int8 convs, on the same Vulkan driver; checked exactly against a
  numpy reference on each shape, then timed per layer in a chain.

q8ta_wgpu's own figures (standalone conv and per layer in a chain, GPU timestamps) come from the
package's bench; the ratios compare per layer in a chain with per call in a CUDA graph (cuDNN)
and with per layer in a chain (ncnn). After a run it plots the results JSON it wrote
(<adapter>.png beside it) and rewrites --md from every results file in --out (bench/report.py;
`python bench/report.py` does the same from the results alone). --ship-tuning turns the
choices that `--tune` measured (the tuning cache, $Q8TA_WGPU_TUNING_CACHE) into the tables
`method="auto"` reads.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.peers.ncnn_int8 import NcnnInt8Conv, chainable, ncnn_info  # noqa: E402
from bench.peers.torch_cuda import TorchCudaPeer  # noqa: E402
from bench.report import plot_results, write_benchmarks_md  # noqa: E402
from q8ta_wgpu import bench as q8bench  # noqa: E402
from q8ta_wgpu import tuning  # noqa: E402
from q8ta_wgpu.configs import ConvConfig  # noqa: E402


class NcnnPeer:
    """ncnn's int8 Vulkan convolution: an exact check of one layer of the shape, then the
    per-layer time in a chain of requantizing int8 layers (shapes whose output can feed the
    input: C_out == C_in, same H and W, batch 1; null elsewhere)."""

    def __init__(self, repeats: int) -> None:
        self.info = ncnn_info()
        self.repeats = repeats
        self.conv = NcnnInt8Conv() if self.info else None

    def anchors(self) -> dict[str, Any]:
        if not self.info or self.conv is None:
            return {"ncnn": None}
        # ncnn records a whole inference's commands on the host, then submits: its per-layer
        # figure includes that recording. The floor layer's figure bounds what is fixed per layer.
        floor = self.conv.layer_time(q8bench.FLOOR_CONFIG, repeats=self.repeats, k0=2, k=42)
        return {
            "ncnn": self.info["ncnn"],
            "ncnn_gpu": self.info["gpu"],
            "ncnn_floor_layer_s": floor["layer_s"]["median"] if floor else None,
        }

    def row(self, cfg: ConvConfig) -> dict[str, Any]:
        out: dict[str, Any] = {"ncnn_check": None, "ncnn_int8_stats": None}
        if self.conv is None:
            return out
        if not chainable(cfg):
            out["ncnn_check"] = "not run: no chain of this shape (C_out != C_in, stride or batch > 1)"
            return out
        check = self.conv.check(cfg)
        out["ncnn_check"] = check
        if not check["exact"]:
            return out  # a figure only from layers whose output was checked
        # 40 layers' difference: ~0.3-2 ms against the wall clock's noise of an inference.
        t = self.conv.layer_time(cfg, repeats=self.repeats, k0=2, k=42)
        if t is not None:
            out["ncnn_int8_s"] = t["layer_s"]["median"]
            out["ncnn_int8_stats"] = t
        return out


def ship_tuning(cache_files: list[Path]) -> list[Path]:
    """Tuning caches (written by `--tune` runs, $Q8TA_WGPU_TUNING_CACHE) as the tables shipped in
    q8ta_wgpu/tuned/, one per adapter model and backend; later files win for the same shape."""
    merged: dict[str, dict[str, Any]] = {}
    for f in cache_files:
        for key, choices in json.loads(Path(f).read_text()).items():
            merged.setdefault(key, {}).update(choices)
    written = []
    for key, choices in merged.items():
        device, backend = (part.strip() for part in key.split("|")[:2])
        path = tuning.shipped_table_path(device, backend)
        table = {"adapter": device, "backend": backend, "choices": dict(sorted(choices.items()))}
        path.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--adapter", help="adapter name substring (default: the best)")
    p.add_argument("--backend", help="WebGPU backend (default: Vulkan first)")
    q8bench.add_arguments(p)
    p.add_argument("--no-torch", action="store_true", help="leave out the cuDNN / torch._int_mm peer")
    p.add_argument("--no-ncnn", action="store_true", help="leave out the ncnn int8 Vulkan peer")
    p.add_argument("--no-profile", action="store_true", help="skip the profiler's cuDNN kernel-time check")
    p.add_argument("--md", default="BENCHMARKS.md",
                   help="markdown summary to (re)write from the results in --out after the run; '' to skip")  # fmt: skip
    p.add_argument("--ship-tuning", nargs="+", type=Path, metavar="CACHE",
                   help="only write the shipped tables (q8ta_wgpu/tuned/) from these tuning caches")  # fmt: skip
    args = p.parse_args(argv)
    if args.ship_tuning:
        for path in ship_tuning(args.ship_tuning):
            print(f"wrote {path}")
        return 0
    peers: list[q8bench.Peer] = []
    if not args.no_torch:
        torch_peer = TorchCudaPeer(repeats=args.repeats, profile=not args.no_profile)
        print(f"torch peer: {torch_peer.anchors()}", flush=True)
        peers.append(torch_peer)
    if not args.no_ncnn:
        ncnn_peer = NcnnPeer(repeats=args.repeats)
        print(f"ncnn peer: {ncnn_peer.anchors()}", flush=True)
        peers.append(ncnn_peer)
    code, path = q8bench.run_bench(args, peers)
    if code == 0 and path is not None:
        png = plot_results(path)
        if png is not None:
            print(f"wrote {png}")
        if args.md:
            write_benchmarks_md(path.parent, Path(args.md))
            print(f"wrote {args.md}")
    return code


if __name__ == "__main__":
    sys.exit(main())
