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
