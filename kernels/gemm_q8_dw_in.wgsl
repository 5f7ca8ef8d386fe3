// gemm_q8_dw_in.wgsl -- the tiled int8 GEMM (kernels/gemm_tiled_body.wgsl, its contract) whose A
// is a depthwise conv's output, computed block by block as it is staged (DW_IN = true; the
// planner sets it): kernels/dw_in.wgsl, the depthwise conv's input bound as `a`, its records and
// weights as `dwx`, its requantization as `dq`, its geometry as `xd`, `cv`. The same bytes as the
// depthwise conv's pass followed by the 1x1 conv's GEMM (planner.DwInput).
// #include "gemm_tiled_body.wgsl"
// #include "dw_sums.wgsl"
// #include "dw_in.wgsl"

@group(0) @binding(12) var<storage, read> dwx: array<u32>;  // the depthwise conv's records, weights
@group(0) @binding(13) var<uniform> dq: GemmParams;  // the depthwise conv's requantization

@compute @workgroup_size(WG_M * WG_N)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  tiled_gemm(wid, nwg, li);
}
