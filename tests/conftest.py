"""Shared fixtures. GPU tests take the `device` fixture: with no WebGPU adapter it FAILS (never
skips), with the fix in the message."""

from __future__ import annotations

import numpy as np
import pytest

import q8ta_wgpu as q8

# (test id, max |diff| in LSB, differing elements, total elements), printed at the end.
LSB_REPORT: list[tuple[str, int, int, int]] = []


@pytest.fixture(scope="session")
def device() -> q8.Device:
    try:
        return q8.default_device()
    except q8.NoAdapterError as e:
        pytest.fail(f"no WebGPU adapter: {e}")


def assert_within_1lsb(got: np.ndarray, want: np.ndarray, what: str, *, exact: bool = False) -> int:
    """Assert |got - want| <= 1 (or == 0 with exact=True) elementwise; record and return the count
    of differing elements."""
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype == np.int8, f"{what}: dtypes {got.dtype}, {want.dtype}"
    d = np.abs(got.astype(np.int32) - want.astype(np.int32))
    worst, count = int(d.max(initial=0)), int(np.count_nonzero(d))
    LSB_REPORT.append((what, worst, count, d.size))
    limit = 0 if exact else 1
    assert worst <= limit, f"{what}: max diff {worst} LSB (> {limit}); {count} of {d.size} elements differ"
    return count


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
