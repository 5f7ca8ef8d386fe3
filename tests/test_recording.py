"""Device.recording(): calls in a block are submitted together, with the same bytes as one by one."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import q8ta_wgpu as q8
from q8ta_wgpu import reference
from q8ta_wgpu.configs import ConvConfig, make_case
from q8ta_wgpu.runtime import Pass

from .helpers import assert_within_1lsb


def _chain(device, c: int = 8, h: int = 10, w: int = 9):
    """Two convs whose quantization chains (conv2's input = conv1's output), and an input
    [1, c, h, w]."""
    c1 = make_case(
        ConvConfig("r1", 16, c, h, w, padding=(1, 1)), seed=11, output_scale=0.08, output_zero_point=-4
    )
    x, w1, ws1, b1 = c1["args"]
    conv1 = q8.QConv2d(w1, ws1, b1, device=device, method="im2col_4w4c", **c1["kwargs"])
    c2 = make_case(ConvConfig("r2", 12, 16, h, w, kernel=(1, 1)), seed=12, input_scale=0.08,
                   input_zero_point=-4, output_scale=0.05, output_zero_point=3)  # fmt: skip
    _, w2, ws2, b2 = c2["args"]
    conv2 = q8.QConv2d(w2, ws2, b2, device=device, method="pointwise", **c2["kwargs"])
    return x, conv1, conv2, (c1, c2)


def _pass_counts(conv1, conv2, xt):
    """Passes of one call of each conv (im2col + GEMM, then a GEMM; more with split-K)."""
    return len(conv1.passes(xt)[1]), len(conv2.passes(conv1(xt))[1])


@pytest.fixture
def dispatches(device, monkeypatch):
    """Pass counts of each submit the device makes for calls (untimed runs)."""
    counts: list[int] = []
    real = device._dispatch
    monkeypatch.setattr(device, "_dispatch", lambda passes: (counts.append(len(passes)), real(passes))[1])
    return counts


def test_a_chain_in_one_submit_gives_the_same_bytes(device, dispatches):
    x, conv1, conv2, (c1, c2) = _chain(device)
    xt = q8.QTensor.from_numpy(x, conv1.input_scale, conv1.input_zero_point, device=device)
    one_by_one = conv2(conv1(xt)).numpy()
    mid = conv1(xt).numpy()
    # Real values: each stage within 1 LSB of the reference, given the GPU's input to it.
    assert_within_1lsb(mid, reference.conv2d(x, *c1["args"][1:], **c1["kwargs"]), "recording: conv1")
    want2 = reference.conv2d(mid, *c2["args"][1:], **c2["kwargs"])
    assert_within_1lsb(one_by_one, want2, "recording: conv2 of conv1")
    n1, n2 = _pass_counts(conv1, conv2, xt)
    dispatches.clear()
    with q8.recording(device) as dev:
        assert dev is device
        y = conv2(conv1(xt))
        ys = [conv2(conv1(xt)) for _ in range(3)]
        assert dispatches == [], "nothing is submitted inside the block"
    assert dispatches == [4 * (n1 + n2)], "the block's 4 chains of 2 calls in one submit"
    for t in [y, *ys]:
        np.testing.assert_array_equal(t.numpy(), one_by_one)


def test_reused_output_buffers_inside_a_block(device):
    """A QTensor dropped inside a block gives its buffer back to the conv's pool, and a later
    call in the same block writes it while earlier recorded work still reads it: the order of
    the dispatches (and wgpu's barriers between them) keeps every result right. Big enough
    that on a GPU one dispatch's work would overlap the next one's without those barriers."""
    x, conv1, conv2, _ = _chain(device, c=32, h=64, w=60)
    xs = [x, np.flip(x, axis=3).copy(), (x // 2).astype(np.int8)]
    ins = [q8.QTensor.from_numpy(v, conv1.input_scale, conv1.input_zero_point, device=device) for v in xs]
    want = [conv2(conv1(t)).numpy() for t in ins]
    with device.recording():
        outs = []
        for t in ins:
            mid = conv1(t)
            outs.append(conv2(mid))
            del mid  # its buffer is free for the next conv1 call, still inside the block
    for got, w in zip(outs, want, strict=True):
        np.testing.assert_array_equal(got.numpy(), w)


def test_reads_writes_and_timing_submit_what_is_recorded_first(device, dispatches):
    x, conv1, conv2, _ = _chain(device)
    xt = q8.QTensor.from_numpy(x, conv1.input_scale, conv1.input_zero_point, device=device)
    want_mid, want = conv1(xt).numpy(), conv2(conv1(xt)).numpy()
    want_numpy = conv1(x)
    n1, n2 = _pass_counts(conv1, conv2, xt)
    dispatches.clear()
    with device.recording():
        y = conv2(conv1(xt))
        # A numpy call writes its input buffer (after the recorded work is submitted) and reads
        # back: it sees its own input, and the recorded calls theirs.
        np.testing.assert_array_equal(conv1(x), want_numpy)
        assert dispatches[0] == n1 + n2, "the recorded calls went first"
        mid = conv1(xt)
        np.testing.assert_array_equal(mid.numpy(), want_mid)  # a readback inside the block
        z = conv2(mid)
        plan, passes, _ = conv2.passes(mid)
        assert len(device.run(passes, timestamps=True)) == len(passes)
        n = len(dispatches)
    assert dispatches[n - 1] == n2, "the timed run submitted the recorded call first"
    np.testing.assert_array_equal(y.numpy(), want)
    np.testing.assert_array_equal(z.numpy(), want)


def test_blocks_nest_and_an_error_still_submits_the_recorded_work(device, dispatches):
    x, conv1, _, _ = _chain(device)
    xt = q8.QTensor.from_numpy(x, conv1.input_scale, conv1.input_zero_point, device=device)
    want = conv1(xt).numpy()
    n1 = len(conv1.passes(xt)[1])
    dispatches.clear()
    with pytest.raises(RuntimeError, match="user error"), device.recording():
        with device.recording():
            y = conv1(xt)
        assert dispatches == [], "an inner block's end submits nothing"
        raise RuntimeError("user error")
    assert dispatches == [n1]
    np.testing.assert_array_equal(y.numpy(), want)
    assert not device._pending and not device._recording


def test_long_recordings_submit_in_bounded_batches(device, dispatches, monkeypatch):
    x, conv1, _, _ = _chain(device)
    xt = q8.QTensor.from_numpy(x, conv1.input_scale, conv1.input_zero_point, device=device)
    want = conv1(xt).numpy()
    n1 = len(conv1.passes(xt)[1])
    monkeypatch.setattr(device, "MAX_PENDING", 2 * n1 + 1)
    dispatches.clear()
    with device.recording():
        ys = [conv1(xt) for _ in range(4)]
    assert dispatches == [3 * n1, n1], "a submit once MAX_PENDING passes are recorded, the rest at the end"
    for y in ys:
        np.testing.assert_array_equal(y.numpy(), want)


def test_a_failing_dispatch_in_a_block_is_a_kernel_error_at_its_end(device):
    pipe = device.pipeline("pack_nchw.wgsl", {"WG": 64})
    u = device.uniform(q8.layouts.tensor_desc((1, 4, 1, 4), "4C", 0))
    bg = device.bind_group(pipe, [device.buffer(64), device.buffer(64), u])
    with pytest.raises(q8.KernelError, match="dispatch group size"), device.recording():
        device.run([Pass(pipe, bg, (device.max_workgroups + 1, 1, 1), "pack")])
    assert not device._pending
    x, conv1, _, _ = _chain(device)
    xt = q8.QTensor.from_numpy(x, conv1.input_scale, conv1.input_zero_point, device=device)
    with device.recording():
        y = conv1(xt)
    np.testing.assert_array_equal(y.numpy(), conv1(x))  # the device goes on working


def test_other_threads_calls_join_an_open_block_in_order(device):
    x, conv1, conv2, _ = _chain(device)
    xt = q8.QTensor.from_numpy(x, conv1.input_scale, conv1.input_zero_point, device=device)
    want = conv2(conv1(xt)).numpy()
    n1, n2 = _pass_counts(conv1, conv2, xt)
    out: list = []
    with device.recording():
        t = threading.Thread(target=lambda: out.append(conv2(conv1(xt))))
        t.start()
        t.join()
        assert len(device._pending) == n1 + n2, "the other thread's calls were recorded"
    np.testing.assert_array_equal(out[0].numpy(), want)
