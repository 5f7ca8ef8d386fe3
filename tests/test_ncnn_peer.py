"""bench/peers/ncnn_int8.py, the same-API peer: ncnn's int8 Vulkan conv computes exactly the int32 sums
of an independent numpy reference on the shapes it is timed on (else its timings would mean nothing),
and its per-layer timing returns sane figures.

ncnn is an optional bench dependency: without it this module is skipped; with ncnn but no Vulkan GPU
it fails. bench/ is no package: the peer is loaded from its file, as tests/test_probes.py loads its
probe."""

from __future__ import annotations

import importlib.util
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from q8ta_wgpu.configs import ConvConfig

pytest.importorskip("ncnn")

PEER = Path(__file__).resolve().parents[1] / "bench" / "peers" / "ncnn_int8.py"


def _load():
    name = "bench_peers_ncnn_int8"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, PEER)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


peer = _load()


@pytest.fixture(scope="module")
def ncnn_conv():
    info = peer.ncnn_info()
    if info is None:
        pytest.fail(
            "ncnn imports but sees no Vulkan GPU: install a Vulkan driver (on Linux without a GPU, "
            "Mesa's lavapipe: apt-get install mesa-vulkan-drivers libvulkan1; setup.sh does)",
            pytrace=False,
        )
    return peer.NcnnInt8Conv()


def _c(name, co, ci, hw, k=3, s=1, p=1, d=1, g=1):
    return ConvConfig(name, co, ci, hw, hw + 3, (k, k), (s, s), (p, p), (d, d), g)


# Small shapes (lavapipe is a CPU) covering ncnn's int8 Vulkan paths; W = H + 3 keeps h*w off
# multiples of 4 in most (ncnn's channel step is then padded).
SHAPES = [
    _c("g1.3x3s1", 16, 8, 9),  # Convolution, gemm
    _c("g1.3x3s2", 24, 12, 11, s=2),
    _c("g1.3x3s1.wino", 32, 32, 10),  # >= 16 channels: winograd
    _c("g1.1x1", 20, 12, 7, k=1, p=0),  # the 1x1 s1 kernel
    _c("g1.cin3", 16, 3, 12),  # C_in not a multiple of 4 (unpacked input)
    ConvConfig("g1.3x5.ragged", 6, 5, 9, 13, (3, 5), (1, 2), (1, 2)),  # C_out and C_in not % 4
    _c("g2", 16, 8, 9, g=2),  # ConvolutionDepthWise, grouped
    _c("g4.s2", 16, 16, 10, s=2, g=4),
    _c("dw3x3", 16, 16, 11, g=16),  # depthwise, packed by 4
    _c("dw3x3.c6", 6, 6, 11, g=6),  # depthwise, unpacked
    _c("dw5x5.s2", 8, 8, 12, k=5, s=2, p=2, g=8),
    _c("g1.dil2", 8, 8, 12, p=2, d=2),
    _c("dw.dil2", 8, 8, 12, p=2, d=2, g=8),
]


@pytest.mark.parametrize("cfg", SHAPES, ids=lambda c: c.name)
def test_check_exact(ncnn_conv, cfg):
    r = ncnn_conv.check(cfg)
    oh, ow = peer._out_hw(cfg)
    assert r["elements"] == cfg.c_out * oh * ow
    assert r["exact"], f"{cfg.name} ({cfg.label()}): ncnn differs from the reference by {r['max_abs_diff']}"
    assert r["max_abs_diff"] == 0.0


def test_check_rejects_batches(ncnn_conv):
    with pytest.raises(ValueError, match="b2"):
        ncnn_conv.check(_c("b2", 8, 8, 6).with_batch(2))


def test_reference_matches_direct_loops():
    """reference_conv (im2col + einsum) against the definition, on a shape with everything on."""
    cfg = ConvConfig("ref", 6, 4, 5, 7, (3, 2), (2, 1), (1, 2), (2, 1), 2)
    rng = np.random.default_rng(3)
    x = rng.integers(-16, 17, size=(cfg.c_in, cfg.h, cfg.w))
    w = rng.integers(-8, 9, size=cfg.weight_shape)
    b = rng.integers(-50, 51, size=cfg.c_out)
    oh, ow = peer._out_hw(cfg)
    cig, cog = cfg.c_in // cfg.groups, cfg.c_out // cfg.groups
    want = np.zeros((cfg.c_out, oh, ow))
    for o, y, xo in itertools.product(range(cfg.c_out), range(oh), range(ow)):
        s = int(b[o])
        for c, i, j in itertools.product(range(cig), range(cfg.kernel[0]), range(cfg.kernel[1])):
            yy = y * cfg.stride[0] - cfg.padding[0] + i * cfg.dilation[0]
            xx = xo * cfg.stride[1] - cfg.padding[1] + j * cfg.dilation[1]
            if 0 <= yy < cfg.h and 0 <= xx < cfg.w:
                s += int(x[o // cog * cig + c, yy, xx]) * int(w[o, c, i, j])
        want[o, y, xo] = s
    np.testing.assert_array_equal(peer.reference_conv(x, w, b, cfg), want)


def test_layer_time(ncnn_conv):
    cfg = _c("chain", 8, 8, 9)
    assert peer.chainable(cfg)
    r = ncnn_conv.layer_time(cfg, repeats=3, k=4, warm_s=0)
    assert set(r) == {"layer_s", "net_k0_s", "net_k_s", "k0", "k", "includes"}
    assert (r["k0"], r["k"]) == (2, 4)
    assert isinstance(r["includes"], str) and r["includes"]
    for key in ("net_k0_s", "net_k_s"):
        st = r[key]
        assert set(st) == {"median", "min", "max"}
        assert all(math.isfinite(v) and v > 0 for v in st.values()), (key, st)
        assert st["min"] <= st["median"] <= st["max"]
    st = r["layer_s"]
    assert set(st) == {"median", "min", "max"}
    assert all(math.isfinite(v) for v in st.values()) and st["min"] <= st["median"] <= st["max"]
    # No sign check: with 3 runs and no warm-up a difference of wall times can come out negative
    # (a cold first run); speed belongs to the benchmark, not to a unit test.


def test_layer_time_none_for_unchainable(ncnn_conv):
    for cfg in (_c("cout", 16, 8, 9), _c("s2", 8, 8, 9, s=2), _c("nopad", 8, 8, 9, p=0)):
        assert not peer.chainable(cfg)
        assert ncnn_conv.layer_time(cfg) is None
    batched = _c("n2", 8, 8, 9).with_batch(2)
    assert not peer.chainable(batched) and ncnn_conv.layer_time(batched) is None
