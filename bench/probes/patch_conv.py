"""conv_patch_4w4c.wgsl (method "patch_4w4c": one dispatch, input patches staged in shared
memory) against the conv's planned method (the shipped or cached choice, "auto"), per layer in a
chain (and alone), each configuration's output checked byte for byte against the planned one's.

Bench shapes, given configurations:
    python bench/probes/patch_conv.py --names r50.l1.c2,r50.l2.c2 \
        --configs '[[2,4,8,1,4],[4,4,8,1,8,4]]' --out patch.json
A config is [TR, TW, WG_N, TN, CB] or [TR, TW, WG_N, TN, CB, K slices]
(kernels/conv_patch_4w4c.wgsl); [] or none: the planner's default. Ratios are patch / planned
(below 1: the patch kernel is faster).

The convs of whole networks (built-in models, random weights, PT2E), every candidate of the
tuner (`tuning.patch_candidates`) per conv shape the method can run (1x1 stride-1 convs left
out: the GEMM reads their input as it is), planned timed before and after (mean):
    python bench/probes/patch_conv.py --nets resnet18,resnet50 --batches 1,8 --out nets.json
    python bench/probes/patch_conv.py --ship nets.json   # the winners -> q8ta_wgpu/tuned/
`--ship` (no GPU needed) writes each shape whose best candidate took at most `--keep` (0.97) of
its planned time (the faster of the two), in every net and batch that has the shape, into the
adapter's shipped table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import q8ta_wgpu as q8  # noqa: E402
from q8ta_wgpu import bench, planner  # noqa: E402
from q8ta_wgpu.configs import make_case  # noqa: E402


def times(dev: Any, conv: Any, xt: Any, chain: int, repeats: int) -> tuple[float, float]:
    """(alone, per layer in a chain) median GPU seconds of `conv` on `xt`."""
    _, passes, _ = conv.passes(xt)
    alone = dev.time_passes(passes, warmup=3, repeats=repeats, warm_s=0.1, whole=True)[:, 0]
    chained, _ = bench.chain_layer_time(dev, conv, xt, layers=chain, repeats=repeats)
    return float(np.median(alone)), float(np.median(chained))


def probe(dev: Any, cfg: Any, configs: list[list[int]], chain: int, repeats: int) -> dict[str, Any]:
    case = make_case(cfg, seed=0)
    x, w, ws, b = case["args"]
    kw = case["kwargs"]
    planned = q8.QConv2d(w, ws, b, device=dev, **kw)
    ref = planned(x)
    limits = planner.DeviceLimits.of(dev)
    geo = planner.kernel_geometry(cfg.geometry(), "4W4C")
    if "patch_4w4c" not in planner.valid_methods(geo):
        print(f"  {cfg.name}: the patch kernel cannot run it (groups {geo.groups})", flush=True)
        return {"name": cfg.name, "patch": []}
    # every conv's bytes first, on numpy input: a chain of convs whose output can feed their
    # input writes over its input tensor
    convs = []
    for c in configs or [[]]:
        conv = q8.QConv2d(w, ws, b, device=dev, **{**kw, "method": "patch_4w4c"})
        if c:
            consts = dict(zip(("TR", "TW", "WG_N", "TN", "CB"), c[:5], strict=True))
            why = planner.patch_config_error(limits, consts, geo)
            if why:
                print(f"  {cfg.name} {c}: skipped: {why}", flush=True)
                continue
            splits = c[5] if len(c) > 5 else 1
            conv.gemm_override = {"kernel": planner.PATCH_KERNEL, "constants": consts, "splits": splits}
        convs.append((c or "default", conv, int(np.count_nonzero(conv(x) != ref))))
    xt = q8.QTensor.from_numpy(x, kw["input_scale"], kw["input_zero_point"], device=dev)
    method = planned.plan(xt.shape, xt.layout, False).method
    alone, chained = times(dev, planned, xt, chain, repeats)
    row: dict[str, Any] = {
        "name": cfg.name,
        "method": method,
        "alone_s": alone,
        "chain_s": chained,
        "patch": [],
    }
    for c, conv, differ in convs:
        a, ch = times(dev, conv, xt, chain, repeats)
        row["patch"].append({"config": c, "alone_s": a, "chain_s": ch, "differ": differ,
                             "chain_over_planned": ch / chained})  # fmt: skip
        print(f"{cfg.name:16s} {method:14s} chain {chained * 1e6:6.2f} us | patch {str(c):18s} "
              f"chain {ch * 1e6:6.2f} us ({ch / chained:.3f}x) alone {a * 1e6:6.2f} vs {alone * 1e6:6.2f}"
              f"{'' if differ == 0 else f'  MISMATCH: {differ} differ'}", flush=True)  # fmt: skip
    return row


def probe_net(dev: Any, name: str, hw: int, batch: int, chain: int, repeats: int) -> list[dict[str, Any]]:
    """Each patch-capable conv shape of built-in net `name` at `batch`: planned and every
    candidate, per layer in a chain (runs under a temporary tuning cache: see main)."""
    from bench.probes.net_host import build_net
    from q8ta_wgpu import forward, tuning

    net = build_net(name, hw, dev)
    shape = (batch, 3, hw, hw)
    shapes = net.shapes(shape)
    seen: dict[str, tuple[Any, tuple[int, ...], Any]] = {}
    for s in net.steps:
        if isinstance(s.op, forward.ConvOp):
            conv = s.op.conv
            geo = planner.kernel_geometry(conv.geometry(shapes[s.inputs[0]]), "4W4C")
            if geo.is_pointwise or "patch_4w4c" not in planner.valid_methods(geo):
                continue
            seen.setdefault(tuning.shape_key(conv, geo, "4W4C"), (conv, shapes[s.inputs[0]], geo))
    rng = np.random.default_rng(0)
    rows = []
    for key, (conv, in_shape, geo) in seen.items():
        x = rng.integers(-128, 128, in_shape, dtype=np.int8)
        xt = q8.QTensor.from_numpy(x, conv.input_scale, conv.input_zero_point, device=dev)
        before = tuning.lookup(dev, key)
        ref = conv(x)
        planned = conv.plan(xt.shape, xt.layout, False).method
        dev.keep_busy(conv.passes(xt)[1], 0.3)

        def chain_s(conv: Any = conv, xt: Any = xt) -> float:
            t, _ = bench.chain_layer_time(dev, conv, xt, layers=chain, repeats=repeats, warm_s=0.02)
            return float(np.median(t))

        t0 = chain_s()
        cands = []
        for cand in tuning.patch_candidates(dev, geo):
            forward.store_choice(key, {"method": "patch_4w4c", "gemm": cand}, [conv])
            differ = int(np.count_nonzero(conv(x) != ref))
            cands.append({**cand, "chain_s": chain_s(), "differ": differ})
        forward.store_choice(key, before, [conv])
        t1 = chain_s()
        planned_s = (t0 + t1) / 2
        best = min(cands, key=lambda c: c["chain_s"]) if cands else None
        row = {"model": name, "batch": batch, "key": key, "planned": planned, "planned_s": [t0, t1],
               "candidates": cands, "best": best, "best_over_planned": best["chain_s"] / planned_s if best else None}  # fmt: skip
        rows.append(row)
        bad = sum(c["differ"] != 0 for c in cands)
        print(f"{name} B{batch} {key}: {planned} {t0 * 1e6:.2f}/{t1 * 1e6:.2f} us, patch best "
              f"{best and best['chain_s'] * 1e6:.2f} us ({row['best_over_planned']:.3f}) "
              f"{best and (best['constants'], best['splits'])}{f'  MISMATCH in {bad}' if bad else ''}", flush=True)  # fmt: skip
    return rows


def ship(results: Path, keep: float) -> Path:
    """Write the winners of a --nets run into the shipped table of its adapter."""
    from q8ta_wgpu import tuning

    run = json.loads(results.read_text())
    path = tuning.shipped_table_path(run["adapter"], run["backend"])
    table = json.loads(path.read_text())
    by_key: dict[str, list[dict[str, Any]]] = {}
    for r in run["rows"]:
        by_key.setdefault(r["key"], []).append(r)

    def ratio(r: dict[str, Any]) -> float:  # against the faster of the planned times
        return float(r["best"]["chain_s"] / min(r["planned_s"]))

    for key, rows in by_key.items():
        if any(r["best"] is None or ratio(r) > keep or r["best"]["differ"] for r in rows):
            continue
        best = min((r["best"] for r in rows), key=lambda b: b["chain_s"])
        where = ", ".join(f"{r['model']} B{r['batch']} {ratio(r):.2f}x" for r in rows)
        table["choices"][key] = {
            "method": "patch_4w4c",
            "gemm": {k: best[k] for k in ("kernel", "constants", "splits")},
            "context": f"patch_conv.py, per layer in a chain against the choice before ({where}; {run['created']})",
        }
        print("shipped", key, where)
    path.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--names", help="comma-separated bench config names")
    ap.add_argument("--configs", default="[]", help="JSON list of [TR, TW, WG_N, TN, CB(, splits)]")
    ap.add_argument("--nets", help="comma-separated built-in models")
    ap.add_argument("--batches", default="1")
    ap.add_argument("--hw", type=int, default=224)
    ap.add_argument("--chain", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--ship", type=Path, help="write a --nets results file's winners into the shipped table")
    ap.add_argument("--keep", type=float, default=0.97)
    args = ap.parse_args()
    if args.ship:
        print("wrote", ship(args.ship, args.keep))
        return
    dev = q8.default_device()
    bench.warm_up(dev)
    out: dict[str, Any] = {"adapter": dev.name, "backend": dev.backend, "created": time.strftime("%Y-%m-%d")}
    if args.nets:
        from bench.probes.net_turns import with_choices

        with tempfile.TemporaryDirectory() as tmp:  # candidates stored here, not in the user's cache
            with_choices(True, Path(tmp) / "cache.json", lambda: None)
            out["rows"] = [row for name in args.nets.split(",") for b in args.batches.split(",")
                           for row in probe_net(dev, name, args.hw, int(b), args.chain, args.repeats)]  # fmt: skip
    else:
        by_name = {c.name: c for suite in bench.SUITES.values() for c in suite}
        out["rows"] = [
            probe(dev, by_name[n], json.loads(args.configs), args.chain, args.repeats)
            for n in args.names.split(",")
        ]
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
