// quantize_pack.wgsl -- float32 NCHW -> int8 packed layout (4W4C, 4C or 4C1W; see layout.wgsl),
// torch.ops.quantized_decomposed.quantize_per_tensor (int8, [-128, 127]) rounded exactly.
// In:  `src`, the float32 NCHW tensor [N, C, H, W] (plain C order).
// Out: `dst`, every word of the packed tensor described by `d` (padding slots = zp = d.zp).
// Thread t writes exactly one output word, (n, h, c4, w) = decode of t over
// [N, H, C4, d.w_alloc] (as pack_nchw.wgsl): channels 4*c4..4*c4+3 of pixel (n, h, w); slots
// past C, and words of widths >= W (4W4C's padded widths), hold zp. Sources are read only for
// c < C and w < W (nothing past the tensor).
//   q = clamp(rint(x / scale) + zp, -128, 127), rint: round half to even of the exact quotient
//   (exact_round.wgsl: float32's x * inv_scale where it decides, inv_scale = float32(1 / scale);
//   where the quotient lies within its error of a half-integer, the sign of 2x - (2k + 1)*scale
//   in 64-bit integers from the two float32s' mantissas). torch's float32 x * inv_scale can round
//   such a value the other way (1 LSB).
// Overflow: none: x * inv_scale may overflow to +-inf, and the rounded value is clamped to
// +-512 before the int conversion (saturates like torch's clamp). A NaN input gives an
// unspecified int8 value (WGSL's conversion of NaN is indeterminate; the int clamp bounds it).
// #include "layout.wgsl"
// #include "struct_quantize_params.wgsl"
// #include "exact_round.wgsl"

// rint(x / scale) given k = floor(x * inv_scale), x / scale within 0.25 of k + 0.5: scale =
// p.scale_m * 2^p.scale_e, x = mx * 2^ex (its float32 fields); the sign of 2x - (2k + 1)*scale
// decides (|t| <= 48 there: both sides are within a factor 4 of each other).
fn quantize_exact(x: f32, k: i32) -> i32 {
  let bits = bitcast<u32>(x);
  let field = i32((bits >> 23u) & 0xffu);
  var mx = i32(bits & 0x7fffffu);
  var ex = -149;  // a subnormal: mantissa * 2^-149
  if (field != 0) {
    mx = mx | 0x800000;
    ex = field - 150;
  }
  if ((bits >> 31u) != 0u) { mx = -mx; }
  let t = ex + 1 - p.scale_e;
  var a = mul_wide(mx, 1u);
  var b = mul_wide(2 * k + 1, p.scale_m);
  if (t >= 0) { a = shl64(a, u32(t)); } else { b = shl64(b, u32(-t)); }
  return round_by_sign(sign64(add64(a, neg64(b))), k);
}

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
  let y = v * p.inv_scale;  // float32's error: 2 roundings, under 2^-23 of |y|
  let f = round_fast(y, abs(y) * EXACT_REL + EXACT_REL, -129.0 - f32(d.zp), 128.0 - f32(d.zp));
  var r = f.r;
  var near = near_bits(f.near);
  while (near != 0u) {  // rare: where float32 cannot decide (|y| < 260 there)
    let i = firstTrailingBit(near);
    near &= near - 1u;
    r[i] = quantize_exact(v[i], i32(floor(y[i])));
  }
  let q = clamp(r + vec4<i32>(d.zp), vec4<i32>(-128), vec4<i32>(127));
  dst[word_index(d, n, c4, h, w)] = pack4xI8(select(vec4<i32>(d.zp), q, valid));
}
