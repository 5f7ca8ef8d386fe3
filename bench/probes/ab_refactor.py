"""A/B of two code states in one process: the package as it is and an older checkout of it,
alternated conv by conv, each on its own Device on the same adapter. For a refactor that must
not change a byte or a microsecond: per conv, the output bytes (must be equal), the standalone
GPU time and the per-layer time in a chain (bench.py's figures), and at the end the host time
per cached call.

    git worktree add /tmp/old <commit>
    python bench/probes/ab_refactor.py /tmp/old [--suites spec,resnet50] [--names spec2,...] [--rounds 2]
        [--method implicit_4w4c] [--out ab.json]

The older tree's q8ta_wgpu/ and kernels/ are copied into a temporary folder as package
`q8ta_wgpu_old` (its relative imports make that work); both packages read the same tuning
cache and shipped tables.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def load_old(tree: Path) -> Any:
    tmp = Path(tempfile.mkdtemp(prefix="q8ta_old_"))
    shutil.copytree(tree / "q8ta_wgpu", tmp / "q8ta_wgpu_old")
    shutil.copytree(tree / "kernels", tmp / "q8ta_wgpu_old" / "kernels")
    sys.path.insert(0, str(tmp))
    return importlib.import_module("q8ta_wgpu_old")


def measure(pkg: Any, dev: Any, cfg: Any, repeats: int, chain: int, method: str) -> dict[str, Any]:
    bench = importlib.import_module(pkg.__name__ + ".bench")
    configs = importlib.import_module(pkg.__name__ + ".configs")
    case = configs.make_case(cfg, seed=0)
    x, w, ws, b = case["args"]
    conv = pkg.QConv2d(w, ws, b, device=dev, **{**case["kwargs"], "method": method})
    xt = pkg.QTensor.from_numpy(
        x, case["kwargs"]["input_scale"], case["kwargs"]["input_zero_point"], device=dev
    )
    out = conv(xt).numpy()
    _, passes, _ = conv.passes(xt)
    alone = dev.time_passes(passes, warmup=3, repeats=repeats, warm_s=0.1, whole=True)[:, 0]
    chained, _ = bench.chain_layer_time(dev, conv, xt, layers=chain, repeats=repeats)
    return {
        "out": out,
        "method": conv.plan(xt.shape, xt.layout, False).method,
        "alone_s": float(np.median(alone)),
        "chain_s": float(np.median(chained)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old_tree", type=Path)
    ap.add_argument("--suites", default="spec,resnet50")
    ap.add_argument("--names", default="", help="comma-separated config names (default: every one)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--chain", type=int, default=24)
    ap.add_argument("--method", default="auto", help="every conv's method (QConv2d's method=)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import q8ta_wgpu as new
    from q8ta_wgpu.bench import SUITES, host_overhead, warm_up

    old = load_old(args.old_tree)
    pkgs = {"old": old, "new": new}
    devs = {k: p.Device() for k, p in pkgs.items()}
    print(f"adapter {devs['new'].name} ({devs['new'].backend})", flush=True)
    warm_up(devs["new"])
    rows = []
    for suite in args.suites.split(","):
        for cfg in SUITES[suite]:
            if args.names and cfg.name not in args.names.split(","):
                continue
            got: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
            for r in range(args.rounds):
                for k in ("old", "new") if r % 2 == 0 else ("new", "old"):
                    got[k].append(measure(pkgs[k], devs[k], cfg, args.repeats, args.chain, args.method))
            same = all(np.array_equal(a["out"], got["new"][0]["out"]) for a in got["old"] + got["new"])
            row = {
                "suite": suite,
                "name": cfg.name,
                "same_bytes": bool(same),
                "method": got["new"][0]["method"],
            }
            for k in ("alone_s", "chain_s"):
                o = float(np.median([m[k] for m in got["old"]]))
                n = float(np.median([m[k] for m in got["new"]]))
                row[k] = {"old": o, "new": n, "new_over_old": n / o}
            rows.append(row)
            print(
                f"{suite:9s} {cfg.name:14s} {row['method']:15s} same bytes {same}  alone "
                f"{row['alone_s']['old'] * 1e6:7.1f} -> {row['alone_s']['new'] * 1e6:7.1f} us  chain "
                f"{row['chain_s']['old'] * 1e6:7.1f} -> {row['chain_s']['new'] * 1e6:7.1f} us",
                flush=True,
            )
    host = {k: [] for k in pkgs}
    for r in range(2):
        for k in ("old", "new") if r % 2 == 0 else ("new", "old"):
            ho = importlib.import_module(pkgs[k].__name__ + ".bench").host_overhead
            host[k].append(ho(devs[k]) if k == "old" else host_overhead(devs[k]))
    summary: dict[str, Any] = {"convs": len(rows), "all_same_bytes": all(r["same_bytes"] for r in rows)}
    for k in ("alone_s", "chain_s"):
        q = [r[k]["new_over_old"] for r in rows]
        summary[k + "_new_over_old"] = {"median": float(np.median(q)), "min": min(q), "max": max(q)}
    for k in ("call_us", "recorded_call_us"):
        summary[k] = {p: float(np.median([h[k] for h in host[p]])) for p in pkgs}
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(
            json.dumps({"adapter": devs["new"].name, "summary": summary, "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
