// im2col_generic.wgsl -- layout-agnostic im2col (any C_in, groups, stride, padding, dilation, N).
// In:  `src`, the input tensor in any packed layout, addressed through `d` (layout.wgsl); it may
//      be a window of the input's rows (d.base = its first word), big inputs are bound so.
// Out: `dst`, the im2col matrix A as 4W4C blocks (conv_params.wgsl); block t of this dispatch =
//      m-block mb_base + t / k4, k-block t % k4. Thread t writes exactly block t (16 bytes).
// Reads one int8 at a time (one u32 load per byte). Taps outside the input, rows past W_out
// and padding columns hold the input zero point d.zp (so they add exactly 0 after the GEMM's
// zero-point correction). Pure data movement: no overflow.
// #include "layout.wgsl"
// #include "conv_params.wgsl"

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;
@group(0) @binding(2) var<uniform> d: TensorDesc;
@group(0) @binding(3) var<uniform> p: ConvParams;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = linear_id(gid, nwg, WG);
  if (t >= p.m_count * p.k4) { return; }
  let k4 = t % p.k4;
  let mb = p.mb_base + t / p.k4;
  let w4 = mb % p.w4_out;
  let row = mb / p.w4_out;
  let h = row % p.h_out;
  let n = row / p.h_out;
  let zpb = u32(d.zp) & 0xffu;
  var blk = vec4<u32>(0u);
  for (var j = 0u; j < 4u; j++) {
    let k = k4 * 4u + j;
    let g = k / p.k_pg;
    let kk = k % p.k_pg;
    let tap = kk / p.cin_pg;
    let c = g * p.cin_pg + kk % p.cin_pg;
    let hi = i32(h * p.stride_h + (tap / p.kw) * p.dil_h) - i32(p.pad_h);
    let row_ok = kk < p.taps_pg && hi >= 0 && hi < i32(d.h);
    for (var i = 0u; i < 4u; i++) {
      let w = w4 * 4u + i;
      let wi = i32(w * p.stride_w + (tap % p.kw) * p.dil_w) - i32(p.pad_w);
      var b = zpb;
      if (row_ok && w < p.w_out && wi >= 0 && wi < i32(d.w)) {
        b = (src[word_index(d, n, c / 4u, u32(hi), u32(wi))] >> (8u * (c % 4u))) & 0xffu;
      }
      blk[i] |= b << (8u * j);
    }
  }
  dst[t] = blk;
}
