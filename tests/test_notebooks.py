"""The notebooks in notebooks/ run top to bottom (nbclient, a fresh python3 kernel) without a cell
error, and the copies stored in the repository carry no outputs.

performance.ipynb runs twice: on the repository's bench/results/ (or, with no result file there,
its "no results" path) and on a synthetic result file with every optional field exercised (nulls,
missing fields, cuDNN timings), so its plotting code is always checked.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is a test extra: pip install -e '.[test]'")
nbclient = pytest.importorskip("nbclient", reason="nbclient is a test extra: pip install -e '.[test]'")
pytest.importorskip("ipykernel", reason="ipykernel is a test extra: pip install -e '.[test]'")
pytest.importorskip("matplotlib", reason="matplotlib is a test extra: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ["walkthrough", "accuracy", "performance"]
CELL_TIMEOUT_S = 600  # per cell; each notebook takes well under a minute on lavapipe


def _synthetic_results(path: Path) -> Path:
    """A results file in the schema of `bench/run.py` (and `python -m q8ta_wgpu bench`), with the
    optional parts exercised: null timings and fractions, missing fields (an older row without a
    chain time), cuDNN timings on some rows, ncnn timings on two."""
    rows = []
    for i, (suite, name, macs) in enumerate(
        [
            ("spec", "spec4", 75_497_472),
            ("spec", "spec18", 115_605_504),
            ("pointwise", "pw12", 268_435_456),
            ("resnet50", "r50.l3.c2", 115_605_504),
            ("resnet50_b8", "r50.l3.c2@n8", 924_844_032),
            ("mobilenet_pw", "mbv2.pw.14x64-384", 4_816_896),
            ("mobilenet_dw", "mbv2.dw.14x384", 677_376),
        ]
    ):
        conv = 20e-6 * (1 + i)
        pointwise = suite in ("pointwise", "mobilenet_pw")
        im2col = None if pointwise else {"median": conv * 0.3, "min": conv * 0.29, "max": conv * 0.4}
        row = {
            "name": name,
            "suite": suite,
            "label": f"label of {name}",
            "macs": macs,
            "ops": 2 * macs,
            "method": "pointwise" if pointwise else "im2col_4w4c",
            "im2col_s": im2col,
            "gemm_s": {"median": conv * 0.7, "min": conv * 0.69, "max": conv * 0.8},
            "conv_s": {"median": conv, "min": conv * 0.98, "max": conv * 1.2},
            "tops": 2 * macs / conv / 1e12,
            "gemm_tops": 2 * macs / (0.7 * conv) / 1e12,
            "gemm_frac_peak": 0.1 * (i + 1),
            "im2col_gbps": None if pointwise else 900.0,
            "im2col_frac_copy": None if pointwise else 0.3,
            "chain_layer_s": {"median": conv * 0.7, "min": conv * 0.69, "max": conv * 0.75},
            "cudnn_fp16_s": conv * 0.7 * (0.5 + 0.4 * i) if i % 2 == 0 else None,
            "cudnn_layout": "channels_last" if i % 2 == 0 else None,
            "int_mm_s": None,
            "ncnn_int8_s": conv * 0.7 * 2.0 if i in (1, 6) else None,
        }
        if suite == "mobilenet_dw":  # one kernel, no GEMM
            row.update(method="depthwise_4w4c", gemm_s=None, gemm_tops=None, gemm_frac_peak=None)
        if i == 3:  # an older / partial row
            for k in ("gemm_s", "gemm_tops", "gemm_frac_peak", "chain_layer_s", "tops"):
                row.pop(k)
        rows.append(row)
    data = {
        "adapter": "NVIDIA H100 80GB HBM3 (synthetic)",
        "backend": "Vulkan",
        "driver": "synthetic",
        "date": "2025-01-01",
        "wgpu": "0.32.0",
        "anchors": {"copy_gbps": 3000.0, "dot4_peak_tops": 120.0, "torch": None, "ncnn": "1.0"},
        "summary": {"suites": {}, "lines": {"spec: vs cuDNN fp16": "synthetic line"}},
        "rows": rows,
        "host_overhead": {"call_us": 45.0, "readback_us": None},
    }
    path.write_text(json.dumps(data))
    return path


def _run(nb_path: Path, env: dict[str, str]) -> tuple[object, float]:
    nb = nbformat.read(nb_path, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = nbclient.NotebookClient(
            nb,
            timeout=CELL_TIMEOUT_S,
            kernel_name="python3",
            resources={"metadata": {"path": str(nb_path.parent)}},
        )
        t0 = time.perf_counter()
        client.execute()  # raises CellExecutionError (with the traceback) on any cell error
        return nb, time.perf_counter() - t0
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _kernel_env(**extra: str) -> dict[str, str]:
    """The kernel imports this checkout's q8ta_wgpu (whether or not it is installed) and draws
    with matplotlib's inline backend: Agg rendering into PNG outputs, no display needed."""
    pp = os.environ.get("PYTHONPATH", "")
    return {
        "PYTHONPATH": str(ROOT) + (os.pathsep + pp if pp else ""),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        **extra,
    }


def _text(nb) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") if o.get("output_type") == "stream" else "")
            out.append(str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


@pytest.mark.parametrize("name", NAMES)
def test_stored_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], (
                f"{name}.ipynb cell {i} has stored outputs: clear them before committing"
            )
            assert cell.execution_count is None, f"{name}.ipynb cell {i} has an execution count"


@pytest.mark.slow  # a Jupyter kernel per notebook: ~5-9 s each on lavapipe
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name: str) -> None:
    nb, secs = _run(NOTEBOOKS / f"{name}.ipynb", _kernel_env())
    print(f"{name}.ipynb ran in {secs:.1f} s")
    text = _text(nb)
    if name == "performance":
        assert "results:" in text or "No benchmark results found" in text
    else:
        assert "Traceback" not in text


def test_performance_notebook_on_synthetic_results(tmp_path: Path) -> None:
    path = _synthetic_results(tmp_path / "NVIDIA_H100_synthetic.json")
    nb, secs = _run(NOTEBOOKS / "performance.ipynb", _kernel_env(Q8TA_BENCH_JSON=str(path)))
    print(f"performance.ipynb (synthetic results) ran in {secs:.1f} s")
    text = _text(nb)
    assert f"results: {path}" in text
    # Rows 0, 2, 4, 6 have cuDNN; row 3 has no chain time (its standalone time stands in).
    assert "cuDNN fp16 time / q8ta time per layer over 4 convs" in text
    assert "ncnn int8 time / q8ta time per layer over 2 convs: median 2.00x, q8ta faster on 2" in text
    assert "synthetic line" in text
    assert "mbv2.dw.14x384" in text and "depthwise_4w4c" in text  # a row without a GEMM
    n_png = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert n_png >= 3, f"expected the plots, got {n_png} images"


def test_performance_notebook_without_results(tmp_path: Path) -> None:
    nb, _ = _run(NOTEBOOKS / "performance.ipynb", _kernel_env(Q8TA_BENCH_JSON=str(tmp_path / "none")))
    assert "No benchmark results found" in _text(nb)
