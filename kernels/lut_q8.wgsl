// lut_q8.wgsl -- an elementwise function of an int8 tensor by table (PT2E float path: the host
// computes q_out = quantize(f(dequantize(q))) for all 256 int8 values q with the input's and the
// output's parameters: q8ta_wgpu.reference.lookup of INT8_VALUES; hardswish, relu, relu6, hardtanh,
// hardsigmoid, sigmoid, tanh, or a plain requantization).
// In:  `x`, int8 [N, C, H, W] packed in any layout (see layout.wgsl), described by `xd`;
//      `table`, the 256 outputs as 64 u32 words (see lut.wgsl).
// Out: `o`, every word of the packed output of the same shape described by `od` (any layout).
// Thread t writes exactly one output word, (n, h, c4, w) = decode of t over
// [N, H, C4, od.w_alloc] (layout.wgsl's word_coords): channels 4*c4..4*c4+3 of pixel (n, h, w),
// each the table's entry for the input's value. Slots past C, and whole words of widths >= W
// (4W4C's padded widths), hold od.zp (not the entry of xd.zp: f(0) need not be 0); input words
// are read only for w < W, so no input padding slot is read and nothing reads out of bounds.
// Exact: integer indexing only, no arithmetic on values (no overflow, nothing to round).
// #include "layout.wgsl"
// #include "lut.wgsl"

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> o: array<u32>;
@group(0) @binding(2) var<uniform> xd: TensorDesc;
@group(0) @binding(3) var<uniform> od: TensorDesc;
@group(0) @binding(4) var<storage, read> table: array<u32>;

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
    let y = lookup4(unpack4xI8(x[word_index(xd, n, c4, h, w)]));
    let c = vec4<u32>(c4 * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
    q = select(q, y, c < vec4<u32>(od.c));
  }
  o[word_index(od, n, c4, h, w)] = pack4xI8(q);
}
