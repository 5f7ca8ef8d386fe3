"""Execute the notebooks in notebooks/ in place, so that the stored copies carry their outputs.

    python notebooks/refresh.py                 # every notebook here
    python notebooks/refresh.py digits accuracy # these (names with or without .ipynb)

Each notebook runs top to bottom in a fresh python3 kernel (nbclient) with notebooks/ as its
working directory, importing this checkout's q8ta_wgpu and drawing with matplotlib's inline
backend (PNG outputs, no display needed). Its outputs (images included) are written back into the
file; volatile metadata (execution timing, the kernel's Python version) and a driver's stderr noise
are left out, so a refresh changes only what the notebook prints and draws. A notebook whose run fails is left as it was
(the error is printed; the exit status is 1). The environment passes through to the kernel, e.g.
Q8TA_BENCH_JSON for performance.ipynb.

tests/test_notebooks.py uses the same helpers to execute the notebooks and to check that the
stored copies are executed.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CELL_TIMEOUT_S = 600  # per cell; each notebook takes well under a minute on lavapipe
# Kernel-reported details that change from one machine or run to the next.
VOLATILE_LANGUAGE_INFO = ("version",)
VOLATILE_CELL_METADATA = ("execution", "ExecuteTime", "collapsed", "scrolled")
# Lines a driver writes to the kernel's stderr on every run, whatever the notebook does (Mesa's
# lavapipe probing its window-system back ends): not stored.
STDERR_NOISE = (re.compile(r"error: XDG_RUNTIME_DIR is invalid or not set in the environment\.\n?"),)


def notebook_paths(names: list[str] | None = None) -> list[Path]:
    """The notebooks named (every one in notebooks/ when none is), as paths."""
    if not names:
        return sorted(HERE.glob("*.ipynb"))
    paths = []
    for name in names:
        p = HERE / (name if name.endswith(".ipynb") else f"{name}.ipynb")
        if not p.is_file():
            raise SystemExit(f"no notebook {p.name} in {HERE}")
        paths.append(p)
    return paths


def kernel_env(**extra: str) -> dict[str, str]:
    """Environment for the kernel: this checkout's q8ta_wgpu first on the path (installed or
    not), matplotlib's inline backend (Agg rendering into PNG outputs)."""
    pp = os.environ.get("PYTHONPATH", "")
    return {
        "PYTHONPATH": str(ROOT) + (os.pathsep + pp if pp else ""),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        **extra,
    }


def execute(nb: Any, cwd: Path, env: dict[str, str] | None = None) -> float:
    """Run `nb` (a nbformat notebook, changed in place) top to bottom in a fresh python3 kernel
    whose working directory is `cwd` and whose environment adds `env` to this process's; the
    seconds it took. Raises nbclient's CellExecutionError (with the traceback) on a cell error."""
    import nbclient

    env = kernel_env() if env is None else env
    for cell in nb.cells:  # only this run's outputs, even if the cell does not run
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel process inherits this environment
    try:
        client = nbclient.NotebookClient(
            nb,
            timeout=CELL_TIMEOUT_S,
            kernel_name="python3",
            record_timing=False,
            resources={"metadata": {"path": str(cwd)}},
        )
        t0 = time.perf_counter()
        client.execute()
        return time.perf_counter() - t0
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def clean(nb: Any) -> Any:
    """`nb` without volatile metadata and without the stderr lines of STDERR_NOISE (changed in
    place and returned)."""
    info = nb.metadata.get("language_info")
    if isinstance(info, dict):
        for k in VOLATILE_LANGUAGE_INFO:
            info.pop(k, None)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for k in VOLATILE_CELL_METADATA:
            cell.metadata.pop(k, None)
        if cell.cell_type != "code":
            continue
        outputs = []
        for o in cell.outputs:
            if o.get("output_type") == "stream" and o.get("name") == "stderr":
                lines = o.text.splitlines(keepends=True)
                o.text = "".join(s for s in lines if not any(p.fullmatch(s) for p in STDERR_NOISE))
                if not o.text:
                    continue
            outputs.append(o)
        cell.outputs = outputs
    return nb


def refresh(path: Path) -> float:
    """Execute the notebook at `path` and write it back with its outputs; the seconds it ran."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    secs = execute(nb, path.parent)
    clean(nb)
    nbformat.validate(nb)
    text = nbformat.writes(nb)
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return secs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="notebooks to refresh (default: every one in notebooks/)")
    args = ap.parse_args(argv)
    failed = []
    for path in notebook_paths(args.names):
        print(f"{path.name}: running ...", flush=True)
        try:
            secs = refresh(path)
        except Exception as e:  # a cell error (or a kernel that did not start): keep the old file
            failed.append(path.name)
            print(f"{path.name}: FAILED, left as it was\n{e}", file=sys.stderr, flush=True)
            continue
        print(f"{path.name}: executed in {secs:.1f} s, outputs saved", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
