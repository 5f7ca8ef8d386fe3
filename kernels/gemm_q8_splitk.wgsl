// gemm_q8_splitk.wgsl -- split-K reduction + requantize epilogue for gemm_q8_tiled.wgsl (where its slices
// are not reduced inside it: REDUCE, planner.reduce_in_gemm_pays).
// In:  `part`, int32 partial sums of `p.splits` K slices: vec4 (over 4 widths) at
//      ((s*m_count + mb)*c4_out + c4)*4 + j for channel 4*c4+j.
// Out: thread t = mb*c4_out + c4 sums the slices in order s = 0..splits-1 (integer: exact, the
//      order does not matter) and writes the requantized tile (epilogue.wgsl store_tile).
// #include "layout.wgsl"
// #include "epilogue.wgsl"

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> part: array<vec4<i32>>;
@group(0) @binding(1) var<storage, read> chan: array<Chan>;
@group(0) @binding(2) var<storage, read_write> o: array<u32>;
@group(0) @binding(3) var<uniform> od: TensorDesc;
@group(0) @binding(4) var<uniform> p: GemmParams;
@group(0) @binding(5) var<storage, read> res: array<u32>;  // the residual (epilogue.wgsl)
@group(0) @binding(6) var<uniform> rd: TensorDesc;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = linear_id(gid, nwg, WG);
  if (t >= p.m_count * p.c4_out) { return; }
  var a0 = vec4<i32>(0);
  var a1 = vec4<i32>(0);
  var a2 = vec4<i32>(0);
  var a3 = vec4<i32>(0);
  for (var s = 0u; s < p.splits; s++) {
    let base = (s * p.m_count * p.c4_out + t) * 4u;
    a0 += part[base];
    a1 += part[base + 1u];
    a2 += part[base + 2u];
    a3 += part[base + 3u];
  }
  store_tile(t / p.c4_out, t % p.c4_out, a0, a1, a2, a3);
}
