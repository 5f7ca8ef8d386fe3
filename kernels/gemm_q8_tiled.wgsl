// gemm_q8_tiled.wgsl -- the tiled int8 GEMM: kernels/gemm_tiled_body.wgsl (its contract: A from
// memory, or with IMPLICIT gathered from the 4W4C input; split-K; the epilogue). DW_IN is never
// set for this file: its A block function is a stub, so the depthwise code (gemm_q8_dw_in.wgsl)
// is not compiled into every tiled GEMM (with it, lavapipe took 3.5x as long to create one).
// #include "gemm_tiled_body.wgsl"

fn dw_block(m: MPos, c4: u32) -> vec4<u32> {
  return vec4<u32>(0u);
}

@compute @workgroup_size(WG_M * WG_N)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  tiled_gemm(wid, nwg, li);
}
