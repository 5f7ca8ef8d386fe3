// quantize_pack.wgsl -- float32 NCHW -> int8 packed layout (4W4C, 4C or 4C1W; see layout.wgsl),
// torch.ops.quantized_decomposed.quantize_per_tensor (int8, [-128, 127]) rounded exactly
// (quantize_word.wgsl: the rounding, its exactness and overflow).
// In:  `src`, the float32 NCHW tensor [N, C, H, W] (plain C order).
// Out: `dst`, every word of the packed tensor described by `d` (padding slots = zp = d.zp).
// Thread t writes exactly one output word, (n, h, c4, w) = decode of t over
// [N, H, C4, d.w_alloc] (as pack_nchw.wgsl): channels 4*c4..4*c4+3 of pixel (n, h, w); slots
// past C, and words of widths >= W (4W4C's padded widths), hold zp. Sources are read only for
// c < C and w < W (nothing past the tensor).
// #include "layout.wgsl"
// #include "quantize_word.wgsl"

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> d: TensorDesc;
@group(0) @binding(3) var<uniform> p: QuantizeParams;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = linear_id(gid, nwg, WG);
  if (t >= word_count(d)) { return; }
  let at = word_coords(d, t);
  let n = at.x;
  let c4 = at.y;
  let h = at.z;
  let w = at.w;
  let c = vec4<u32>(c4 * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
  let valid = (c < vec4<u32>(d.c)) & vec4<bool>(w < d.w);
  var v = vec4<f32>(0.0);
  for (var j = 0u; j < 4u; j++) {
    if (valid[j]) {
      v[j] = src[((n * d.c + c[j]) * d.h + h) * d.w + w];
    }
  }
  dst[word_index(d, n, c4, h, w)] = quantize_word(v, valid, d.zp, p);
}
