"""bench/networks.py (end-to-end network latency) on its CI-size models: the results JSON has a row
per (model, batch) with the GPU and wall times, the per-op profile and the exactness figures; the
peers are null where they are absent; a model that fails is recorded and the run goes on."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchao")

REPO = Path(__file__).resolve().parents[1]

KEYS = {
    "model", "batch", "gpu_s", "wall_s", "host_s", "torch_fp16_graph_s", "torch_fp16_eager_wall_s",
    "torch_cpu_int8_s", "ncnn_int8_s", "max_lsb", "within_1lsb", "top1_agree", "steps", "ops",
    "method_counts", "gpu_min_s", "gpu_max_s",
}  # fmt: skip


def _networks():
    spec = importlib.util.spec_from_file_location("bench_networks", REPO / "bench" / "networks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow  # ~10 s on lavapipe: torch.export and PT2E of two models
def test_tiny_networks_json(device, tmp_path):  # noqa: ARG001 - the fixture fails without an adapter
    out = tmp_path / "networks.json"
    code = _networks().main(
        ["--models", "tiny_resnet,tiny_mobilenet_v2,no_such_model", "--hw", "16", "--batches", "1",
         "--repeats", "2", "--warm-s", "0.01", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    text = out.read_text()
    assert '"anchors"' not in text[:2000], "bench/report.py would take it for a conv results file"
    result = json.loads(text)
    assert result["adapter"] and result["backend"] and result["created"]
    rows = {r["model"]: r for r in result["rows"]}
    assert list(rows) == ["tiny_resnet", "tiny_mobilenet_v2", "no_such_model"]
    assert rows["no_such_model"]["error"] and rows["no_such_model"]["gpu_s"] is None
    cuda = torch.cuda.is_available()
    for name in ("tiny_resnet", "tiny_mobilenet_v2"):
        r = rows[name]
        assert KEYS <= set(r), KEYS - set(r)
        assert "error" not in r, f"{name}: {r['error']}\n{r.get('traceback', '')}"
        assert r["batch"] == 1
        assert r["gpu_s"] > 0 and r["gpu_min_s"] <= r["gpu_s"] <= r["gpu_max_s"]
        assert r["wall_s"] > 0 and r["host_s"] == pytest.approx(r["wall_s"] - r["gpu_s"])
        # Each op alone, on PyTorch's int8 inputs, is within 1 LSB of PyTorch; through the network
        # a 1-LSB difference can grow (the final linear layer multiplies a pooled feature's), so
        # the output's bound is looser.
        assert r["per_op_max_lsb"] <= 1, result["models"][name]["per_op_over_1lsb"]
        assert r["max_lsb"] <= 4 and r["within_1lsb"] >= 0.5 and 0 <= r["top1_agree"] <= 1
        assert r["ops"] == len(r["steps"]) > 5
        assert all({"kind", "source", "s"} <= set(s) and s["s"] >= 0 for s in r["steps"])
        kinds = r["kind_counts"]
        convs = sum(n for k, n in kinds.items() if k.split("+")[0] in ("conv2d", "linear"))
        assert sum(r["method_counts"].values()) == convs > 0
        assert r["fused_adds"] == sum(n for k, n in kinds.items() if k.endswith("+add"))
        if r["fused_adds"]:  # the fusion measured: the same bytes, both GPU times where timed
            assert r["fused_equal_unfused"] is True
            assert (r["gpu_unfused_s"] is None) == (r["gpu_s"] is None)
        assert r["ncnn_int8_s"] is None
        assert r["torch_cpu_int8_s"] is None  # no quantizable torchvision variant of a built-in model
        if not cuda:
            assert r["torch_fp16_graph_s"] is None and r["torch_fp16_eager_wall_s"] is None
    assert "depthwise_4w4c" in rows["tiny_mobilenet_v2"]["method_counts"]
    assert rows["tiny_resnet"]["fused_adds"] >= 2
