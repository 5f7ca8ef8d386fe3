"""The command line (`python -m q8ta_wgpu`, installed as `q8ta-wgpu`): each command runs in a
subprocess and its exit code means what q8ta_wgpu/__main__.py documents (0 ok, 1 mismatch,
2 usage, 3 no adapter, 4 error)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from q8ta_wgpu import __main__ as cli

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run(
        [sys.executable, "-m", "q8ta_wgpu", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _out(p: subprocess.CompletedProcess) -> str:
    return f"exit {p.returncode}\n--- stdout\n{p.stdout[-3000:]}\n--- stderr\n{p.stderr[-3000:]}"


def test_help_lists_commands_and_exit_codes() -> None:
    p = run_cli("--help")
    assert p.returncode == cli.EXIT_OK, _out(p)
    for word in ("info", "demo", "verify", "bench", "exit codes", "no usable WebGPU adapter"):
        assert word in p.stdout
    for cmd in ("info", "demo", "verify", "bench"):
        p = run_cli(cmd, "--help")
        assert p.returncode == 0, _out(p)
        assert "--adapter" in p.stdout and "--backend" in p.stdout and "exit codes" in p.stdout


def test_version() -> None:
    import q8ta_wgpu

    p = run_cli("--version")
    assert p.returncode == 0 and q8ta_wgpu.__version__ in p.stdout, _out(p)


def test_info(device) -> None:  # noqa: ARG001 - the fixture fails clearly when no adapter exists
    p = run_cli("info")
    assert p.returncode == cli.EXIT_OK, _out(p)
    for word in ("adapter", "backend", "dot4I8Packed", "limits", "max-storage-buffer-binding-size"):
        assert word in p.stdout, _out(p)


def test_info_json(device) -> None:
    p = run_cli("info", "--json")
    assert p.returncode == cli.EXIT_OK, _out(p)
    info = json.loads(p.stdout)
    assert info["adapter"] == device.name and info["backend"] == device.backend
    assert info["dot4I8Packed"] in ("builtin", "fallback")
    assert isinstance(info["limits"], dict) and isinstance(info["adapters"], list) and info["adapters"]


def test_demo(device) -> None:  # noqa: ARG001
    p = run_cli("demo")
    assert p.returncode == cli.EXIT_OK, _out(p)
    assert "result    OK" in p.stdout and "max |gpu - reference|" in p.stdout


def test_demo_model_checks_and_tunes_a_network(device, tmp_path, monkeypatch) -> None:  # noqa: ARG001
    """`demo --model tiny_resnet --tune`: a whole built-in network checked against PyTorch, then
    tuned on this adapter into the tuning cache named by the environment (per conv, then each conv
    shape's alternatives in the whole net), and the tuned net checked to give the same bytes
    (every method rounds exactly)."""
    cache = tmp_path / "tuning.json"
    monkeypatch.setenv("Q8TA_WGPU_TUNING_CACHE", str(cache))
    r = run_cli("demo", "--model", "tiny_resnet", "--hw", "16", "--batch", "2", "--tune")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "result    OK" in r.stdout and "conv2d+add" in r.stdout, r.stdout
    tune = next(line for line in r.stdout.splitlines() if line.startswith("tune"))
    assert "convs measured" in tune and "ms GPU" in tune, tune
    refine = next(line for line in r.stdout.splitlines() if line.startswith("refine"))
    assert "alternatives tried in the whole net" in refine and "ms GPU" in refine, refine
    assert "tune      the tuned net gives the same bytes" in r.stdout, _out(r)
    if "kept (in the tuning cache)" in tune:
        assert json.loads(cache.read_text()), "kept choices are in the cache"


def test_verify_quick(device) -> None:  # noqa: ARG001
    p = run_cli("verify", "--quick")
    assert p.returncode == cli.EXIT_OK, _out(p)
    assert "all equal to the reference" in p.stdout
    methods = {
        line.split()[-4] for line in p.stdout.splitlines() if line.startswith(("spec", "pw", "mbv2", "dw5"))
    }
    assert {"im2col_generic", "im2col_4w4c", "pointwise", "depthwise_4w4c"} <= methods, methods


@pytest.mark.parametrize(
    "args",
    [
        ("bogus",),  # unknown command
        (),  # no command
        ("info", "--nope"),  # unknown option
        ("info", "--backend", "Glide"),  # unknown backend
        ("verify", "--quick=yes"),  # a flag given a value
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    p = run_cli(*args)
    assert p.returncode == cli.EXIT_USAGE, _out(p)
    assert "usage:" in p.stderr


def test_no_matching_adapter_exits_3() -> None:
    p = run_cli("info", "--adapter", "no-such-adapter-q8ta")
    assert p.returncode == cli.EXIT_NO_ADAPTER, _out(p)
    assert "No WebGPU adapter" in p.stderr


def test_errors_map_to_exit_codes(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """In-process: a kernel error or any unexpected exception is exit 4 (never 1, which means a
    wrong result); a mismatch returned by a command is passed through."""
    from q8ta_wgpu.runtime import KernelError

    def kernel_error(args):
        raise KernelError("gemm_q8.wgsl: naga says no")

    def crash(args):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "cmd_info", kernel_error)
    assert cli.main(["info"]) == cli.EXIT_ERROR
    assert "naga says no" in capsys.readouterr().err
    monkeypatch.setattr(cli, "cmd_info", crash)
    assert cli.main(["info"]) == cli.EXIT_ERROR
    assert "RuntimeError: boom" in capsys.readouterr().err
    monkeypatch.setattr(cli, "cmd_info", lambda args: cli.EXIT_MISMATCH)
    assert cli.main(["info"]) == cli.EXIT_MISMATCH
