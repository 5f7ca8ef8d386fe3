"""ruff lint and format checks over the repository and mypy over the package (configuration in
pyproject.toml; .pre-commit-config.yaml runs the same before a commit), as CI runs them:
`ruff check .`, `ruff format --check .` and `mypy` from the repository root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    try:
        import ruff  # noqa: F401
    except ImportError:
        pytest.skip("ruff is a test extra: pip install -e '.[test]'")
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_ruff_check() -> None:
    p = _ruff("check", "--no-cache", ".")
    if p.returncode:
        pytest.fail(f"ruff check found problems:\n{p.stdout}{p.stderr}", pytrace=False)


def test_ruff_format() -> None:
    p = _ruff("format", "--no-cache", "--check", "--diff", ".")
    if p.returncode:
        pytest.fail(
            f"ruff format would change files (run `ruff format .`):\n{p.stdout}{p.stderr}", pytrace=False
        )


def test_mypy_package() -> None:
    try:
        import mypy  # noqa: F401
    except ImportError:
        pytest.skip("mypy is a test extra: pip install -e '.[test]'")
    p = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if p.returncode:
        pytest.fail(f"mypy found problems:\n{p.stdout}{p.stderr}", pytrace=False)
