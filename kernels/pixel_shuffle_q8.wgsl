// pixel_shuffle_q8.wgsl -- pixel_shuffle / pixel_unshuffle of an int8 tensor with factor r
// (torch.nn.functional.pixel_shuffle / pixel_unshuffle), PT2E float path: an index map, then the
// bytes as they are (p.copy = 1) or through the table (lut.wgsl: a requantization, or a fused
// relu / relu6), as upsample_nearest_q8.wgsl.
// In:  `x`, int8 [N, C, H, W] packed in any layout (see layout.wgsl), described by `xd`;
//      `table` (see lut.wgsl); `p`: factor r, unshuffle (ResampleParams).
// Out: `o`, every word of the packed output described by `od` (any layout):
//   shuffle   [N, C/r^2, H*r, W*r]: out(c, h, w) = x(c*r^2 + (h % r)*r + w % r, h / r, w / r);
//   unshuffle [N, C*r^2, H/r, W/r]: out(c, h, w) = x(c / r^2, h*r + (c % r^2) / r, w*r + c % r).
// Thread t writes exactly one output word, (n, h, c4, w) = decode of t over
// [N, H_out, C4, od.w_alloc] (layout.wgsl's word_coords): its four channels, each read from the
// input byte the map names (one input word per channel: the four come from different channel
// blocks). Slots past C_out, and whole words of widths >= W_out (4W4C's padded widths), hold
// od.zp; only input channels < C at w < W are read.
// Exact: integer indexing (sizes below 2^31: no overflow) and one table lookup.
// #include "layout.wgsl"
// #include "lut.wgsl"
// #include "struct_resample_params.wgsl"

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> o: array<u32>;
@group(0) @binding(2) var<uniform> xd: TensorDesc;
@group(0) @binding(3) var<uniform> od: TensorDesc;
@group(0) @binding(4) var<storage, read> table: array<u32>;
@group(0) @binding(5) var<uniform> p: ResampleParams;

// The input value the map sends to output channel c of output pixel (n, h, w); od.zp past C_out.
fn mapped(n: u32, c: u32, h: u32, w: u32) -> i32 {
  if (c >= od.c) { return od.zp; }
  let r = p.factor;
  var ci: u32;
  var hi: u32;
  var wi: u32;
  if (p.unshuffle == 0u) {
    ci = c * r * r + (h % r) * r + w % r;
    hi = h / r;
    wi = w / r;
  } else {
    let k = c % (r * r);
    ci = c / (r * r);
    hi = h * r + k / r;
    wi = w * r + k % r;
  }
  return byte_at(x[word_index(xd, n, ci / 4u, hi, wi)], ci % 4u);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = linear_id(gid, nwg, WG);
  if (t >= word_count(od)) { return; }
  let at = word_coords(od, t);
  let n = at.x;
  let c4 = at.y;
  let h = at.z;
  let w = at.w;
  var q = vec4<i32>(od.zp);
  if (w < od.w) {
    let c = c4 * 4u;
    var y = vec4<i32>(mapped(n, c, h, w), mapped(n, c + 1u, h, w), mapped(n, c + 2u, h, w), mapped(n, c + 3u, h, w));
    if (p.copy == 0u) { y = lookup4(y); }
    q = select(q, y, vec4<u32>(c) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(od.c));
  }
  o[word_index(od, n, c4, h, w)] = pack4xI8(q);
}
