// upsample_nearest_q8.wgsl -- nearest upsampling of an int8 tensor (torch's
// upsample_nearest2d / F.interpolate(mode="nearest")), PT2E float path: an index map, then the
// bytes as they are (p.copy = 1: equal input and output parameters, no activation) or through
// the table (lut.wgsl; the host's q8ta_wgpu.reference.lookup of INT8_VALUES: a requantization,
// or a fused relu / relu6).
// In:  `x`, int8 [N, C, H, W] packed in any layout (see layout.wgsl), described by `xd`;
//      `table` (see lut.wgsl); `p`: scale_h, scale_w (ResampleParams).
// Out: `o`, every word of the packed output [N, C, H_out, W_out] described by `od` (any layout).
// Source row of output row h, as torch's nearest_idx: h when H_out == H, h >> 1 when
// H_out == 2*H, else min(floor(f32(h) * p.scale_h), H - 1) (the host passes torch's float32
// scale: float32(1 / scale_factor) or float32(H) / H_out); columns alike. f32(h) is exact (the
// host keeps sizes below 2^24) and a product of two f32 is correctly rounded in WGSL, so the
// floor is torch's.
// Thread t writes exactly one output word, (n, h, c4, w) = decode of t over
// [N, H_out, C4, od.w_alloc] (layout.wgsl's word_coords): the input word of the same channel
// block at the source pixel (the four channels move together). Slots past C, and whole words of
// widths >= W_out (4W4C's padded widths), hold od.zp; input words are read only at w < W.
// Exact: integer indexing and one table lookup (no overflow, nothing to round but the index).
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

// torch's nearest source index of output index i along an axis of `size_in` -> `size_out`.
fn nearest(i: u32, size_in: u32, size_out: u32, scale: f32) -> u32 {
  if (size_out == size_in) { return i; }
  if (size_out == 2u * size_in) { return i >> 1u; }
  return min(u32(floor(f32(i) * scale)), size_in - 1u);
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
    let src = x[word_index(xd, n, c4, nearest(h, xd.h, od.h, p.scale_h), nearest(w, xd.w, od.w, p.scale_w))];
    var y = unpack4xI8(src);
    if (p.copy == 0u) { y = lookup4(y); }
    let c = vec4<u32>(c4 * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
    q = select(q, y, c < vec4<u32>(od.c));
  }
  o[word_index(od, n, c4, h, w)] = pack4xI8(q);
}
