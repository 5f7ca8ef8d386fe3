// unpack_nchw.wgsl -- packed layout (4W4C, 4C or 4C1W; see layout.wgsl) -> NCHW int8.
// In:  `src`, the packed tensor described by `d`.
// Out: `dst`, NCHW int8 bytes in u32 words; thread t writes word t = NCHW bytes 4t..4t+3
// (bytes past N*C*H*W are written as 0). Padding slots of the source are never read.
// #include "layout.wgsl"

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> d: TensorDesc;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = linear_id(gid, nwg, WG);
  let total = d.n * d.c * d.h * d.w;
  if (t >= (total + 3u) / 4u) { return; }
  var word = 0u;
  for (var j = 0u; j < 4u; j++) {
    let i = 4u * t + j;
    if (i < total) {
      let w = i % d.w;
      var r = i / d.w;
      let h = r % d.h;
      r = r / d.h;
      let c = r % d.c;
      let n = r / d.c;
      let v = src[word_index(d, n, c / 4u, h, w)];
      word |= ((v >> (8u * (c % 4u))) & 0xffu) << (8u * j);
    }
  }
  dst[t] = word;
}
