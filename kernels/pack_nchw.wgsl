// pack_nchw.wgsl -- NCHW int8 -> packed layout (4W4C, 4C or 4C1W; see layout.wgsl).
// In:  `src`, the NCHW int8 tensor as bytes in u32 words (plain C order, little-endian).
// Out: `dst`, every word of the packed tensor described by `d` (padding bytes = d.zp).
// Thread t writes exactly one output word, (n, h, c4, w) = decode of t over
// [N, H, C4, w_alloc]; with w_alloc = W4*4 in 4W4C, the padded widths' words are written too.
// Bytes: one u32 load per source byte (unaligned NCHW); no overflow (pure data movement).
// #include "layout.wgsl"

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> d: TensorDesc;

fn src_byte(i: u32) -> u32 {
  return (src[i >> 2u] >> (8u * (i & 3u))) & 0xffu;
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = linear_id(gid, nwg, WG);
  if (t >= word_count(d)) { return; }
  let at = word_coords(d, t);
  let n = at.x;
  let c4 = at.y;
  let h = at.z;
  let w = at.w;
  var word = 0u;
  for (var j = 0u; j < 4u; j++) {
    let c = c4 * 4u + j;
    var b = u32(d.zp) & 0xffu;
    if (c < d.c && w < d.w) {
      b = src_byte(((n * d.c + c) * d.h + h) * d.w + w);
    }
    word |= b << (8u * j);
  }
  dst[word_index(d, n, c4, h, w)] = word;
}
