// gemm_tiled_emit.wgsl -- included by gemm_q8_tiled.wgsl and the variants of
// bench/probes/gemm_variants.py (no entry point), after gemm_tiled_bindings.wgsl: the packed
// multiply-accumulate of a 4-row block (mac.wgsl) and the store of a finished 4x4 tile (to `o` through the
// epilogue's store_tile, or with PARTIAL to `part` at ((s*m_count + mb)*c4_out + c4)*4 + j, a
// vec4 over widths, for gemm_q8_splitk.wgsl). The includer declares PARTIAL.
// #include "mac.wgsl"

fn emit(mb: u32, c4: u32, s: u32, c4_end: u32, a0: vec4<i32>, a1: vec4<i32>, a2: vec4<i32>, a3: vec4<i32>) {
  if (mb >= p.m_count || c4 >= c4_end) { return; }
  if (PARTIAL) {
    let base = ((s * p.m_count + mb) * p.c4_out + c4) * 4u;
    part[base] = a0;
    part[base + 1u] = a1;
    part[base + 2u] = a2;
    part[base + 3u] = a3;
  } else {
    store_tile(mb, c4, a0, a1, a2, a3);
  }
}
