"""GEMM kernel variants for experiments: generated WGSL variants of kernels/gemm_q8_tiled.wgsl,
timed against it on chosen shapes and configurations, each checked bit for bit against it.
Nothing here ships; the variants keep the tiled kernel's bindings and contract (PARTIAL split-K,
IMPLICIT gather, epilogue), so `conv.QConv2d` runs them through `gemm_override`.

Families (name: what differs from the shipped kernel):
- `smem`  : TM x TN blocks per thread (shipped: 2 x 2 = 8 rows x 8 channels), NBUF shared
            buffers (2 = one barrier per stage), FRAG (prefetch the next k-block's operands),
            KS k-groups per workgroup (KS > 1: the warps of one output tile split the stage's
            k-blocks between them and reduce in shared memory at the end, instead of split-K's
            partial sums in memory and a second pass), UNROLL (the k-block loop written out
            that many times through two alternating register sets; shipped: 2; 0 = one set
            rotated by copies, as the shipped kernel first did: every ablation keeps that).
- `direct`: no shared memory and no barriers: each thread reads its operands straight from
            memory (through L1), prefetching the next k-block.
- `shfl`  : as `direct`, but each operand is loaded once per subgroup and passed to the lanes
            that need it with `subgroupShuffle` (the device's `subgroup` feature); made for one
            subgroup size and WG_N each (`SHUFFLE_VARIANTS`), outputs 0 where they do not match.

Run on a GPU (the H100 figures in bench/results/archive/2026-11-24_analysis_H100.md came from this):
    python bench/probes/gemm_variants.py --variants smem_ks2,direct22 \\
        --shapes spec16,r50.l4.c2@n8 --configs '[[8,8,16,8],[16,4,8,2]]'
    python bench/probes/gemm_variants.py --variants direct22,shfl11_n8_sg32,shfl22_n8_sg32 \\
        --shapes r50.l3.c1@n8 --configs '[[8,8,8,1,1,1],[8,8,8,1],[16,8,8,1]]'
Each config is [WG_M, WG_N, BK, splits], or [WG_M, WG_N, BK, splits, TM, TN] for the shipped
kernel's blocks per thread (variants have their own), optionally then how the slices are reduced
("gemm", "pass"; default "auto"); a variant skips configs it cannot take. A shape is a
config name, or "gemmMxNxK" for a pointwise conv with that GEMM.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from q8ta_wgpu.planner import TiledKernel

HEAD = """// #include "layout.wgsl"
// #include "epilogue.wgsl"
// #include "conv_params.wgsl"
// #include "gather_4w4c.wgsl"
// #include "dot4.wgsl"
override WG_M: u32 = 16u;
override WG_N: u32 = 16u;
override BK: u32 = 8u;
override PARTIAL: bool = false;
override IMPLICIT: bool = false;
// #include "gemm_tiled_bindings.wgsl"
// #include "gemm_tiled_emit.wgsl"
"""

SETUP = """  let BM = {TM}u * WG_M;
  let BN = {TN}u * WG_N;
  let NT = WG_M * WG_N;
  let groups = p.c_out / p.cout_pg;
  let c4_pg = select(p.c4_out, p.cout_pg / 4u, groups > 1u);
  let g = wid.z % groups;
  let s = wid.z / groups;
  let c4_lo = g * c4_pg + wid.x * BN;
  let c4_end = min((g + 1u) * c4_pg, p.c4_out);
  let mb_lo = wid.y * BM;
  let k_lo = s * p.kspan;
  let k_end = min(k_lo + p.kspan, p.k4_pg);
  let a_col = (p.g_base + g) * p.k4_pg;
  let kg = li / NT;  // k-group (KS > 1)
  let lt = li % NT;
  let tx = lt % WG_N;
  let ty = lt / WG_N;
"""


def _accs(tm: int, tn: int) -> list[tuple[int, int, int]]:
    return [(i, j, c) for i in range(tm) for j in range(tn) for c in range(4)]


def _emit_all(tm: int, tn: int) -> list[str]:
    return [
        f"  emit(mb_lo + ty + {i}u * WG_M, c4_lo + tx + {j}u * WG_N, s, c4_end, "
        + ", ".join(f"c{i}{j}{c}" for c in range(4))
        + ");"
        for i in range(tm)
        for j in range(tn)
    ]


def smem_variant(
    tm: int = 2,
    tn: int = 2,
    nbuf: int = 1,
    frag: bool = True,
    nl: int = 4,
    ks: int = 1,
    ablate: str = "",
    scalar: bool = False,
    unroll: int = 0,
) -> str:
    """The shared-memory tiled kernel, parametrized (tm = tn = 2, nbuf = 1, frag, ks = 1,
    unroll = 2 is the shipped kernel's structure). `ablate` (timing only: the results are wrong) leaves parts out,
    to see what each costs: "global" loads only the first stage from memory, "lds" reads the
    shared operands once a stage (then varies them in registers), "barrier" drops the barriers,
    "emit" writes no results (nor split-K partial sums).
    `scalar`: 64 scalar accumulators, each updated as `dot4I8Packed(x, w) + c` (the peak
    kernel's form), instead of 16 vec4 accumulators updated by `mac`.
    `unroll` (even, dividing BK; with frag): the k-block loop written out `unroll` times, the
    prefetched operands alternating between two register sets, so no register is copied."""
    out = [
        f"// variant smem tm={tm} tn={tn} nbuf={nbuf} frag={frag} nl={nl} ks={ks} ablate={ablate} unroll={unroll}",
        HEAD,
    ]
    w = out.append
    w(f"const KS: u32 = {ks}u;")
    w(f"var<workgroup> As: array<vec4<u32>, KS * {nbuf}u * BK * ({tm}u * WG_M + 1u)>;")
    w(f"var<workgroup> Bs: array<vec4<u32>, KS * {nbuf}u * BK * ({tn}u * WG_N + 1u)>;")
    if ks > 1:  # one 4x4 accumulator block per thread of each k-group past the first
        w("var<workgroup> Red: array<vec4<i32>, (KS - 1u) * WG_M * WG_N * 4u>;")
    w("""var<private> t_mb_lo: u32;
var<private> t_c4_lo: u32;
var<private> t_c4_end: u32;
var<private> t_a_col: u32;
var<private> t_k_end: u32;
struct ASlot { ok: u32, kk: u32, mb: u32, }""")
    w(f"""fn a_slot(e: u32) -> ASlot {{
  var sl: ASlot;
  sl.mb = t_mb_lo + e / BK;
  sl.kk = e % BK;
  sl.ok = select(0u, 1u, e < BK * {tm}u * WG_M && sl.mb < p.m_count);
  return sl;
}}
fn load_a(sl: ASlot, k0: u32) -> vec4<u32> {{
  let k = k0 + sl.kk;
  if (sl.ok == 0u || k >= t_k_end) {{ return vec4<u32>(0u); }}
  if (!IMPLICIT) {{ return a[sl.mb * p.k4 + t_a_col + k]; }}
  return gather_4w4c(xd, cv, p.mb_base + sl.mb, t_a_col + k);
}}
fn load_b(e: u32, k0: u32) -> vec4<u32> {{
  let c4 = t_c4_lo + e / BK;
  let k = k0 + e % BK;
  if (e < BK * {tn}u * WG_N && c4 < t_c4_end && k < t_k_end) {{ return wts[c4 * p.k4_pg + k]; }}
  return vec4<u32>(0u);
}}""")
    w("@compute @workgroup_size(WG_M * WG_N * KS)")
    w("fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {")
    w(SETUP.format(TM=tm, TN=tn))
    w("""  let SA = BM + 1u;
  let SB = BN + 1u;
  t_mb_lo = mb_lo;
  t_c4_lo = c4_lo;
  t_c4_end = c4_end;
  t_a_col = a_col;
  t_k_end = k_end;
  let NA = (BK * BM + NT - 1u) / NT;
  let NB = (BK * BN + NT - 1u) / NT;""")
    for r in range(nl):
        w(f"  let sa{r} = a_slot(lt + {r}u * NT);")
    accs = _accs(tm, tn)
    for i, j, c in accs:
        if scalar:
            w(f"  var c{i}{j}{c}x = 0; var c{i}{j}{c}y = 0; var c{i}{j}{c}z = 0; var c{i}{j}{c}w = 0;")
        else:
            w(f"  var c{i}{j}{c} = vec4<i32>(0);")
    for r in range(nl):
        w(f"  var ra{r} = vec4<u32>(0u);\n  var rb{r} = vec4<u32>(0u);")

    def loads(k: str) -> list[str]:
        return [f"if (NA > {r}u) {{ ra{r} = load_a(sa{r}, {k}); }}" for r in range(nl)] + [
            f"if (NB > {r}u) {{ rb{r} = load_b(lt + {r}u * NT, {k}); }}" for r in range(nl)
        ]

    def stores(buf: str) -> list[str]:
        res = [f"let sao = (kg * {nbuf}u + {buf}) * BK * SA;", f"let sbo = (kg * {nbuf}u + {buf}) * BK * SB;"]
        for r in range(nl):
            e = f"(lt + {r}u * NT)"
            res.append(f"if (NA > {r}u && {e} < BK * BM) {{ As[sao + ({e} % BK) * SA + {e} / BK] = ra{r}; }}")
        for r in range(nl):
            e = f"(lt + {r}u * NT)"
            res.append(f"if (NB > {r}u && {e} < BK * BN) {{ Bs[sbo + ({e} % BK) * SB + {e} / BK] = rb{r}; }}")
        return res

    def frag_loads(prefix: str, kexpr: str) -> list[str]:
        return [f"{prefix}x{i} = As[ao + ({kexpr}) * SA + ty + {i}u * WG_M];" for i in range(tm)] + [
            f"{prefix}w{j} = Bs[bo + ({kexpr}) * SB + tx + {j}u * WG_N];" for j in range(tn)
        ]

    # Round r: k-group kg takes the stage at k0 + kg*BK (KS stages a round).
    w("  let kstep = KS * BK;")
    w("  var kb = k_lo + kg * BK;")
    for line in loads("kb"):
        w("  " + line)
    if nbuf == 2:
        w("  {")
        for line in stores("0u"):
            w("    " + line)
        w("  }\n  workgroupBarrier();\n  var buf = 0u;")
    barrier = "" if "barrier" in ablate else "workgroupBarrier();"
    w("  for (var k0 = k_lo; k0 < k_end; k0 += kstep) {")
    w("    let kn = kb + kstep;")
    if nbuf == 1:
        w("    {")
        for line in stores("0u"):
            w("      " + line)
        w(f"    }}\n    {barrier}")
        w("    let ao = kg * BK * SA;\n    let bo = kg * BK * SB;")
    else:
        w("    let ao = (kg * 2u + buf) * BK * SA;\n    let bo = (kg * 2u + buf) * BK * SB;")
    w("    if (k0 + kstep < k_end) {")
    for line in [] if "global" in ablate else loads("kn"):
        w("      " + line)
    w("    }")
    if "lds" in ablate:  # operands read once a stage, then varied in registers (xor with kk)
        frag = False
        for line in frag_loads("let f", "0u"):
            w("    " + line)
    if frag:
        for line in frag_loads("var n", "0u"):
            w("    " + line)
    if unroll:
        if not frag or unroll % 2:
            raise ValueError("unroll needs frag and an even count")
        for i in range(tm):
            w(f"    var px{i} = nx{i};")
        for j in range(tn):
            w(f"    var pw{j} = nw{j};")
        w(f"    for (var kk = 0u; kk < BK; kk += {unroll}u) {{")
        for u in range(unroll):
            cur, nxt = ("p", "n") if u % 2 == 0 else ("n", "p")
            w(f"      let kq{u} = min(kk + {u + 1}u, BK - 1u);")
            for line in frag_loads(nxt, f"kq{u}"):
                w("      " + line)
            for i, j, c in accs:
                w(f"      c{i}{j}{c} = mac(c{i}{j}{c}, {cur}x{i}, {cur}w{j}[{c}]);")
        w("    }")
    else:
        w("    for (var kk = 0u; kk < BK; kk++) {")
    if unroll:
        pass
    elif frag:
        for i in range(tm):
            w(f"      let x{i} = nx{i};")
        for j in range(tn):
            w(f"      let w{j} = nw{j};")
        w("      let kq = min(kk + 1u, BK - 1u);")
        for line in frag_loads("n", "kq"):
            w("      " + line)
    elif "lds" in ablate:
        for i in range(tm):
            w(f"      let x{i} = fx{i} ^ vec4<u32>(kk);")
        for j in range(tn):
            w(f"      let w{j} = fw{j} ^ vec4<u32>(kk);")
    else:
        for line in frag_loads("let ", "kk"):
            w("      " + line)
    for i, j, c in [] if unroll else accs:
        if scalar:
            for r in "xyzw":
                w(f"      c{i}{j}{c}{r} = dot4I8Packed(x{i}.{r}, w{j}[{c}]) + c{i}{j}{c}{r};")
        else:
            w(f"      c{i}{j}{c} = mac(c{i}{j}{c}, x{i}, w{j}[{c}]);")
    if not unroll:
        w("    }")
    if nbuf == 2:
        w("    if (k0 + kstep < k_end) {")
        for line in stores("(1u - buf)"):
            w("      " + line)
        w("    }\n    workgroupBarrier();\n    buf = 1u - buf;")
    else:
        w(f"    {barrier}")
    w("    kb = kn;\n  }")
    if scalar:
        for i, j, c in accs:
            w(f"  var c{i}{j}{c} = vec4<i32>(c{i}{j}{c}x, c{i}{j}{c}y, c{i}{j}{c}z, c{i}{j}{c}w);")
    if ks > 1:  # block by block: k-groups 1.. park theirs, k-group 0 adds them up
        for i in range(tm):
            for j in range(tn):
                w("  if (kg > 0u) {")
                for c in range(4):
                    w(f"    Red[((kg - 1u) * NT + lt) * 4u + {c}u] = c{i}{j}{c};")
                w("  }\n  workgroupBarrier();\n  if (kg == 0u) {\n    for (var r = 1u; r < KS; r++) {")
                for c in range(4):
                    w(f"      c{i}{j}{c} += Red[((r - 1u) * NT + lt) * 4u + {c}u];")
                w("    }\n  }\n  workgroupBarrier();")
        w("  if (kg != 0u) { return; }")
    if "emit" in ablate:  # results kept live, but written (almost) never
        total = " + ".join(f"c{i}{j}{c}" for i, j, c in accs)
        w(f"  let total = {total};")
        w("  if (total.x + total.y + total.z + total.w != i32(p.m_count) + 0x7654321) { return; }")
    out += _emit_all(tm, tn)
    w("}")
    return "\n".join(out) + "\n"


def _rows_and_accumulators(w: Any, tm: int, tn: int) -> list[tuple[int, int, int]]:
    """Emit (through `w`) the thread's A row bases ar{i} and W row bases br{j} (rows past the
    end clamped: computed, not stored) and its zeroed accumulators; returns the accumulators."""
    for i in range(tm):
        w(f"  let ar{i} = min(mb_lo + ty + {i}u * WG_M, p.m_count - 1u) * p.k4 + a_col;")
    for j in range(tn):
        w(f"  let br{j} = min(c4_lo + tx + {j}u * WG_N, c4_end - 1u) * p.k4_pg;")
    accs = _accs(tm, tn)
    for i, j, c in accs:
        w(f"  var c{i}{j}{c} = vec4<i32>(0);")
    return accs


def direct_variant(tm: int = 2, tn: int = 2) -> str:
    """No shared memory, no barriers: operands read straight from memory (rows past the end
    clamped: computed, not stored). A-matrix only (IMPLICIT is not supported)."""
    out = [f"// variant direct tm={tm} tn={tn}", HEAD]
    w = out.append
    w("@compute @workgroup_size(WG_M * WG_N)")
    w("fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {")
    w(SETUP.format(TM=tm, TN=tn))
    # Keeps the gather bindings referenced (wgpu's auto layouts drop unused ones).
    w("  if (IMPLICIT && li == 0xffffffffu) { part[0] = vec4<i32>(gather_4w4c(xd, cv, 0u, 0u)); }")
    accs = _rows_and_accumulators(w, tm, tn)
    for i in range(tm):
        w(f"  var nx{i} = a[ar{i} + k_lo];")
    for j in range(tn):
        w(f"  var nw{j} = wts[br{j} + k_lo];")
    w("  for (var k = k_lo; k < k_end; k++) {")
    for i in range(tm):
        w(f"    let x{i} = nx{i};")
    for j in range(tn):
        w(f"    let w{j} = nw{j};")
    w("    let kq = min(k + 1u, k_end - 1u);")
    for i in range(tm):
        w(f"    nx{i} = a[ar{i} + kq];")
    for j in range(tn):
        w(f"    nw{j} = wts[br{j} + kq];")
    for i, j, c in accs:
        w(f"    c{i}{j}{c} = mac(c{i}{j}{c}, x{i}, w{j}[{c}]);")
    w("  }")
    out += _emit_all(tm, tn)
    w("}")
    return "\n".join(out) + "\n"


def shuffle_variant(tm: int, tn: int, wg_n: int, sg: int) -> str:
    """Like `direct` (no shared memory, no barriers), but each operand is loaded once per
    subgroup and handed to the lanes that need it by `subgroupShuffle`, for subgroups of `sg`
    lanes and WG_N = `wg_n` (fixed in the source: the register counts depend on them).

    A subgroup holds RS = sg / wg_n whole rows of the thread grid (ty) of wg_n lanes (tx). Per
    step of S = max(wg_n, RS) k-blocks, lane (r, c) loads k-blocks k0 + c (+ wg_n...) of its
    m-blocks' A rows, which every lane of row r needs, and k-blocks k0 + r (+ RS...) of its
    channel blocks' W rows, which every lane of column c needs; then for each k-block kk of the
    step, A comes from lane (r, kk % wg_n) and W from lane (kk % RS, c). So a k-block costs
    (tm + tn) vec4 shuffles (4 each) instead of shared-memory loads, and a step S / wg_n loads of
    A and S / RS of W per m-block and channel block instead of `direct`'s S each.
    The lanes must be the workgroup's consecutive invocations (li % sg); where the subgroup size
    or WG_N differ from the source's, every output is left 0, so the bit-for-bit check fails."""
    rs = sg // wg_n
    if rs < 1 or sg % wg_n:
        raise ValueError(f"subgroups of {sg} lanes do not hold whole rows of {wg_n} lanes")
    step = max(wg_n, rs)
    na, nw = step // wg_n, step // rs
    out = [f"// variant shuffle tm={tm} tn={tn} wg_n={wg_n} sg={sg}", HEAD]
    w = out.append
    w("@compute @workgroup_size(WG_M * WG_N)")
    w("fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32,")
    w("        @builtin(subgroup_invocation_id) sgid: u32, @builtin(subgroup_size) sgs: u32) {")
    w(SETUP.format(TM=tm, TN=tn))
    w("  if (IMPLICIT && li == 0xffffffffu) { part[0] = vec4<i32>(gather_4w4c(xd, cv, 0u, 0u)); }")
    w(f"  let fits = sgs == {sg}u && WG_N == {wg_n}u && sgid == li % {sg}u;")
    w(f"  let r = sgid / {wg_n}u;")
    w(f"  let c = sgid % {wg_n}u;")
    accs = _rows_and_accumulators(w, tm, tn)

    # A step's loads: lane (r, c) takes A k-blocks k0 + c + q*wg_n and W k-blocks k0 + r + q*RS
    # (0 past the slice's end), into registers named `prefix`a{i}_{q} and `prefix`w{j}_{q}.
    def step_loads(prefix: str, k0: str, indent: str, declare: bool) -> None:
        def guarded(dst: str, buf: str, row: str, k: str) -> None:
            head = f"{indent}{'var ' if declare else ''}{prefix}{dst} = select(vec4<u32>(0u), "
            w(f"{head}{buf}[{row} + min({k}, k_end - 1u)], {k} < k_end);")

        for i in range(tm):
            for q in range(na):
                guarded(f"a{i}_{q}", "a", f"ar{i}", f"{k0} + c + {q * wg_n}u")
        for j in range(tn):
            for q in range(nw):
                guarded(f"w{j}_{q}", "wts", f"br{j}", f"{k0} + r + {q * rs}u")

    step_loads("n", "k_lo", "  ", declare=True)
    w(f"  for (var k0 = k_lo; k0 < k_end; k0 += {step}u) {{")
    for i in range(tm):
        for q in range(na):
            w(f"    let ra{i}_{q} = na{i}_{q};")
    for j in range(tn):
        for q in range(nw):
            w(f"    let rw{j}_{q} = nw{j}_{q};")
    step_loads("n", f"k0 + {step}u", "    ", declare=False)
    for kk in range(step):
        for i in range(tm):
            w(f"    let x{i}_{kk} = subgroupShuffle(ra{i}_{kk // wg_n}, r * {wg_n}u + {kk % wg_n}u);")
        for j in range(tn):
            w(f"    let w{j}_{kk} = subgroupShuffle(rw{j}_{kk // rs}, {kk % rs}u * {wg_n}u + c);")
        for i, j, cc in accs:
            w(f"    c{i}{j}{cc} = mac(c{i}{j}{cc}, x{i}_{kk}, w{j}_{kk}[{cc}]);")
    w("  }")
    w("  if (!fits) {")
    for i, j, cc in accs:
        w(f"    c{i}{j}{cc} = vec4<i32>(0);")
    w("  }")
    out += _emit_all(tm, tn)
    w("}")
    return "\n".join(out) + "\n"


# Subgroup shuffle variants: name -> (tm, tn, WG_N, subgroup size). NVIDIA's subgroups have 32
# lanes, lavapipe's (256-bit LLVM) 8; each variant runs only where both match.
SHUFFLE_VARIANTS = {
    "shfl11_n8_sg32": (1, 1, 8, 32),
    "shfl22_n8_sg32": (2, 2, 8, 32),
    "shfl12_n16_sg32": (1, 2, 16, 32),
    "shfl22_n4_sg8": (2, 2, 4, 8),
    "shfl11_n8_sg8": (1, 1, 8, 8),
}


def shuffle_variants() -> dict[str, tuple[str, TiledKernel, int, int]]:
    """name -> (source, structure, WG_N, subgroup size) of the subgroup shuffle variants."""
    return {
        name: (shuffle_variant(tm, tn, wg_n, sg), TiledKernel(tm, tn, 64, buffers=0), wg_n, sg)
        for name, (tm, tn, wg_n, sg) in SHUFFLE_VARIANTS.items()
    }


# name -> (source, structure, takes IMPLICIT)
def variants() -> dict[str, tuple[str, TiledKernel, bool]]:
    return {
        "smem22": (smem_variant(), TiledKernel(2, 2, 4), True),
        "smem22_db": (smem_variant(nbuf=2), TiledKernel(2, 2, 4, buffers=2), True),
        "smem42_db": (smem_variant(tm=4, nbuf=2, frag=False, nl=8), TiledKernel(4, 2, 8, buffers=2), True),
        "smem12": (smem_variant(tm=1), TiledKernel(1, 2, 4), True),
        "smem11": (smem_variant(tm=1, tn=1), TiledKernel(1, 1, 4), True),
        "smem_ks2": (smem_variant(ks=2), TiledKernel(2, 2, 4, k_groups=2), True),
        "smem_ks4": (smem_variant(ks=4), TiledKernel(2, 2, 4, k_groups=4), True),
        "smem22_sc": (smem_variant(scalar=True), TiledKernel(2, 2, 4), True),
        "smem22_nofrag": (smem_variant(frag=False), TiledKernel(2, 2, 4), True),
        "smem22_u2": (smem_variant(unroll=2), TiledKernel(2, 2, 4, bk_multiple=2), True),
        "smem22_u8": (smem_variant(unroll=8), TiledKernel(2, 2, 4, bk_multiple=8), True),
        "smem12_u2": (smem_variant(tm=1, unroll=2), TiledKernel(1, 2, 4, bk_multiple=2), True),
        "smem12_u2_l8": (smem_variant(tm=1, unroll=2, nl=8), TiledKernel(1, 2, 8, bk_multiple=2), True),
        "smem12_db_u2": (
            smem_variant(tm=1, nbuf=2, unroll=2),
            TiledKernel(1, 2, 4, buffers=2, bk_multiple=2),
            True,
        ),
        "smem21_u2": (smem_variant(tn=1, unroll=2), TiledKernel(2, 1, 4, bk_multiple=2), True),
        "smem_ks2_u2": (smem_variant(ks=2, unroll=2), TiledKernel(2, 2, 4, k_groups=2, bk_multiple=2), True),
        "smem_ks4_u2": (smem_variant(ks=4, unroll=2), TiledKernel(2, 2, 4, k_groups=4, bk_multiple=2), True),
        "direct22": (direct_variant(), TiledKernel(2, 2, 64, buffers=0), False),
        "direct12": (direct_variant(tm=1), TiledKernel(1, 2, 64, buffers=0), False),
    }


# Timing-only variants (wrong results): the shipped structure with parts left out.
def ablations() -> dict[str, tuple[str, TiledKernel, bool]]:
    k = TiledKernel(2, 2, 4)
    return {
        f"abl_{'_'.join(parts)}": (smem_variant(ablate=",".join(parts)), k, True)
        for parts in (
            ["global"],
            ["lds"],
            ["barrier"],
            ["emit"],
            ["global", "barrier"],
            ["global", "lds", "barrier"],
            ["global", "lds", "barrier", "emit"],
        )
    }


def installed(names: list[str]) -> dict[str, str]:
    """Make the variants loadable as kernels `v_<name>.wgsl`: their sources registered with the
    shader library and their tile structures with the conv's tiled kernels (both idempotent).
    Returns {name: kernel name}."""
    from q8ta_wgpu import planner
    from q8ta_wgpu.shaders import LIBRARY

    table = {**variants(), **ablations()}
    table.update({n: (src, tiles, False) for n, (src, tiles, _, _) in shuffle_variants().items()})
    files = {}
    for n in names:
        src, tiles, _ = table[n]
        LIBRARY.register(f"v_{n}.wgsl", src)
        planner.register_tiled_kernel(f"v_{n}.wgsl", tiles)
        files[n] = f"v_{n}.wgsl"
    return files


def compare(dev: Any, cfg: Any, kernels: list[str], configs: list[list[int]], method: str, repeats: int = 15):
    """Yield (kernel, config, GEMM seconds, differing outputs vs the shipped kernel's first
    config, seconds of each GEMM pass) for every kernel x config the kernel can take, timed back
    to back on a busy GPU."""
    import q8ta_wgpu as q8
    from q8ta_wgpu import planner
    from q8ta_wgpu.configs import make_case

    case = make_case(cfg)
    fixed_wg_n = {f"v_{n}.wgsl": (wg_n, sg) for n, (_, _, wg_n, sg) in shuffle_variants().items()}
    x, w, ws, b = case["args"]
    conv = q8.QConv2d(w, ws, b, device=dev, method=method, **case["kwargs"])
    xt = q8.QTensor.from_numpy(
        x, case["kwargs"]["input_scale"], case["kwargs"]["input_zero_point"], device=dev
    )
    ref, jobs = None, []
    for kern in kernels:
        for wm, wn, bk, splits, *tile in configs:
            consts = {"WG_M": wm, "WG_N": wn, "BK": bk}
            reduce = "auto"
            if tile:  # the shipped kernel's blocks per thread, then how split-K slices are reduced
                consts.update(TM=tile[0], TN=tile[1])
                reduce = str(tile[2]) if len(tile) > 2 else reduce
            why = planner.tiled_config_error(planner.DeviceLimits.of(dev), consts, kern)
            if kern in fixed_wg_n and not why:
                wg_n_fixed, sg = fixed_wg_n[kern]
                if wn != wg_n_fixed or not dev.has_subgroups:
                    why = f"takes WG_N = {wg_n_fixed} and subgroups of {sg} lanes"
            if why:
                print(f"  skipped {kern} {[wm, wn, bk, splits, *tile]}: {why}", flush=True)
                continue
            conv.gemm_override = {"kernel": kern, "constants": consts, "splits": splits, "reduce": reduce}
            conv._plans.clear()
            try:
                _, passes, _ = conv.passes(xt)
            except ValueError as e:  # e.g. more K slices than k-blocks to split
                print(f"  skipped {kern} {[wm, wn, bk, splits, *tile]}: {e}", flush=True)
                continue
            y = conv(xt).numpy()
            ref = y if ref is None else ref
            jobs.append((kern, [wm, wn, bk, splits, *tile], passes, int(np.count_nonzero(y != ref))))
    if jobs:
        dev.keep_busy(jobs[0][2], 1.0)
    for kern, c, passes, nd in jobs:
        cols = [i for i, p in enumerate(passes) if p.label.startswith("gemm")]
        t = dev.time_passes(passes, warmup=2, repeats=repeats, warm_s=0.03)
        each = [float(np.median(t[:, i])) for i in cols]
        yield kern, c, float(np.median(t[:, cols].sum(axis=1))), nd, each


def gemm_shape(name: str) -> Any:
    """A pointwise conv with GEMM M x N x K, named "gemmMxNxK" (M a multiple of 8: 8 images
    of 1 x M/8 pixels; rows of 4W4C blocks past M/8 are padding, as in a real conv), or a linear
    layer of N outputs from K inputs at batch B, named "fcNxKxB" (B images of 1 x 1 pixel)."""
    from q8ta_wgpu.configs import ConvConfig

    if name.startswith("fc"):
        n, k, b = (int(v) for v in name.removeprefix("fc").split("x"))
        return ConvConfig(name, n, k, 1, 1, kernel=(1, 1), n=b)
    m, n, k = (int(v) for v in name.removeprefix("gemm").split("x"))
    if m % 8:
        raise ValueError(f"{name}: M must be a multiple of 8")
    return ConvConfig(name, n, k, 1, m // 8, kernel=(1, 1), n=8)


def main() -> None:
    import q8ta_wgpu as q8
    from q8ta_wgpu.bench import SUITES, dot4_peak

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="smem22_db,smem_ks2,direct22")
    ap.add_argument("--shapes", default="spec16,r50.l4.c2@n8")
    ap.add_argument("--configs", default="[[8,8,16,8],[16,4,8,2],[8,8,8,4],[16,8,16,4]]")
    ap.add_argument("--loop-bounding", action="store_true", help="compile with wgpu's loop bounding")
    args = ap.parse_args()
    names = [n for n in args.variants.split(",") if n]
    configs = json.loads(args.configs)
    by_name = {c.name: c for suite in SUITES.values() for c in suite}
    dev = q8.Device(loop_bounding=True) if args.loop_bounding else q8.default_device()
    peak = dot4_peak(dev)
    print(f"{dev.name}: dot4I8Packed peak {peak:.1f} TOPS", flush=True)
    files = installed(names)
    for sname in args.shapes.split(","):
        cfg = by_name[sname] if sname in by_name else gemm_shape(sname)
        geo = cfg.geometry()
        pw = geo.KH == geo.KW == 1 and geo.stride == (1, 1) and geo.padding == (0, 0)
        macs = geo.M * geo.K_per_group * (-(-geo.C_out_per_group // 4) * 4) * geo.groups
        t0 = time.time()
        kernels = ["gemm_q8_tiled.wgsl"] + [files[n] for n in names]
        for kern, c, t, nd, each in compare(dev, cfg, kernels, configs, "pointwise" if pw else "im2col_4w4c"):
            tops = 2 * macs / t / 1e12
            flag = "" if nd == 0 else f"  MISMATCH: {nd} outputs differ"
            split = " + ".join(f"{e * 1e6:.1f}" for e in each) if len(each) > 1 else ""
            print(f"{sname:16s} {kern:22s} {str(c):18s} {tops:6.1f} TOPS {100 * tops / peak:5.1f}%  "
                  f"{t * 1e6:7.1f} us {split}{flag}", flush=True)  # fmt: skip
        print(f"  ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
