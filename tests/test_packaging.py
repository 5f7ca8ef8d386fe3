"""Packaging: build the wheel, check it ships the WGSL kernels as package data, install it into a
fresh virtual environment outside the source tree and run a conv from there (and the console
script `q8ta-wgpu`). The source checkout must not be importable there: no PYTHONPATH, and the
working directory is a temporary folder.

Needs the `build` module (a test extra) and a package index for the build backend (hatchling)
and the runtime dependencies (wgpu, numpy); pip's cache makes repeated runs fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# Run inside the fresh environment: a small conv against the reference, and where things are.
PROBE = r"""
import json, sys
from pathlib import Path
import numpy as np
import q8ta_wgpu as q8
from q8ta_wgpu import reference, shaders

rng = np.random.default_rng(0)
x = rng.integers(-128, 128, (1, 8, 9, 7), dtype=np.int8)
w = rng.integers(-127, 128, (12, 8, 3, 3), dtype=np.int8)
ws = rng.uniform(0.005, 0.015, 12).astype(np.float32)
b = rng.uniform(-1, 1, 12).astype(np.float32)
kw = dict(input_scale=0.01, input_zero_point=3, output_scale=0.05, output_zero_point=-2,
          stride=(1, 2), padding=1, activation="relu")
y = q8.conv2d(x, w, ws, b, **kw)
ref = reference.conv2d(x, w, ws, b, **kw)
d = np.abs(y.astype(np.int32) - ref.astype(np.int32))
print(json.dumps({
    "file": q8.__file__,
    "kernels_dir": str(shaders.kernels_dir()),
    "version": q8.__version__,
    "prefix": sys.prefix,
    "sys_path": sys.path,
    "max_diff": int(d.max()),
    "differ": int(d.astype(bool).sum()),
    "shape": list(y.shape),
}))
"""


def _clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    }
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run(cmd: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {p.returncode}\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
    )
    return p


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("build", reason="the 'build' package is a test extra: pip install -e '.[test]'")
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)], cwd=out)
    wheels = list(out.glob("q8ta_wgpu-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    kernels = sorted(p.name for p in (ROOT / "kernels").glob("*.wgsl"))
    assert kernels, "no kernels/*.wgsl in the checkout"
    missing = [k for k in kernels if f"q8ta_wgpu/kernels/{k}" not in names]
    assert not missing, f"kernels missing from the wheel: {missing}"
    for mod in ("__init__.py", "__main__.py", "conv.py", "runtime.py", "reference.py", "torch_interop.py"):
        assert f"q8ta_wgpu/{mod}" in names
    assert not [n for n in names if n.startswith(("tests/", "notebooks/", "bench/"))]
    meta = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "q8ta-wgpu = q8ta_wgpu.__main__:main" in zipfile.ZipFile(wheel).read(meta).decode()


def test_installed_wheel_runs_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    py = bindir / ("python.exe" if os.name == "nt" else "python")
    _run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--prefer-binary", str(wheel)],
        cwd=tmp_path,
    )

    p = _run([str(py), "-c", PROBE], cwd=tmp_path)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    pkg = Path(res["file"]).resolve().parent
    assert Path(res["prefix"]).resolve() == venv.resolve()
    assert venv.resolve() in pkg.parents, f"q8ta_wgpu imported from {pkg}, not from the fresh venv"
    assert ROOT not in pkg.parents and pkg != ROOT / "q8ta_wgpu"
    assert not any(Path(s).resolve() == ROOT for s in res["sys_path"] if s), "the checkout is on sys.path"
    assert Path(res["kernels_dir"]).resolve() == pkg / "kernels", "kernels not found as package data"
    assert res["shape"] == [1, 12, 9, 4]
    assert res["max_diff"] <= 1, (
        f"conv from the installed wheel: {res['differ']} outputs differ, max {res['max_diff']}"
    )

    script = bindir / ("q8ta-wgpu.exe" if os.name == "nt" else "q8ta-wgpu")
    p = _run([str(script), "info"], cwd=tmp_path)
    assert "adapter" in p.stdout and "dot4I8Packed" in p.stdout
    p = _run([str(script), "info", "--json"], cwd=tmp_path)
    assert json.loads(p.stdout)["adapter"]
