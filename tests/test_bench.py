"""The benchmark's anchors and output: the packed-dot microkernel computes what it claims
(against numpy, with dot4I8Packed and with the by-hand fallback), every chain of the peak kernel has its own product (so no compiler can share
them and inflate the peak), and a small `bench` run writes complete, self-consistent results,
from which bench/report.py (run by bench/run.py after a run) writes the markdown and the plot."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

import q8ta_wgpu as q8
from q8ta_wgpu import bench
from q8ta_wgpu.configs import SPEC_CONFIGS
from q8ta_wgpu.runtime import Pass

REPO = Path(__file__).resolve().parent.parent
KERNELS = Path(bench.__file__).parent.parent / "kernels"
if not KERNELS.is_dir():  # installed wheel: kernels ship inside the package
    KERNELS = Path(bench.__file__).parent / "kernels"


def _peak_reference(threads: int, iters: int) -> np.ndarray:
    """dot4_peak.wgsl's output in numpy: per thread the wrapped int32 sum of its 64 chains."""
    m32 = 0xFFFFFFFF
    gid = np.arange(threads, dtype=np.uint64)
    seed = (gid * 2654435761) & m32
    src = (KERNELS / "dot4_peak.wgsl").read_text()
    b_consts = [int(h, 16) for h in re.findall(r"var b\d = seed \^ 0x([0-9a-f]+)u;", src)]
    assert len(b_consts) == 8
    a = [((seed + i * 0x01010101) & m32).astype(np.uint32) for i in range(8)]
    b = [(seed ^ c).astype(np.uint32) for c in b_consts]

    def bytes4(v):
        return v.view(np.int8).reshape(-1, 4).astype(np.int64)

    total = np.zeros(threads, np.int64)
    for it in range(iters):
        for j in range(8):
            b[j] = b[j] ^ np.uint32(it)
            for i in range(8):
                total += (bytes4(a[i]) * bytes4(b[j])).sum(axis=1)
    return ((total + 2**31) % 2**32 - 2**31).astype(np.int32)


@pytest.mark.parametrize("dot4", ["auto", "fallback"])
def test_peak_microkernel_matches_numpy(device, dot4):
    """The peak kernel as the bench runs it: with dot4I8Packed, and with the by-hand fallback
    (the bench's unpacked anchor)."""
    dev = device if dot4 == "auto" else q8.Device(device.name, backend=device.backend, dot4="fallback")
    assert dev.dot4_mode == ("fallback" if dot4 == "fallback" else device.dot4_mode)
    wg, groups, iters = 64, 2, 5
    pipe = dev.pipeline("dot4_peak.wgsl", {"WG": wg, "ITERS": iters})
    out = dev.buffer(4 * wg * groups)
    dev.run([Pass(pipe, dev.bind_group(pipe, [out]), (groups, 1, 1), "peak")])
    got = np.frombuffer(dev.read(out), np.int32)
    np.testing.assert_array_equal(got, _peak_reference(wg * groups, iters))


def test_peak_chains_have_distinct_products():
    """64 chains a step, each fed by its own (a_i, b_j): a product shared by two chains can be
    computed once, and the kernel would then read high (the old kernel read 2.5x high)."""
    src = (KERNELS / "dot4_peak.wgsl").read_text()
    dots = re.findall(r"c(\d+) = \w+\(a(\d), b(\d)\) \+ c\1;", src)
    assert len(dots) == 64
    assert len({c for c, _, _ in dots}) == 64, "each chain updated once a step"
    assert len({(a, b) for _, a, b in dots}) == 64, "each product computed once a step"
    assert "64 * 4" in src  # the MAC count bench.dot4_peak uses


def _bench_args(tmp_path, *extra: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    args = p.parse_args(["--repeats", "3", "--chain", "4", "--out", str(tmp_path), *extra])
    args.adapter = args.backend = None  # the CLI's global options: the default adapter
    return args


def _load(name: str):
    """A script of the repository's bench/ folder, loaded by its path."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _report(tmp_path, path: Path) -> str:
    """bench/report.py on a results folder: the plot of `path` and the markdown (its text)."""
    report = _load("report")
    assert report.plot_results(path) == tmp_path / f"{path.stem}.png"
    report.write_benchmarks_md(tmp_path, tmp_path / "B.md")
    return (tmp_path / "B.md").read_text()


def _check_chain_modes(rows) -> None:
    """A chain ping-pongs exactly where the conv's output shape is its input shape."""
    configs = {c.name: c for c in bench.SUITES["spec"] + bench.SUITES["mobilenet_dw"]}
    for r in rows:
        cfg = configs[r["name"]]
        same = cfg.geometry().output_shape == cfg.input_shape
        assert r["chain_mode"] == ("ping-pong" if same else "repeat"), r["name"]


class FixedPeer:
    """A peer whose every figure is known, to check how peer fields reach rows and summaries."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def anchors(self):
        return {"fixed_peer": "1.0"}

    def row(self, cfg):
        return {"cudnn_fp16_s": self.seconds, "cudnn_layout": "channels_last", "ncnn_int8_s": None}


def test_bench_run_writes_consistent_results(device, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "warm_up", lambda dev, seconds=1.0: None)  # seconds on lavapipe
    max_mmacs = 4
    args = _bench_args(tmp_path, "--suite", "spec", "--max-mmacs", str(max_mmacs))
    assert bench.main(args) == 0
    (path,) = tmp_path.glob("*.json")
    assert not list(tmp_path.glob("*.partial.json"))
    res = json.loads(path.read_text())
    assert res["adapter"] == device.name
    peak = res["anchors"]["dot4_peak_tops"]
    assert peak > 0 and res["anchors"]["copy_gbps"] > 0
    want = [c.name for c in SPEC_CONFIGS if c.geometry().macs <= max_mmacs * 1e6]
    assert [r["name"] for r in res["rows"]] == want and want
    for r in res["rows"]:
        for key in ("conv_s", "kernels_sum_s", "gemm_s", "gemm_passes_sum_s"):
            s = r[key]
            assert 0 < s["min"] <= s["median"] <= s["max"], (r["name"], key)
        assert r["tops"] == pytest.approx(r["ops"] / r["conv_s"]["median"] / 1e12)
        s = r["chain_layer_s"]
        assert 0 < s["min"] <= s["median"] <= s["max"], r["name"]
        assert r["chain_layers"] == 4 and r["chain_mode"] in ("ping-pong", "repeat")
        assert r["chain_tops"] == pytest.approx(r["ops"] / s["median"] / 1e12)
        # No peers in this run: their fields exist, null.
        for key in (*bench.PEER_FIELDS, "vs_cudnn_fp16", "vs_cudnn_fp16_standalone", "vs_ncnn_int8"):
            assert r[key] is None, (r["name"], key)
        assert r["gemm_frac_peak"] == pytest.approx(r["gemm_padded_tops"] / peak)
    with_4w4c = [r for r in res["rows"] if r["im2col_4w4c_s"] is not None]
    assert with_4w4c, "the 4W4C im2col kernel is timed wherever it applies"
    for r in with_4w4c:
        gbps = 2 * r["a_bytes"] / r["im2col_4w4c_s"]["median"] / 1e9
        assert r["im2col_4w4c_frac_copy"] == pytest.approx(gbps / res["anchors"]["copy_gbps"])
        same = r["copy_same_s"]
        assert 0 < same["min"] <= same["median"] <= same["max"], r["name"]
        assert r["im2col_4w4c_frac_copy_same"] == pytest.approx(same["median"] / r["im2col_4w4c_s"]["median"])
        if r["method"] == "im2col_4w4c":  # the conv's own im2col time, reused
            assert r["im2col_4w4c_s"] == r["im2col_s"], r["name"]
    _check_chain_modes(res["rows"])
    summ = res["summary"]
    assert summ["suites"]["spec"]["convs"] == len(want) and summ["suites"]["spec"]["vs_cudnn_fp16"] is None
    assert summ["lines"]
    ho = res["host_overhead"]
    assert ho["call_us"] > 0 and ho["recorded_call_us"] > 0 and ho["recorded_chain"] >= 2
    # The package's bench writes the JSON only; bench/report.py writes the markdown and the plot.
    assert sorted(f.name for f in tmp_path.iterdir()) == [path.name]
    assert res["adapter"] in _report(tmp_path, path)
    assert (tmp_path / f"{path.stem}.png").exists()


def test_bench_peer_fields_ratios_and_append(device, tmp_path, monkeypatch):
    """A peer's row fields land in each row with ratios against q8ta's chain and standalone
    times; the summary counts wins per suite; --append keeps the other suites' rows."""
    monkeypatch.setattr(bench, "warm_up", lambda dev, seconds=1.0: None)
    first = bench.run_bench(_bench_args(tmp_path, "--suite", "mobilenet_dw", "--max-mmacs", "0.5"))
    assert first == (0, tmp_path / f"{bench.slug(device.name)}.json"), "the exit code and the JSON written"
    peer = FixedPeer(2e-3)
    args = _bench_args(tmp_path, "--suite", "spec", "--max-mmacs", "2", "--append")
    assert bench.main(args, [peer]) == 0
    (path,) = tmp_path.glob("*.json")
    res = json.loads(path.read_text())
    assert res["anchors"]["fixed_peer"] == "1.0"
    suites = [r["suite"] for r in res["rows"]]
    assert "mobilenet_dw" in suites and "spec" in suites, "--append kept the earlier suite"
    assert [run["suites"] for run in res["runs"]] == [["mobilenet_dw"], ["spec"]]
    _check_chain_modes(res["rows"])
    assert {r["chain_mode"] for r in res["rows"]} == {"ping-pong", "repeat"}
    spec = [r for r in res["rows"] if r["suite"] == "spec"]
    for r in spec:
        assert r["cudnn_fp16_s"] == 2e-3 and r["cudnn_layout"] == "channels_last"
        assert r["vs_cudnn_fp16"] == pytest.approx(2e-3 / r["chain_layer_s"]["median"])
        assert r["vs_cudnn_fp16_standalone"] == pytest.approx(2e-3 / r["conv_s"]["median"])
        assert r["vs_ncnn_int8"] is None
    got = res["summary"]["suites"]["spec"]["vs_cudnn_fp16"]
    ratios = [r["vs_cudnn_fp16"] for r in spec]
    assert got["of"] == len(spec) and got["wins"] == sum(v > 1 for v in ratios)
    assert got["median"] == pytest.approx(float(np.median(ratios)))
    assert res["summary"]["suites"]["mobilenet_dw"]["vs_cudnn_fp16"] is None
    # bench/report.py's command line: every results file plotted, the markdown rewritten.
    assert sorted(f.name for f in tmp_path.iterdir()) == [path.name]
    report, png = _load("report"), tmp_path / f"{path.stem}.png"
    assert report.main(["--results", str(tmp_path), "--md", str(tmp_path / "B.md")]) == 0
    md = (tmp_path / "B.md").read_text()
    assert "channels_last" in md and "fixed_peer 1.0" in md
    assert png.exists() and f"(bench/results/{png.name})" in md, "the markdown shows the plot"
    # bench/run.py after a run: the plot of the JSON the package's bench returned, the markdown.
    run = _load("run")
    monkeypatch.setattr(run.q8bench, "run_bench", lambda args, peers: (0, path))
    png.unlink()
    opts = ["--no-torch", "--no-ncnn", "--out", str(tmp_path), "--md"]
    assert run.main([*opts, str(tmp_path / "R.md")]) == 0
    assert png.exists() and (tmp_path / "R.md").read_text() == md
    png.unlink()
    assert run.main([*opts, ""]) == 0
    assert png.exists() and sorted(f.name for f in tmp_path.glob("*.md")) == ["B.md", "R.md"]
    monkeypatch.setattr(run.q8bench, "run_bench", lambda args, peers: (3, None))
    assert run.main([*opts, str(tmp_path / "C.md")]) == 3 and not (tmp_path / "C.md").exists()


def _network_row(batch: int, steps_us: list[tuple[str, str | None, float]], **figures) -> dict:
    """A bench/networks.py row: `steps_us` as (kind, method, us) with numbered sources."""
    steps = [
        {"kind": k, "source": f"{k}_{i} -> q_{i}", "s": t * 1e-6, **({"method": m} if m else {})}
        for i, (k, m, t) in enumerate(steps_us)
    ]
    return {
        "model": "tinynet",
        "batch": batch,
        "ops": len(steps),
        "steps": steps,
        "ncnn_int8_s": None,
        **figures,
    }


def test_report_whole_networks_section(tmp_path, monkeypatch):
    """bench/report.py's "Whole networks" section, from a networks JSON of known figures: the
    table's times, ratios and exactness, the per-op breakdown by kind and the costliest steps;
    without a networks JSON the markdown is as before, the section being all that it adds."""
    report = _load("report")
    results = tmp_path / "results"
    results.mkdir()
    report.write_benchmarks_md(results, tmp_path / "before.md")
    b1 = [("conv2d", "im2col_4w4c", 100.0), ("conv2d", "im2col_4w4c", 50.0), ("add", None, 30.0)]
    b8 = [("conv2d", "im2col_4w4c", 300.0), ("conv2d", "pointwise", 100.0), ("add", None, 60.0)]
    quant1, unpack1, quant8, unpack8 = 10.0, 10.0, 25.0, 15.0
    total1 = sum(t for *_, t in b1) + quant1 + unpack1  # 200 us
    total8 = sum(t for *_, t in b8) + quant8 + unpack8  # 500 us
    gpu1, wall1, graph1, eager1, cpu1, gpu8 = 160e-6, 1000e-6, 200e-6, 1500e-6, 3000e-6, 400e-6
    ncnn1 = 2500e-6
    exact = {"max_lsb": 2, "within_1lsb": 0.9875, "top1_agree": 0.75, "top1_classes": 3, "top1_tied": 1}
    rows = [
        _network_row(
            1, b1, gpu_s=gpu1, wall_s=wall1, host_s=wall1 - gpu1, quantize_s=quant1 * 1e-6,
            unpack_s=unpack1 * 1e-6, torch_fp16_graph_s=graph1, torch_fp16_layout="channels_last",
            torch_fp16_eager_wall_s=eager1, torch_cpu_int8_s=cpu1, torch_cpu_int8_threads=4,
            ncnn_int8_wall_s=ncnn1, per_op_max_lsb=1, **exact,
        ),
        _network_row(
            8, b8, gpu_s=gpu8, wall_s=900e-6, host_s=900e-6 - gpu8, quantize_s=quant8 * 1e-6,
            unpack_s=unpack8 * 1e-6, torch_fp16_graph_s=None, torch_fp16_eager_wall_s=None,
            torch_cpu_int8_s=None, per_op_max_lsb=1, **exact,
        ),
        {"model": "broken", "batch": 1, "gpu_s": None, "steps": None, "ncnn_int8_s": None,
         "error": "RuntimeError: out of\n  memory"},
    ]  # fmt: skip
    (results / "Some_GPU-networks.json").write_text(
        json.dumps(
            {
                "adapter": "Some GPU", "backend": "Vulkan", "created": "2026-01-02T03:04:05+00:00",
                "code": {"commit": "abc123", "dirty": True, "note": "ran elsewhere"},
                "versions": {"torch": "9.9", "ncnn": None}, "host": {"machine": "x86_64", "cpu_count": 4},
                "cuda": None, "hw": 32, "repeats": 3, "method": {"gpu_s": "whole-forward timestamps"},
                "models": {"tinynet": {"per_op_checked": 3}, "broken": {"error": "RuntimeError"}},
                "rows": rows,
            }
        )
    )  # fmt: skip
    monkeypatch.setattr(report, "TOP_STEPS", 2)
    report.write_benchmarks_md(results, tmp_path / "after.md")
    before, after = ((tmp_path / f"{n}.md").read_text().split("\n") for n in ("before", "after"))
    start = after.index("## Whole networks")
    end = start + len(after) - len(before)
    assert after[:start] + after[end:] == before, "the section is all that a networks JSON adds"
    md = "\n".join(after[start:end])
    assert "### Some GPU (Vulkan), 2026-01-02" in md and "`bench/results/Some_GPU-networks.json`" in md
    assert "Code: commit `abc123` with uncommitted changes; ran elsewhere." in md
    assert "torch 9.9;" in md and "None" not in md and "no CUDA device" in md
    assert "- `gpu_s`: whole-forward timestamps" in md
    assert (
        f"| tinynet | 1 | 3 | 160.0 | 1000.0 | 840.0 | 200.0 (channels_last) | 1500.0 | 3000.0 (4) | 2500.0 | "
        f"{graph1 / gpu1:.2f} | {eager1 / wall1:.2f} | {cpu1 / wall1:.2f} | {ncnn1 / wall1:.2f} | 2 | 98.75 | "
        f"0.75 (3, 1) | 1 (3) |"
    ) in md
    assert (
        "| tinynet | 8 | 3 | 400.0 | 900.0 | 500.0 | not measured | not measured | not measured | not measured "
        "|  |  |  |  | 2 | 98.75 | 0.75 (3, 1) | 1 (3) |"
    ) in md
    assert "| broken | 1 |  |  |  |  | not measured |" in md
    assert "- broken, batch 1: `error` RuntimeError: out of memory" in md
    # By op kind, ordered by batch 1's time; shares of the steps' sum (each timed alone).
    assert "| tinynet: op kind | B=1 steps | B=1 us | B=1 share | B=8 steps | B=8 us | B=8 share |" in md
    assert f"| conv2d im2col_4w4c | 2 | 150.0 | {150 / total1:.0%} | 1 | 300.0 | {300 / total8:.0%} |" in md
    assert f"| add | 1 | 30.0 | {30 / total1:.0%} | 1 | 60.0 | {60 / total8:.0%} |" in md
    assert f"| quantize (input) | 1 | 10.0 | {10 / total1:.0%} | 1 | 25.0 | {25 / total8:.0%} |" in md
    assert f"| conv2d pointwise | | | | 1 | 100.0 | {100 / total8:.0%} |" in md
    assert md.index("| conv2d im2col_4w4c |") < md.index("| add |") < md.index("| conv2d pointwise |")
    assert "| **sum, each step alone** | 5 | 200.0 | 100% | 5 | 500.0 | 100% |" in md
    assert f"| **whole forward, one pass** | | {gpu1 * 1e6:.1f} | | | {gpu8 * 1e6:.1f} | |" in md
    over1, over8 = total1 - gpu1 * 1e6, total8 - gpu8 * 1e6  # us
    assert (
        f"sum to {total1 / (gpu1 * 1e6):.2f}x the whole forward (+{over1:.1f} us) at batch 1, "
        f"{total8 / (gpu8 * 1e6):.2f}x the whole forward (+{over8:.1f} us) at batch 8."
    ) in md
    # The costliest steps (TOP_STEPS of them), matched across batches by step and source.
    for i, (t1, t8) in enumerate([(100.0, 300.0), (50.0, 100.0)]):
        assert (
            f"| {i} | `conv2d_{i} -> q_{i}` | conv2d im2col_4w4c | {t1:.1f} | {t1 / total1:.0%} | {t8:.1f} "
            f"| {t8 / total8:.0%} |"
        ) in md
    assert "`add_2 -> q_2`" not in md
