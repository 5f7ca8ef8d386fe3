// quantize_word.wgsl -- included (no entry point): float32 -> int8 quantization of 4 values into
// one packed word, torch.ops.quantized_decomposed.quantize_per_tensor (int8, [-128, 127]) rounded
// exactly, for quantize_pack.wgsl and the convs that quantize their float input as they load it
// (conv_patch_4w4c.wgsl's QUANT_IN): the same function, so the same bytes.
//   q = clamp(rint(x / scale) + zp, -128, 127), rint: round half to even of the exact quotient
//   (exact_round.wgsl: float32's x * inv_scale where it decides, inv_scale = float32(1 / scale);
//   where the quotient lies within its error of a half-integer, the sign of 2x - (2k + 1)*scale
//   in 64-bit integers from the two float32s' mantissas). torch's float32 x * inv_scale can round
//   such a value the other way (1 LSB).
// Overflow: none: x * inv_scale may overflow to +-inf, and the rounded value is clamped to
// +-512 before the int conversion (saturates like torch's clamp). A NaN input gives an
// unspecified int8 value (WGSL's conversion of NaN is indeterminate; the int clamp bounds it).
// #include "struct_quantize_params.wgsl"
// #include "exact_round.wgsl"

// rint(x / scale) given k = floor(x * inv_scale), x / scale within 0.25 of k + 0.5: scale =
// q.scale_m * 2^q.scale_e, x = mx * 2^ex (its float32 fields); the sign of 2x - (2k + 1)*scale
// decides (|t| <= 48 there: both sides are within a factor 4 of each other).
fn quantize_exact(x: f32, k: i32, q: QuantizeParams) -> i32 {
  let bits = bitcast<u32>(x);
  let field = i32((bits >> 23u) & 0xffu);
  var mx = i32(bits & 0x7fffffu);
  var ex = -149;  // a subnormal: mantissa * 2^-149
  if (field != 0) {
    mx = mx | 0x800000;
    ex = field - 150;
  }
  if ((bits >> 31u) != 0u) { mx = -mx; }
  let t = ex + 1 - q.scale_e;
  var a = mul_wide(mx, 1u);
  var b = mul_wide(2 * k + 1, q.scale_m);
  if (t >= 0) { a = shl64(a, u32(t)); } else { b = shl64(b, u32(-t)); }
  return round_by_sign(sign64(add64(a, neg64(b))), k);
}

// The word of the 4 values `v` quantized with zero point `zp` (byte j = v[j]'s); bytes where
// `valid` is false hold zp (channels past C, widths past W).
fn quantize_word(v: vec4<f32>, valid: vec4<bool>, zp: i32, q: QuantizeParams) -> u32 {
  let y = v * q.inv_scale;  // float32's error: 2 roundings, under 2^-23 of |y|
  let f = round_fast(y, abs(y) * EXACT_REL + EXACT_REL, -129.0 - f32(zp), 128.0 - f32(zp));
  var r = f.r;
  var near = near_bits(f.near);
  while (near != 0u) {  // rare: where float32 cannot decide (|y| < 260 there)
    let i = firstTrailingBit(near);
    near &= near - 1u;
    r[i] = quantize_exact(v[i], i32(floor(y[i])), q);
  }
  let qv = clamp(r + vec4<i32>(zp), vec4<i32>(-128), vec4<i32>(127));
  return pack4xI8(select(vec4<i32>(zp), qv, valid));
}
