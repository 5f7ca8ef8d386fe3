"""Shared fixtures and hooks (shared helpers live in helpers.py). GPU tests take the `device`
fixture: with no WebGPU adapter it FAILS (never skips), with the fix in the message."""

from __future__ import annotations

import inspect

import pytest

import q8ta_wgpu as q8

from .helpers import LSB_REPORT


@pytest.fixture(scope="session")
def device() -> q8.Device:
    try:
        return q8.default_device()
    except q8.NoAdapterError as e:
        pytest.fail(f"no WebGPU adapter: {e}")


def pytest_collection_modifyitems(config, items):  # noqa: ARG001
    """Mark slow the tests of tests/test_bench.py that run the benchmark (call bench.main: tens of
    seconds on lavapipe). Done here so test_bench.py carries no marker of its own; its quick
    checks of the peak kernel stay in `-m 'not slow'`."""
    for item in items:
        if item.path.name != "test_bench.py" or not hasattr(item, "function"):
            continue
        try:
            src = inspect.getsource(item.function)
        except (OSError, TypeError):
            src = "bench.main("  # source unavailable: assume it runs the benchmark
        if "bench.main(" in src:
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001
    if not LSB_REPORT:
        return
    runs = len(LSB_REPORT)
    elems = sum(r[3] for r in LSB_REPORT)
    differ = sum(r[2] for r in LSB_REPORT)
    worst = max(r[1] for r in LSB_REPORT)
    tr = terminalreporter
    tr.section("int8 output differences against the reference / torch")
    tr.write_line(f"{runs} comparisons, {elems} elements, {differ} differ by 1 LSB, worst {worst} LSB")
    for what, w, c, n in LSB_REPORT:
        if c:
            tr.write_line(f"  {what}: {c} of {n} differ (max {w})")
