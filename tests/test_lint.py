"""ruff lint and format checks over the repository and mypy over the package (configuration in
pyproject.toml; .pre-commit-config.yaml runs the same before a commit), as CI runs them:
`ruff check .`, `ruff format --check .` and `mypy` from the repository root."""

from __future__ import annotations

import ast
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


@pytest.mark.slow  # ~20 s
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


def _imported_test_modules(path: Path) -> list[str]:
    """The test modules (test_*.py, conftest.py) a file under tests/ imports, as written."""

    def is_test_module(name: str) -> bool:
        parts = name.split(".")
        if parts and parts[0] == "tests":
            parts = parts[1:]
        return bool(parts) and (parts[0].startswith("test_") or parts[0] == "conftest")

    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if is_test_module(a.name)]
        elif isinstance(node, ast.ImportFrom):
            dots = "." * node.level
            if node.module and is_test_module(node.module):
                found.append(dots + node.module)
            elif node.module in (None, "tests"):  # `from . import test_x`, `from tests import conftest`
                base = dots + (f"{node.module}." if node.module else "")
                found += [base + a.name for a in node.names if is_test_module(a.name)]
    return found


def test_test_modules_import_helpers_not_each_other() -> None:
    """Shared helpers live in tests/helpers.py (fixtures and hooks in conftest.py): no file under
    tests/ imports a test module or conftest, so each test module runs on its own and moving a
    test never breaks another file."""
    bad = {
        p.name: names for p in sorted((ROOT / "tests").glob("*.py")) if (names := _imported_test_modules(p))
    }
    assert not bad, f"import from tests/helpers.py instead: {bad}"
