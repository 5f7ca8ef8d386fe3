// gemm_bindings.wgsl -- included by the GEMM kernels (no entry point): the bindings every GEMM
// has, one declaration for gemm_q8.wgsl and the tiled GEMM (gemm_tiled_bindings.wgsl).
// In:  `a` (A in 4W4C blocks, or a 4W4C activation), `wts` (prepacked weights), `chan`
//      (epilogue records), `od`/`p` (output TensorDesc, GemmParams), `res`/`rd` (the residual
//      epilogue.wgsl adds when RESIDUAL; else a placeholder). Out: `o`, the output tensor.
@group(0) @binding(0) var<storage, read> a: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> wts: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> chan: array<Chan>;
@group(0) @binding(3) var<storage, read_write> o: array<u32>;
@group(0) @binding(4) var<uniform> od: TensorDesc;
@group(0) @binding(5) var<uniform> p: GemmParams;
@group(0) @binding(6) var<storage, read> res: array<u32>;
@group(0) @binding(7) var<uniform> rd: TensorDesc;
