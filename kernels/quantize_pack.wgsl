// quantize_pack.wgsl -- float32 NCHW -> int8 packed layout (4W4C, 4C or 4C1W; see layout.wgsl),
// exactly torch.ops.quantized_decomposed.quantize_per_tensor (int8, [-128, 127]).
// In:  `src`, the float32 NCHW tensor [N, C, H, W] (plain C order).
// Out: `dst`, every word of the packed tensor described by `d` (padding slots = zp = d.zp).
// Thread t writes exactly one output word, (n, h, c4, w) = decode of t over
// [N, H, C4, d.w_alloc] (as pack_nchw.wgsl): channels 4*c4..4*c4+3 of pixel (n, h, w); slots
// past C, and words of widths >= W (4W4C's padded widths), hold zp. Sources are read only for
// c < C and w < W (nothing past the tensor).
//   q = clamp(rint(x * inv_scale) + zp, -128, 127), inv_scale = float32(1.0 / scale) from the
//   host, rint: round half to even (torch.round), all in float32.
// Overflow: none: x * inv_scale may overflow to +-inf, and the rounded value is clamped to
// +-512 before the int conversion (saturates like torch's clamp). A NaN input gives an
// unspecified int8 value (WGSL's conversion of NaN is indeterminate; the int clamp bounds it).
// #include "layout.wgsl"
// #include "struct_quantize_params.wgsl"

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
  let rq = clamp(round(v * p.inv_scale), vec4<f32>(-512.0), vec4<f32>(512.0));
  let q = clamp(vec4<i32>(rq) + vec4<i32>(d.zp), vec4<i32>(-128), vec4<i32>(127));
  dst[word_index(d, n, c4, h, w)] = pack4xI8(select(vec4<i32>(d.zp), q, valid));
}
