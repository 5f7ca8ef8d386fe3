"""Submission: work recorded ahead of its call (a net's next numpy call, recorded while the GPU
runs the current one), passes submitted in chunks, results read through a mapped buffer. Each
must give the same bytes as the plain path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import q8ta_wgpu as q8
from q8ta_wgpu import models

from .helpers import pt2e_int8

HW = 16


@pytest.fixture(scope="module")
def graph() -> torch.nn.Module:
    return pt2e_int8(models.build("tiny_resnet", seed=3), q8.Q8taQuantizer(), torch.randn(1, 3, HW, HW))


def _inputs(n: int, batch: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.standard_normal((batch, 3, HW, HW)).astype(np.float32) for _ in range(n)]


def _fresh(graph: torch.nn.Module, device: q8.Device, x: np.ndarray) -> np.ndarray:
    """x through a net of its own: its first call, so no work recorded ahead."""
    return q8.from_torch(graph, device=device).run_int8(x)


def test_work_recorded_ahead_reads_the_new_input(device, graph):
    xs = _inputs(3)
    want = [_fresh(graph, device, x) for x in xs]
    assert not np.array_equal(want[0], want[1]), "inputs too alike to tell calls apart"
    net = q8.from_torch(graph, device=device)
    for i in [0, 1, 2, 1, 0, 0]:  # every call after the first runs work recorded by the one before
        np.testing.assert_array_equal(net.run_int8(xs[i]), want[i], err_msg=f"call on input {i}")
    assert net.compile(xs[0].shape).ahead is not None


def test_two_nets_and_other_work_between_calls(device, graph):
    """Work recorded ahead runs after whatever else was submitted in between (another net of the
    same graph, the QTensor path, a recording() block) and still reads its own call's input."""
    xs = _inputs(2)
    want = [_fresh(graph, device, x) for x in xs]
    a, b = q8.from_torch(graph, device=device), q8.from_torch(graph, device=device)
    qx = q8.QTensor.from_numpy(
        q8.reference.quantize_per_tensor(xs[1], a.input_scale, a.input_zero_point),
        a.input_scale,
        a.input_zero_point,
        device=device,
    )
    for _ in range(2):
        np.testing.assert_array_equal(a.run_int8(xs[0]), want[0])
        np.testing.assert_array_equal(b.run_int8(xs[1]), want[1])
        with device.recording():
            y = a.run(qx)  # recorded, submitted before a's next call
            np.testing.assert_array_equal(a.run_int8(xs[0]), want[0])
        np.testing.assert_array_equal(y.numpy(), want[1])


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_chunked_submits_give_the_same_bytes(device, graph, chunk):
    x = _inputs(1)[0]
    want = _fresh(graph, device, x)
    net = q8.from_torch(graph, device=device)
    qx = q8.QTensor.from_numpy(
        q8.reference.quantize_per_tensor(x, net.input_scale, net.input_zero_point),
        net.input_scale,
        net.input_zero_point,
        device=device,
    )
    keep = device.submit_chunk
    device.submit_chunk = chunk
    try:
        np.testing.assert_array_equal(net.run(qx).numpy(), want)
    finally:
        device.submit_chunk = keep


def test_without_native_calls_the_plain_path_gives_the_same_bytes(graph):
    """Where wgpu-native's C calls are missing (no Submitter), net(x) submits and reads back
    through wgpu-py's objects."""
    dev = q8.Device()
    x = _inputs(1)[0]
    want = _fresh(graph, dev, x)
    dev._submitter = None
    net = q8.from_torch(graph, device=dev)
    assert dev.record([]) is None
    for _ in range(2):
        np.testing.assert_array_equal(net.run_int8(x), want)
    assert net.compile(x.shape).staging is None


def test_recorded_work_is_submitted_once(device):
    work = device.record([])
    device.submit(work)
    with pytest.raises(RuntimeError, match="already submitted or released"):
        device.submit(work)
    spare = device.record([])
    spare.release()  # never submitted: released, and release is idempotent
    spare.release()


def test_read_mapped_gives_what_was_copied(device):
    data = np.arange(40, dtype=np.uint8)
    src = device.upload(data)
    staging = device.staging_buffer(40)
    device.submit(device.record([], (src, staging, 40)))
    np.testing.assert_array_equal(np.frombuffer(device.read_mapped(staging, 40), np.uint8), data)


def test_busy_wait_gives_the_same_bytes(device, graph):
    """Readbacks that poll without blocking first (`Device.spin_wait_s`, the default on GPUs;
    0 on CPU adapters such as lavapipe) read what blocking ones read."""
    assert device.spin_wait_s == (0.0 if device.on_cpu else q8.Device.SPIN_WAIT_S)
    xs = _inputs(2)
    want = [_fresh(graph, device, x) for x in xs]
    net = q8.from_torch(graph, device=device)
    keep = device.spin_wait_s
    device.spin_wait_s = 0.05
    try:
        for i in [0, 1, 0]:
            np.testing.assert_array_equal(net.run_int8(xs[i]), want[i], err_msg=f"call on input {i}")
        data = np.arange(64, dtype=np.uint8)
        np.testing.assert_array_equal(np.frombuffer(device.read(device.upload(data)), np.uint8), data)
    finally:
        device.spin_wait_s = keep


def test_a_failed_call_leaves_the_input_upload_usable(device, graph, monkeypatch):
    """A call that raises after its input was written (here: its submit) leaves the input buffer
    unmapped; the next call maps it again and reads its own input."""
    xs = _inputs(2)
    want = [_fresh(graph, device, x) for x in xs]
    net = q8.from_torch(graph, device=device)
    np.testing.assert_array_equal(net.run_int8(xs[0]), want[0])
    c = net.compile(xs[0].shape)
    assert c.upload_ptr is not None, "the input buffer is mapped between calls"

    def failing_submit(work):
        raise RuntimeError("submit failed (test)")

    with monkeypatch.context() as m:
        m.setattr(device, "submit", failing_submit)
        with pytest.raises(RuntimeError, match="submit failed"):
            net.run_int8(xs[1])
    assert c.upload_ptr is None
    for i in [1, 0]:
        np.testing.assert_array_equal(net.run_int8(xs[i]), want[i], err_msg=f"call on input {i}")


def test_a_non_finite_input_raises_after_its_work_and_the_next_call_is_right(device, graph):
    """The finite check runs while the GPU runs the call: the call still completes (its output
    is not returned) and raises; the next call reads its own input."""
    xs = _inputs(2)
    want = [_fresh(graph, device, x) for x in xs]
    net = q8.from_torch(graph, device=device)
    np.testing.assert_array_equal(net.run_int8(xs[0]), want[0])
    for bad_value in (np.inf, np.nan):
        bad = xs[0].copy()
        bad[1, 2, 3, 4] = bad_value
        with pytest.raises(ValueError, match="x has NaN or infinite values"):
            net.run_int8(bad)
        np.testing.assert_array_equal(net.run_int8(xs[1]), want[1])
