"""The notebooks in notebooks/ run top to bottom (nbclient, a fresh python3 kernel) without a cell
error, and the copies stored in the repository are executed: every code cell ran, in order, in
one kernel, with its outputs (figures included) and no error stored, and no volatile metadata
(`python notebooks/refresh.py` writes them so; the tests execute in-memory copies and never
write the stored files).

performance.ipynb runs twice: on the repository's bench/results/ (or, with no result file there,
its "no results" path) and on a synthetic result file with every optional field exercised (nulls,
missing fields, cuDNN timings), so its plotting code is always checked. digits.ipynb trains a
small CNN on scikit-learn's digits, quantizes it through PT2E and asserts, in the notebook, that
the GPU's int8 predictions agree with PyTorch's.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is a test extra: pip install -e '.[test]'")
nbclient = pytest.importorskip("nbclient", reason="nbclient is a test extra: pip install -e '.[test]'")
pytest.importorskip("ipykernel", reason="ipykernel is a test extra: pip install -e '.[test]'")
pytest.importorskip("matplotlib", reason="matplotlib is a test extra: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ["walkthrough", "accuracy", "performance", "digits"]
# What each notebook imports beyond the test extras above (skipped without them).
NEEDS = {"digits": ["torch", "torchao", "sklearn"]}


def _load_refresh():
    """notebooks/refresh.py, which executes the notebooks and cleans what it stores."""
    spec = importlib.util.spec_from_file_location("q8ta_notebooks_refresh", NOTEBOOKS / "refresh.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


refresh = _load_refresh()


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
    """Execute a copy of the notebook at `nb_path` (read into memory; the file is not written),
    as notebooks/refresh.py does; the executed copy and the seconds it took. Raises
    CellExecutionError (with the traceback) on any cell error."""
    nb = nbformat.read(nb_path, as_version=4)
    secs = refresh.execute(nb, nb_path.parent, env)
    return nb, secs


def _kernel_env(**extra: str) -> dict[str, str]:
    return refresh.kernel_env(**extra)


def _text(nb) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") if o.get("output_type") == "stream" else "")
            out.append(str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


def _needs(name: str) -> None:
    for mod in NEEDS.get(name, []):
        pytest.importorskip(mod, reason=f"{name}.ipynb needs {mod}")


def test_every_notebook_is_tested() -> None:
    stored = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    assert stored == sorted(NAMES), f"notebooks/ holds {stored}; NAMES lists {sorted(NAMES)}"


@pytest.mark.parametrize("name", NAMES)
def test_stored_copy_is_executed(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    fix = "run `python notebooks/refresh.py " + name + "` and commit the result"
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    assert code, f"{name}.ipynb has no code cell"
    counts = [c.execution_count for _, c in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{name}.ipynb is not stored executed top to bottom in one kernel (execution counts {counts}): {fix}"
    )
    n_out = 0
    for i, cell in code:
        for o in cell.outputs:
            n_out += 1
            assert o.output_type != "error", (
                f"{name}.ipynb cell {i} stores an error ({o.get('ename')}: {o.get('evalue')}): {fix}"
            )
            if o.output_type == "stream":
                assert "Traceback (most recent call last)" not in o.text, f"{name}.ipynb cell {i}: {fix}"
    assert n_out, f"{name}.ipynb stores no outputs: {fix}"
    assert refresh.clean(copy.deepcopy(nb)) == nb, f"{name}.ipynb stores volatile metadata or noise: {fix}"


def test_refresh_clean_and_names() -> None:
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "print(1)",
                execution_count=1,
                metadata={"execution": {"iopub.status.busy": "2025-01-01T00:00:00Z"}, "tags": ["keep"]},
                outputs=[
                    nbformat.v4.new_output(
                        "stream",
                        name="stderr",
                        text="error: XDG_RUNTIME_DIR is invalid or not set in the environment.\nreal warning\n",
                    ),
                    nbformat.v4.new_output(
                        "stream",
                        name="stderr",
                        text="error: XDG_RUNTIME_DIR is invalid or not set in the environment.\n",
                    ),
                    nbformat.v4.new_output("stream", name="stdout", text="1\n"),
                ],
            )
        ],
        metadata={"language_info": {"name": "python", "version": "3.11.9"}},
    )
    refresh.clean(nb)
    cell = nb.cells[0]
    assert cell.metadata == {"tags": ["keep"]}
    assert [(o.name, o.text) for o in cell.outputs] == [("stderr", "real warning\n"), ("stdout", "1\n")]
    assert nb.metadata.language_info == {"name": "python"}
    assert [p.stem for p in refresh.notebook_paths(["digits", "accuracy.ipynb"])] == ["digits", "accuracy"]
    assert sorted(p.stem for p in refresh.notebook_paths()) == sorted(NAMES)
    with pytest.raises(SystemExit, match="no notebook nope.ipynb"):
        refresh.notebook_paths(["nope"])


@pytest.mark.slow  # a Jupyter kernel per notebook: ~5-15 s each on lavapipe
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name: str) -> None:
    _needs(name)
    path = NOTEBOOKS / f"{name}.ipynb"
    before = path.read_bytes()
    nb, secs = _run(path, _kernel_env())
    print(f"{name}.ipynb ran in {secs:.1f} s")
    assert path.read_bytes() == before  # the stored copy is left alone
    text = _text(nb)
    if name == "performance":
        assert "results:" in text or "No benchmark results found" in text
    else:
        assert "Traceback" not in text
    if name == "digits":  # the notebook asserts agreement and accuracy itself; its report is there
        assert "GPU vs PyTorch int8: top-1 agrees on" in text and "max |difference|" in text
        n_png = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
        assert n_png == 1, f"expected the figure of test images, got {n_png} images"


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
