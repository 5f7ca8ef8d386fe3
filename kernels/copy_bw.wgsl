// copy_bw.wgsl -- bandwidth anchor: dst[i] = src[i] over vec4<u32> (16 bytes per thread per
// step, grid-stride loop so any size runs with a fixed grid). Bytes moved = 2 * size (read +
// write). Used only by the benchmark, to rate im2col and packing against what a plain copy
// reaches on the same adapter.
// #include "layout.wgsl"

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let n = arrayLength(&dst);
  let stride = nwg.x * nwg.y * WG;
  for (var i = linear_id(gid, nwg, WG); i < n; i += stride) {
    dst[i] = src[i];
  }
}
