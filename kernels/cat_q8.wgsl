// cat_q8.wgsl -- one input of a channel concatenation (torch.cat(dim=1)) of int8 tensors, PT2E
// float path: the output's channels [c_off, c_off + C_in) = quantize(dequantize(x)) with the
// input's and the output's parameters (and a fused relu / relu6), as a table (lut.wgsl; the
// host's q8ta_wgpu.reference.lookup of INT8_VALUES), or the bytes as they are (p.copy = 1: equal
// parameters, no activation). A cat of K inputs is K dispatches, one per input, in input order.
// In:  `x`, int8 [N, C_in, H, W] packed in any layout (see layout.wgsl), described by `xd`;
//      `table` (see lut.wgsl); `p`: c_off, and c4_count = the output channel blocks that hold
//      channels [c_off, c_off + C_in), from block c_off / 4.
// Out: `o`, int8 [N, C, H, W] in any layout, described by `od`: the words of those channel
//      blocks, at every width of od.w_alloc.
// Thread t writes exactly one such word, (n, h, c4, w) = decode of t over
// [N, H, c4_count, od.w_alloc] (layout.wgsl's word_coords), c4 counted from c_off / 4. Its bytes:
// this input's channels, their value; channels >= C, and whole words of widths >= W (4W4C's
// padded widths), od.zp; the other bytes (channels of the inputs before and after, where c_off
// or c_off + C_in is not a multiple of 4) are read back from `o` and written unchanged: the
// dispatch of an earlier input wrote them, a later one overwrites them. So the dispatches of a
// cat run in input order, each seeing the one before complete (WebGPU orders the dispatches of
// a pass and makes each one's writes visible to the next), and no word is written by two
// threads of one dispatch. Input words are read only for w < W and channels < C_in.
// Exact: integer indexing only (no overflow, nothing to round).
// #include "layout.wgsl"
// #include "lut.wgsl"
// #include "struct_cat_params.wgsl"

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> o: array<u32>;
@group(0) @binding(2) var<uniform> xd: TensorDesc;
@group(0) @binding(3) var<uniform> od: TensorDesc;
@group(0) @binding(4) var<storage, read> table: array<u32>;
@group(0) @binding(5) var<uniform> p: CatParams;

// The input's value at channel ci of pixel (n, h, w); 0 for channels outside [0, C_in).
fn input_at(n: u32, h: u32, w: u32, ci: i32) -> i32 {
  if (ci < 0 || ci >= i32(xd.c)) { return 0; }
  let c = u32(ci);
  return byte_at(x[word_index(xd, n, c / 4u, h, w)], c % 4u);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  var slice = od;  // the words this dispatch writes: c4_count channel blocks
  slice.c = 4u * p.c4_count;
  let t = linear_id(gid, nwg, WG);
  if (t >= word_count(slice)) { return; }
  let at = word_coords(slice, t);
  let n = at.x;
  let c4 = p.c_off / 4u + at.y;
  let h = at.z;
  let w = at.w;
  let idx = word_index(od, n, c4, h, w);
  if (w >= od.w) {
    o[idx] = zp_word(od.zp);
    return;
  }
  let c = vec4<i32>(i32(c4 * 4u)) + vec4<i32>(0, 1, 2, 3);  // the bytes' output channels
  let ci = c - vec4<i32>(i32(p.c_off));  // their channels in this input
  let mine = (ci >= vec4<i32>(0)) & (ci < vec4<i32>(i32(xd.c)));
  let pad = c >= vec4<i32>(i32(od.c));
  var y = vec4<i32>(input_at(n, h, w, ci.x), input_at(n, h, w, ci.y), input_at(n, h, w, ci.z), input_at(n, h, w, ci.w));
  if (p.copy == 0u) { y = lookup4(y); }
  var other = vec4<i32>(od.zp);
  if (!all(mine | pad)) { other = select(unpack4xI8(o[idx]), other, pad); }
  o[idx] = pack4xI8(select(other, y, mine));
}
