// zero_insert_4w4c.wgsl -- the input of a transposed conv as a stride-1 conv reads it
// (q8ta_wgpu/resample.py's QConvTranspose2d): x with stride - 1 holes between its rows and
// columns and a border around it, holes and border filled with the zero point (real 0).
// In:  `x`, int8 [N, C, H, W] packed in any layout (see layout.wgsl), described by `xd`;
//      `p`: stride_h, stride_w, off_h, off_w (ResampleParams).
// Out: `o`, every word of the packed scratch [N, C, H_s, W_s] described by `od` (4W4C from the
//      host, any layout works), od.zp == xd.zp: scratch row r holds input row (r - off_h) /
//      stride_h where r - off_h is a multiple of stride_h in [0, (H - 1)*stride_h], else the zero
//      point; columns alike. off_h = dilation*(KH - 1) - padding (negative: the padding crops
//      rows); H_s = H_out + dilation*(KH - 1), which holds output_padding's extra rows.
// Thread t writes exactly one scratch word, (n, h, c4, w) = decode of t over
// [N, H_s, C4, od.w_alloc] (layout.wgsl's word_coords): the input word of the same channel
// block (its padding slots past C hold xd.zp == od.zp) or a word of zero points; whole words
// of widths >= W_s (4W4C's padded widths) hold od.zp. Input words are read only in bounds.
// Exact: integer indexing only; the host keeps H_s, W_s, strides and offsets below 2^31 in i32.
// #include "layout.wgsl"
// #include "struct_resample_params.wgsl"

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> o: array<u32>;
@group(0) @binding(2) var<uniform> xd: TensorDesc;
@group(0) @binding(3) var<uniform> od: TensorDesc;
@group(0) @binding(4) var<uniform> p: ResampleParams;

// The input index that scratch index i holds along an axis, or -1 for a hole or the border.
fn source(i: u32, off: i32, stride: u32, size_in: u32) -> i32 {
  let d = i32(i) - off;
  if (d < 0 || u32(d) % stride != 0u) { return -1; }
  let s = u32(d) / stride;
  return select(-1, i32(s), s < size_in);
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
  var word = zp_word(od.zp);
  let ih = source(h, p.off_h, p.stride_h, xd.h);
  let iw = source(w, p.off_w, p.stride_w, xd.w);
  if (w < od.w && ih >= 0 && iw >= 0) {
    word = x[word_index(xd, n, c4, u32(ih), u32(iw))];
  }
  o[word_index(od, n, c4, h, w)] = word;
}
