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
