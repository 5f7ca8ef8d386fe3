"""Every kind of configuration the tuner may pick for the tiled GEMM computes the reference's
result: blocks per thread (TM x TN), workgroup shapes, stage depths and split-K, through a
stored im2col matrix and through the implicit gather, on shapes whose M, channels and K all
leave partial tiles, stages and K slices."""

from __future__ import annotations

import pytest

import q8ta_wgpu as q8
from q8ta_wgpu import planner, reference, tuning
from q8ta_wgpu.configs import ConvConfig, make_case
from q8ta_wgpu.planner import DeviceLimits

from .helpers import assert_within_1lsb

SHAPES = [
    # M = 2*9*ceil(11/4) m-blocks, 44 channels (11 blocks), K = 3*3*20 = 180 (45 k-blocks)
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
                for splits in (1, 3):
                    conv.gemm_override = {
                        "kernel": "gemm_q8_tiled.wgsl",
                        "constants": consts,
                        "splits": splits,
                    }
                    conv._plans.clear()
                    assert_within_1lsb(conv(x), ref, f"{cfg.name} {method} {consts} splits={splits}")
                    ran += 1
    assert ran >= 24  # of 36: deep stages of narrow tiles need too many loads a thread


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
