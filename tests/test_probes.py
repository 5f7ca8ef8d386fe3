"""The experiment variants of bench/probes/gemm_variants.py compute exactly what the shipped tiled
GEMM computes (else their timings would mean nothing): every variant, with and without split-K,
and with the implicit gather where it takes it, on shapes with ragged tiles and groups."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

import q8ta_wgpu as q8
from q8ta_wgpu import reference
from q8ta_wgpu.configs import ConvConfig, make_case

from .helpers import assert_within_1lsb

# Probes are experiments run like the benchmark: slow (seconds a shape on lavapipe); CI runs them.
pytestmark = pytest.mark.slow

PROBE = Path(__file__).resolve().parent.parent / "bench" / "probes" / "gemm_variants.py"


def _probe():
    spec = importlib.util.spec_from_file_location("gemm_variants", PROBE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SHAPES = [
    ConvConfig("v1", 40, 24, 9, 13, padding=(1, 1)),  # 40 channels: a partial channel tile
    ConvConfig("v2", 16, 32, 7, 7, kernel=(3, 3), stride=(2, 2), padding=(1, 1), groups=2, n=2),
]


@pytest.mark.parametrize("cfg", SHAPES, ids=lambda c: c.name)
def test_variants_match_shipped_kernel(device, cfg):
    gv = _probe()
    table = gv.variants()
    case = make_case(cfg, seed=5)
    x, w, ws, b = case["args"]
    ref = reference.conv2d(x, w, ws, b, **case["kwargs"])

    def run(kernel, method, splits):
        conv = q8.QConv2d(w, ws, b, device=device, method=method, **case["kwargs"])
        conv.gemm_override = {
            "kernel": kernel,
            "constants": {"WG_M": 4, "WG_N": 4, "BK": 8},
            "splits": splits,
        }
        return conv(x)

    files = gv.installed(list(table))
    for method in ("im2col_4w4c", "implicit_4w4c"):
        for splits in (1, 2):
            shipped = run("gemm_q8_tiled.wgsl", method, splits)
            assert_within_1lsb(shipped, ref, f"{cfg.name} shipped {method} splits={splits}")
            for name, (_, _, implicit_ok) in table.items():
                if method == "implicit_4w4c" and not implicit_ok:
                    continue
                got = run(files[name], method, splits)
                nd = int(np.count_nonzero(got != shipped))
                assert nd == 0, f"{cfg.name} {name} {method} splits={splits}: {nd} outputs differ"


@pytest.mark.parametrize("cfg", SHAPES, ids=lambda c: c.name)
def test_shuffle_variants_match_shipped_kernel(device, cfg):
    """The subgroup shuffle variants made for this adapter's subgroup size (lavapipe: 8 lanes,
    NVIDIA: 32) compute what the shipped kernel does, with and without split-K; those made for
    another size leave their outputs 0 instead of computing wrong ones silently."""
    gv = _probe()
    assert device.has_subgroups, f"{device.name} offers no subgroups"
    case = make_case(cfg, seed=5)
    x, w, ws, b = case["args"]

    def run(kernel, wg_m, wg_n, splits):
        conv = q8.QConv2d(w, ws, b, device=device, method="im2col_4w4c", **case["kwargs"])
        conv.gemm_override = {
            "kernel": kernel,
            "constants": {"WG_M": wg_m, "WG_N": wg_n, "BK": 8},
            "splits": splits,
        }
        return conv(x)

    table = gv.shuffle_variants()
    files = gv.installed(list(table))
    differ: dict[int, list[int]] = {}  # subgroup size -> outputs differing, per variant and split
    for splits in (1, 2):
        shipped = run("gemm_q8_tiled.wgsl", 4, 4, splits)
        for name, (_, _, wg_n, sg) in table.items():
            got = run(files[name], 64 // wg_n, wg_n, splits)  # 64 threads: whole subgroups
            differ.setdefault(sg, []).append(int(np.count_nonzero(got != shipped)))
    exact = [sg for sg, nds in differ.items() if not any(nds)]
    assert len(exact) == 1, f"{cfg.name}: outputs differing by subgroup size {differ}"
    assert all(all(nds) for sg, nds in differ.items() if sg != exact[0]), differ


def test_installed_registers_without_touching_the_kernels(device):
    """Variants reach the device through the shader library and the tiled-kernel registry; the
    kernel files stay as shipped, and installing twice is harmless."""
    gv = _probe()
    from q8ta_wgpu import planner
    from q8ta_wgpu.shaders import LIBRARY, kernels_dir

    before = sorted(p.name for p in kernels_dir().glob("*.wgsl"))
    files = gv.installed(["smem_ks2"])
    assert gv.installed(["smem_ks2"]) == files
    assert files["smem_ks2"] in planner.TILED_KERNELS
    assert "var<workgroup>" in LIBRARY.source(files["smem_ks2"])
    assert device.pipeline(files["smem_ks2"], {"WG_M": 4, "WG_N": 4, "BK": 8}) is not None
    assert sorted(p.name for p in kernels_dir().glob("*.wgsl")) == before
    with pytest.raises(ValueError, match="already registered"):
        planner.register_tiled_kernel(
            files["smem_ks2"], planner.TILED_KERNELS["gemm_q8_tiled.wgsl"]._replace(loads=1)
        )


def _declared_workgroup_bytes(src: str, wg_m: int, wg_n: int, bk: int, tm: int = 2, tn: int = 2) -> int:
    """Bytes of the vec4 `var<workgroup>` arrays a kernel declares, their sizes evaluated."""
    consts = {n: int(v) for n, v in re.findall(r"const (\w+): u32 = (\d+)u;", src)}
    consts.update({"WG_M": wg_m, "WG_N": wg_n, "BK": bk, "TM": tm, "TN": tn})
    total = 0
    for expr in re.findall(r"var<workgroup> \w+: array<vec4<[iu]32>, ([^>]+)>;", src):
        expr = re.sub(r"(\d+)u\b", r"\1", expr)
        total += 16 * eval(expr, {}, dict(consts))  # noqa: S307 - arithmetic on the constants
    return total


def test_workgroup_bytes_match_the_kernels():
    """TiledKernel.workgroup_bytes, which the device-limit check uses, is what each kernel
    declares (the shipped kernel and every probe variant)."""
    from q8ta_wgpu import planner
    from q8ta_wgpu.shaders import LIBRARY

    gv = _probe()
    shipped = LIBRARY.raw("gemm_tiled_body.wgsl")
    kernels = {
        f"shipped {tm}x{tn}": (shipped, planner.tiled_kernel("gemm_q8_tiled.wgsl", {"TM": tm, "TN": tn}))
        for tm in (1, 2)
        for tn in (1, 2)
    }
    kernels.update({n: (src, k) for n, (src, k, _) in gv.variants().items()})
    kernels.update({n: (src, k) for n, (src, k, _, _) in gv.shuffle_variants().items()})
    for name, (src, k) in kernels.items():
        for wg_m, wg_n, bk in [(8, 8, 16), (16, 4, 8), (4, 16, 16), (32, 8, 8)]:
            got = k.workgroup_bytes(wg_m, wg_n, bk)
            want = _declared_workgroup_bytes(src, wg_m, wg_n, bk, k.tm, k.tn)
            assert got == want, (name, wg_m, wg_n, bk)
    assert kernels["smem_ks4"][1].workgroup_bytes(8, 8, 16) > kernels["shipped 2x2"][1].workgroup_bytes(
        8, 8, 16
    )
