"""Every kind of configuration the tuner may pick for the tiled GEMM computes the reference's
result: blocks per thread (TM x TN), workgroup shapes, stage depths and split-K, through a
stored im2col matrix and through the implicit gather, on shapes whose M, channels and K all
leave partial tiles, stages and K slices."""

from __future__ import annotations

import numpy as np
import pytest

import q8ta_wgpu as q8
from q8ta_wgpu import planner, reference, tuning
from q8ta_wgpu.configs import ConvConfig, make_case
from q8ta_wgpu.planner import DeviceLimits
from q8ta_wgpu.shaders import LIBRARY

from .helpers import assert_within_1lsb

SHAPES = [
    # M = 2*9*ceil(11/4) = 54 m-blocks, 20 channels (5 blocks), K = 3*3*44 = 396 (99 k-blocks)
    ConvConfig("ragged", 20, 44, 9, 11, kernel=(3, 3), padding=(1, 1), n=2),
    # two groups of 12 channels each, stride 2
    ConvConfig("grouped", 16, 24, 13, 10, kernel=(3, 3), stride=(2, 2), padding=(1, 1), groups=2),
]


@pytest.mark.parametrize("tile", [(2, 2), (1, 2), (2, 1), (1, 1)], ids=lambda t: f"{t[0]}x{t[1]}")
@pytest.mark.parametrize("cfg", SHAPES, ids=lambda c: c.name)
def test_tiled_gemm_configs_match_the_reference(device, cfg, tile):
    case = make_case(cfg, seed=11)
    x, w, ws, b = case["args"]
    ref = reference.conv2d(x, w, ws, b, **case["kwargs"])
    tm, tn = tile
    ran = 0
    for method in ("im2col_4w4c", "implicit_4w4c"):
        conv = q8.QConv2d(w, ws, b, device=device, method=method, **case["kwargs"])
        for wg_m, wg_n in [(8, 8), (4, 16), (16, 4)]:
            for bk in (8, 16, 32):
                consts = {"WG_M": wg_m, "WG_N": wg_n, "BK": bk, "TM": tm, "TN": tn}
                if planner.tiled_config_error(
                    DeviceLimits.of(device), consts
                ):  # e.g. too many loads a thread
                    continue
                # K in 3 slices reduced by a pass, and by the GEMM's last slice (on Vulkan)
                for splits, in_gemm in ((1, False), (3, False), (3, True)):
                    if in_gemm and device.backend != "Vulkan":
                        continue
                    conv.gemm_override = {
                        "kernel": "gemm_q8_tiled.wgsl",
                        "constants": consts,
                        "splits": splits,
                    }
                    device.reduce_in_gemm = in_gemm
                    conv._plans.clear()
                    try:
                        out = conv(x)
                    finally:
                        device.reduce_in_gemm = device.default_reduce_in_gemm
                    what = f"{cfg.name} {method} {consts} splits={splits} reduced in the GEMM: {in_gemm}"
                    assert_within_1lsb(out, ref, what, exact=True)
                    ran += 1
    assert ran >= 36  # of 54: deep stages of narrow tiles need too many loads a thread


def test_tile_constants_are_checked(device):
    """TM and TN take only the values the kernel is written for; BK must be even (k-blocks go in
    pairs); the tuner offers half and quarter tiles, and only configurations that pass these checks."""
    base = {"WG_M": 8, "WG_N": 8, "BK": 8}
    assert (
        planner.tiled_config_error(DeviceLimits.of(device), {**base, "TM": 3}) == "TM 3 is not one of (1, 2)"
    )
    assert (
        planner.tiled_config_error(DeviceLimits.of(device), {**base, "TN": 0}) == "TN 0 is not one of (1, 2)"
    )
    assert (
        planner.tiled_config_error(DeviceLimits.of(device), {**base, "BK": 7})
        == "BK 7 is not a positive multiple of 2"
    )
    half = planner.tiled_kernel("gemm_q8_tiled.wgsl", {**base, "TM": 1})
    assert (half.tm, half.tn) == (1, 2)
    assert half.workgroup_bytes(8, 8, 8) < planner.TILED_KERNELS["gemm_q8_tiled.wgsl"].workgroup_bytes(
        8, 8, 8
    )
    geo = SHAPES[0].geometry()
    cands = tuning.gemm_candidates(device, geo, geo.m_blocks)
    tiles = {(c["constants"]["TM"], c["constants"]["TN"]) for c in cands}
    assert tiles == {(2, 2), (1, 2), (2, 1), (1, 1)}
    assert all(planner.tiled_config_error(DeviceLimits.of(device), c["constants"]) is None for c in cands)


def test_split_k_reduced_in_the_gemm_leaves_its_sums_zeroed(device):
    """The GEMM that reduces its K slices itself leaves its sums and arrival counters at zero
    after each dispatch, so calls after the first (other inputs, a chain) start clean."""
    if device.backend != "Vulkan":
        pytest.fail(f"split-K reduced in the GEMM runs on Vulkan; this adapter is {device.backend}")
    device.reduce_in_gemm = True  # (off by default on CPU adapters: slower there, as exact)
    try:
        _check_sums_zeroed(device)
    finally:
        device.reduce_in_gemm = device.default_reduce_in_gemm


def _check_sums_zeroed(device):
    cfg = SHAPES[0]
    case = make_case(cfg, seed=5)
    x, w, ws, b = case["args"]
    conv = q8.QConv2d(w, ws, b, device=device, method="implicit_4w4c", **case["kwargs"])
    consts = {"WG_M": 4, "WG_N": 4, "BK": 8, "TM": 2, "TN": 1}
    conv.gemm_override = {"kernel": "gemm_q8_tiled.wgsl", "constants": consts, "splits": 4}
    rng = np.random.default_rng(3)
    for i in range(3):
        xi = x if i != 1 else rng.integers(-128, 128, x.shape, dtype=np.int8)
        ref = reference.conv2d(xi, w, ws, b, **case["kwargs"])
        assert_within_1lsb(conv(xi), ref, f"call {i}", exact=True)
        (plan,) = conv._plans.values()
        (gemm,) = [s for s in plan.specs if "reduced in it" in s[3]]
        ksum = gemm[1][LIBRARY.bindings("gemm_q8_tiled.wgsl").index("ksum")]
        sums = np.frombuffer(device.read(ksum), np.int32)
        assert sums.size >= 16 * cfg.geometry().m_blocks * 5 and not sums.any(), f"call {i}"
