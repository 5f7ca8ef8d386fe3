"""Packed layouts: host pack/unpack round trips, the spec's address formulas, and host-vs-GPU
byte equality for every layout at odd sizes (C, W not multiples of 4, N > 1)."""

from __future__ import annotations

import numpy as np
import pytest

import q8ta_wgpu as q8
from q8ta_wgpu.layouts import LAYOUTS, packed_words

from .helpers import SHAPES, ZPS


def spec_address(layout: str, shape, n, c, h, w) -> tuple[int, int]:
    """(word, byte) of element (n, c, h, w), written straight from the spec's table."""
    _, C, H, W = shape
    C4, W4 = -(-C // 4), -(-W // 4)
    if layout == "4W4C":
        return (((n * H + h) * W4 + w // 4) * C4 + c // 4) * 4 + w % 4, c % 4
    if layout == "4C":
        return ((n * H + h) * W + w) * C4 + c // 4, c % 4
    return ((n * H + h) * C4 + c // 4) * W + w, c % 4


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES)
def test_host_pack_matches_spec_table(layout, shape):
    rng = np.random.default_rng(hash((layout, shape)) % 2**32)
    x = rng.integers(-128, 128, shape, dtype=np.int8)
    zp = 37
    words = q8.pack(x, layout, zp)
    assert words.dtype == np.uint32 and words.size == packed_words(shape, layout)
    b = words.view(np.int8)
    owned = np.zeros(b.size, bool)
    for idx in np.ndindex(*shape):
        wd, by = spec_address(layout, shape, *idx)
        assert b[4 * wd + by] == x[idx]
        owned[4 * wd + by] = True
    # Every byte not owned by an element is padding and holds the zero point.
    assert np.all(b[~owned] == zp)
    assert owned.sum() == x.size


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES)
def test_round_trip_host_and_gpu(device, layout, shape):
    rng = np.random.default_rng(abs(hash((shape, layout))) % 2**32)
    x = rng.integers(-128, 128, shape, dtype=np.int8)
    for zp in ZPS:
        host = q8.pack(x, layout, zp)
        gpu = q8.pack_gpu(x, layout, zp, device=device)
        assert gpu.dtype == np.uint32
        assert host.tobytes() == gpu.tobytes(), f"{layout} {shape} zp={zp}: GPU pack differs from host"
        np.testing.assert_array_equal(q8.unpack(host, layout, shape), x)
        np.testing.assert_array_equal(q8.unpack_gpu(host, layout, shape, device=device), x)


@pytest.mark.parametrize("src", LAYOUTS)
@pytest.mark.parametrize("dst", LAYOUTS)
def test_qtensor_relayout_via_gpu(device, src, dst):
    x = np.random.default_rng(3).integers(-128, 128, (2, 6, 5, 7), dtype=np.int8)
    t = q8.QTensor.from_numpy(x, 0.1, -3, layout=src, device=device)
    assert t.words().tobytes() == q8.pack(x, src, -3).tobytes()
    np.testing.assert_array_equal(t.numpy(), x)
    t2 = q8.QTensor.from_numpy(t.numpy(), 0.1, -3, layout=dst, device=device)
    assert t2.words().tobytes() == q8.pack(x, dst, -3).tobytes()


def test_pack_rejects_bad_input():
    x = np.zeros((1, 2, 3, 4), np.int8)
    with pytest.raises(ValueError, match="layout"):
        q8.pack(x, "NHWC", 0)
    with pytest.raises(TypeError, match="int8"):
        q8.pack(x.astype(np.int16), "4C", 0)
    with pytest.raises(ValueError, match="4 dimensions"):
        q8.pack(x[0], "4C", 0)
    with pytest.raises(ValueError, match=r"zero_point must be in \[-128, 127\]"):
        q8.pack(x, "4C", 128)
    with pytest.raises(ValueError, match="needs"):
        q8.unpack(np.zeros(3, np.uint32), "4C", (1, 2, 3, 4))
