// maxpool.wgsl -- max_pool2d of an int8 tensor (torch.nn.functional.max_pool2d's windows:
// kernel, stride, padding, dilation; ceil_mode is in the output size the host computes).
// In:  `x`, int8 [N, C, H, W] packed in any layout (see layout.wgsl), described by `xd`.
// Out: `o`, every word of the packed output [N, C, H_out, W_out] described by `od` (any layout);
// od.zp must equal xd.zp (max of int8 = max of the dequantized values: same scale and zero point).
// Thread t writes exactly one output word, (n, h, c4, w) = decode of t over
// [N, H_out, C4, od.w_alloc]: channels 4*c4..4*c4+3 of output pixel (n, h, w). Slots past C,
// and words of widths >= W_out (4W4C's padded widths), hold od.zp.
// Window of (h, w): rows h*stride_h - pad_h + i*dil_h (i < kh), likewise columns; taps outside
// [0, H) x [0, W) are skipped (padding never wins); the max starts at -128 (what PyTorch's -inf
// quantizes to, for a window with no tap inside; torch's argument rules make that impossible).
// Overflow: none (integer max); the host keeps every size and stride product below 2^31, so
// the i32 window coordinates are exact and only in-bounds words are read.
// #include "layout.wgsl"
// #include "struct_pool_params.wgsl"

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> o: array<u32>;
@group(0) @binding(2) var<uniform> xd: TensorDesc;
@group(0) @binding(3) var<uniform> od: TensorDesc;
@group(0) @binding(4) var<uniform> p: PoolParams;

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
    var m = vec4<i32>(-128);
    let h0 = i32(h * p.stride_h) - i32(p.pad_h);
    let w0 = i32(w * p.stride_w) - i32(p.pad_w);
    for (var i = 0u; i < p.kh; i++) {
      let ih = h0 + i32(i * p.dil_h);
      if (ih < 0 || ih >= i32(xd.h)) { continue; }
      for (var j = 0u; j < p.kw; j++) {
        let iw = w0 + i32(j * p.dil_w);
        if (iw < 0 || iw >= i32(xd.w)) { continue; }
        m = max(m, unpack4xI8(x[word_index(xd, n, c4, u32(ih), u32(iw))]));
      }
    }
    let c = vec4<u32>(c4 * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
    q = select(q, m, c < vec4<u32>(od.c));
  }
  o[word_index(od, n, c4, h, w)] = pack4xI8(q);
}
