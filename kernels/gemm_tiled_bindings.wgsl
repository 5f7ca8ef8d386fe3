// gemm_tiled_bindings.wgsl -- included by gemm_q8_tiled.wgsl and the variants of
// bench/probes/gemm_variants.py (no entry point): the tiled GEMM's bindings, one declaration for
// the shipped kernel and its experiments, and the word load from A.
// In:  `a` (A in 4W4C blocks, or the 4W4C input when IMPLICIT), `wts` (prepacked weights),
//      `chan` (epilogue records), `od`/`p` (output TensorDesc, GemmParams), `res`/`rd` (the
//      residual, see epilogue.wgsl), `xd`/`cv` (the input's TensorDesc and ConvParams, read by
//      the implicit gather).
// Out: `o` (the output tensor) or, with PARTIAL, `part` (split-K partial sums).
// #include "gemm_bindings.wgsl"
@group(0) @binding(8) var<storage, read_write> part: array<vec4<i32>>;
@group(0) @binding(9) var<uniform> xd: TensorDesc;  // the input (IMPLICIT)
@group(0) @binding(10) var<uniform> cv: ConvParams;  // the conv geometry (IMPLICIT)

fn load_word(i: u32) -> u32 {
  return a[i / 4u][i % 4u];
}
