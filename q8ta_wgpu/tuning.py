"""Autotuning by measurement: for one conv shape on one adapter, time the GEMM configurations
(workgroup shape, K stage depth, split-K) and, for method="auto", the valid methods, with GPU
timestamps; keep the fastest. All candidates are compiled first, then timed back to back on a
GPU kept busy (clocks up), each as one compute pass, as a call runs it. Choices are cached per
adapter, driver and package version in a JSON file ($Q8TA_WGPU_TUNING_CACHE, default
$XDG_CACHE_HOME or ~/.cache, then q8ta_wgpu/tuning.json) so a shape is measured once; a table
measured by the project ships for some adapters (tuned/).

Used by `QConv2d(..., tune=True)` (or Q8TA_WGPU_TUNE=1: tuning on first use), `Net.tune(shape)`
and `python -m q8ta_wgpu bench --tune`.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .layouts import packed_words
from .planner import (
    PATCH_KERNEL,
    DeviceLimits,
    GemmConfig,
    patch_config_error,
    resolve_method,
    tiled_config_error,
    valid_methods,
)

if TYPE_CHECKING:
    from .conv import QConv2d
    from .geometry import ConvGeometry

CACHE_ENV = "Q8TA_WGPU_TUNING_CACHE"
TUNE_ENV = "Q8TA_WGPU_TUNE"
# "0": leave out the tables shipped in tuned/ (measure how the untuned defaults do, or re-tune).
SHIPPED_ENV = "Q8TA_WGPU_SHIPPED_TUNING"
# Measure even where a choice is cached or shipped (set by `bench --tune`, which re-measures).
FORCE_MEASURE = False
_lock = threading.Lock()
_memory: dict[str, dict[str, Any]] = {}

# Workgroup shapes (threads along M, along N) of gemm_q8_tiled.wgsl; each thread owns 4*TM rows x
# 4*TN channels (TILES).
WORKGROUPS = [(16, 16), (32, 8), (8, 32), (64, 4), (4, 16), (16, 4), (8, 8), (4, 64)]
STAGES = [8, 16, 32]
# Blocks per thread (TM, TN) and the most split-K slices tried with them: the half and quarter
# tiles (2x and 4x the threads) are for GEMMs too small to fill the GPU, where they compete with
# splitting K.
TILES = [(2, 2, 32), (1, 2, 4), (2, 1, 4), (1, 1, 4)]
SPLITS = [1, 2, 4, 8, 16, 32]
# GEMM configurations (the default method's fastest) tried with each other method.
TOP_K = 4
# Seconds of keeping the GPU busy before a shape's candidates are timed (clocks up).
WARM_S = 0.3


def cache_path() -> Path:
    p = os.environ.get(CACHE_ENV)
    if p:
        return Path(p)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "q8ta_wgpu" / "tuning.json"


def adapter_key(dev: Any) -> str:
    """The cache's key of a device's choices: adapter, backend, driver (wgpu's description) and
    this package's version (kernels change between versions; choices are measured again)."""
    from . import __version__

    info = dev.adapter.info
    return (
        f"{info.get('device', '')} | {info.get('backend_type', '')} | {info.get('description', '')} | "
        f"q8ta_wgpu {__version__}"
    )


def shape_key(conv: QConv2d, geo: ConvGeometry, in_layout: str) -> str:
    return (
        f"x{geo.N}x{geo.C_in}x{geo.H}x{geo.W} w{geo.C_out}x{geo.C_in_per_group}x{geo.KH}x{geo.KW} "
        f"s{geo.stride} p{geo.padding} d{geo.dilation} g{geo.groups} {in_layout} {conv.method}"
    )


def _load() -> dict[str, dict[str, Any]]:
    path = cache_path()
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def shipped_table_path(adapter: str, backend: str) -> Path:
    """The table of choices shipped for adapter model `adapter` (its name) on `backend`."""
    name = re.sub(r"[^A-Za-z0-9]+", "_", adapter).strip("_")
    return Path(__file__).parent / "tuned" / f"{name}-{backend}.json"


def bundled_path(dev: Any) -> Path:
    """Choices measured by the project on this adapter model, shipped with the package."""
    info = dev.adapter.info
    return shipped_table_path(f"{info.get('device', '')}", f"{info.get('backend_type', '')}")


def lookup(dev: Any, key: str) -> dict[str, Any] | None:
    """The cached choice for this adapter and shape: this machine's cache first, then the table
    shipped for this adapter model (measured with the same tuner), else None."""
    with _lock:
        ak = adapter_key(dev)
        if ak not in _memory:
            mem = {}
            try:
                if os.environ.get(SHIPPED_ENV, "1") != "0":
                    mem.update(json.loads(bundled_path(dev).read_text())["choices"])
            except (OSError, ValueError, KeyError):
                pass
            mem.update(_load().get(ak, {}))
            _memory[ak] = mem
        return _memory[ak].get(key)


def forget() -> None:
    """Drop the choices read into memory: the next lookup reads the cache file and the shipped
    table again (after changing $Q8TA_WGPU_TUNING_CACHE or $Q8TA_WGPU_SHIPPED_TUNING)."""
    with _lock:
        _memory.clear()


def store(dev: Any, key: str, choice: dict[str, Any] | None) -> None:
    """Keep `choice` for shape `key` on this adapter, in memory and in the cache file; None
    drops the key from both (the planner's default plans it again)."""
    with _lock:
        ak = adapter_key(dev)
        mem = _memory.setdefault(ak, {})
        if choice is None:
            mem.pop(key, None)
        else:
            mem[key] = choice
        path = cache_path()
        try:
            data = _load()
            if choice is None:
                data.get(ak, {}).pop(key, None)
            else:
                data.setdefault(ak, {})[key] = choice
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            tmp.replace(path)
        except OSError:
            pass  # a read-only home still tunes, in memory


def gemm_candidates(dev: Any, geo: ConvGeometry, m_count: int) -> list[dict[str, Any]]:
    """gemm_q8_tiled configurations for this shape (tile no wider than twice the work) that
    `dev` can run."""
    limits = DeviceLimits.of(dev)
    c4_pg = -(-geo.C_out // 4) if geo.groups == 1 else geo.C_out_per_group // 4
    k4_pg = geo.K_per_group // 4
    out = []
    for tm, tn, most_splits in TILES:
        for wg_m, wg_n in WORKGROUPS:
            if tn * wg_n > 2 * max(c4_pg, 4) or tm * wg_m > 2 * max(m_count, 8):
                continue
            for bk in STAGES:
                consts = {"WG_M": wg_m, "WG_N": wg_n, "BK": bk, "TM": tm, "TN": tn}
                if bk > 2 * k4_pg or tiled_config_error(limits, consts):
                    continue
                for splits in SPLITS:
                    if splits > most_splits or (splits > 1 and k4_pg < splits * bk):
                        continue
                    out.append({"kernel": "gemm_q8_tiled.wgsl", "constants": consts, "splits": splits})
    return out


# conv_patch_4w4c.wgsl's candidates: tiles (output rows, m-blocks a row), input words a stage,
# K slices (on devices that reduce them in the kernel). 8 threads along channel blocks, one
# channel block a thread: on the H200 a second channel block a thread (TN = 2) was 1.2x-1.6x slower.
PATCH_TILES = [(4, 4), (4, 2), (2, 4), (2, 2), (8, 2), (1, 4)]
PATCH_WORDS = [8, 4, 2]
PATCH_SPLITS = [1, 2, 4, 8, 16]


def patch_candidates(dev: Any, geo: ConvGeometry) -> list[dict[str, Any]]:
    """conv_patch_4w4c configurations for conv `geo` (its tile no bigger than twice the output
    and no slice without a stage of words) that `dev` can run."""
    limits = DeviceLimits.of(dev)
    c4_in, w4_out = geo.C_in // 4, -(-geo.W_out // 4)
    out = []
    for tr, tw in PATCH_TILES:
        if tr > 2 * geo.H_out or tw > 2 * w4_out:
            continue
        for cb in sorted({min(cb, c4_in) for cb in PATCH_WORDS}, reverse=True):
            consts = {"TR": tr, "TW": tw, "WG_N": 8, "TN": 1, "CB": cb}
            if patch_config_error(limits, consts, geo):
                continue
            for splits in PATCH_SPLITS if limits.reduce_in_gemm else [1]:
                if splits * cb <= c4_in:
                    out.append({"kernel": PATCH_KERNEL, "constants": consts, "splits": splits})
    return out


def _time_all(dev: Any, runs: list[list], repeats: int) -> list[float]:
    """Median GPU time (s) of each pass list, each run as one call runs it (one compute pass).
    All pipelines are compiled before this, and the GPU is kept busy first: timed right after
    compiling, on lowered clocks, the same GEMM measured up to ~5x slower on the H100."""
    if runs:
        dev.keep_busy(runs[0], WARM_S)
    return [float(np.median(dev.time_passes(r, warmup=2, repeats=repeats, whole=True))) for r in runs]


def tune(
    conv: QConv2d, geo: ConvGeometry, in_layout: str, *, repeats: int = 5, force_measure: bool = False
) -> dict[str, Any]:
    """Measure and return the fastest {"method", "gemm"} for this conv and shape (cached)."""
    dev = conv.device
    key = shape_key(conv, geo, in_layout)
    hit = lookup(dev, key)
    if hit is not None and not (force_measure or FORCE_MEASURE):
        return hit
    if not dev.has_timestamps:
        raise RuntimeError(f"tuning needs GPU timestamps; {dev.name} has no timestamp-query feature")
    default_method = resolve_method(conv.method, geo, in_layout)
    methods = [default_method]
    if conv.method == "auto":
        # (the patch kernel reads a 1x1 conv's input as the GEMM does, with more work a word)
        methods += [m for m in valid_methods(geo, in_layout)
                    if m != default_method and not (m == "patch_4w4c" and geo.is_pointwise)]  # fmt: skip
    m_count = geo.m_blocks
    aligned = geo.groups == 1 or geo.C_out_per_group % 4 == 0
    # Unaligned groups: gemm_q8.wgsl only; no tiled candidate fits: the default config.
    cands: list[dict[str, Any] | None]
    if default_method == "patch_4w4c":  # (forced: the patch kernel's own configurations)
        cands = [*patch_candidates(dev, geo)] or [None]
    else:
        cands = [*(gemm_candidates(dev, geo, m_count) if aligned else [])] or [None]
    # Scratch input and output, made once for every candidate's passes.
    x = dev.buffer(4 * packed_words((geo.N, geo.C_in, geo.H, geo.W), in_layout))
    y = dev.buffer(4 * packed_words(geo.output_shape, "4W4C"))

    def passes(method: str, gemm: dict[str, Any] | None) -> list:
        config = GemmConfig.from_dict(gemm) if gemm else None
        return conv.candidate_passes(geo, method, in_layout, config, x, y)

    # Compile every candidate first, then time them back to back on a busy GPU.
    times = _time_all(dev, [passes(default_method, g) for g in cands], repeats)
    # The other methods with the default method's TOP_K fastest GEMM configurations (the best
    # tile for one method is not always the best for another: the implicit GEMM gathers A as it
    # goes; timing every candidate again would double the tuning), timed in one batch with the
    # default method's best, which is timed again there: the least of many noisy times would
    # otherwise be favoured.
    order = sorted(range(len(cands)), key=times.__getitem__)
    top = [cands[i] for i in order[:TOP_K]]
    # The patch kernel with its own configurations (a GEMM's are not its).
    wanted = [(default_method, top[0])] + [
        (m, g) for m in methods[1:] for g in (patch_candidates(dev, geo) if m == "patch_4w4c" else top)
    ]
    trials, runs = [], []
    for m, g in wanted:
        try:
            runs.append(passes(m, g))
        except ValueError:  # e.g. the patch kernel for a tensor over one binding
            continue
        trials.append((m, g))
    if len(trials) > 1:
        times2 = _time_all(dev, runs, repeats)
    else:
        times2 = [times[order[0]]]
    best_t = min(times2)
    best_method, best_gemm = trials[times2.index(best_t)]
    choice = {"method": best_method, "gemm": best_gemm, "time_s": best_t, "candidates": len(cands)}
    store(dev, key, choice)
    return choice
