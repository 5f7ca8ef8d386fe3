// add_requant.wgsl -- included by add_q8.wgsl and epilogue.wgsl (no entry point): the requantized
// quantized add, one definition, so that an add fused into a conv's epilogue and an add pass give
// the same bytes. The Q/DQ graph's add, exactly: v = a*M_a + b*M_b in output steps (a, b: the
// operands less their zero points, |a|, |b| <= 255; M_a = s_a/s_out, M_b = s_b/s_out: m_a, m_b in
// float32, fix_a * 2^-fix_e and fix_b * 2^-fix_e in fixed point); q = clamp(rint(v) + zp_out,
// -128, q_max) with rint exact, half to even (exact_round.wgsl); relu: max(rint(v), 0);
// q_max: relu6's quantized 6, else 127.
// Overflow: none: |a*fix_a| + |b*fix_b| < 2^40; the float32 rounded value is clamped to +-512
// before the int conversion.
// #include "exact_round.wgsl"

fn add_exact(a: i32, b: i32, fix_a: u32, fix_b: u32, fix_e: u32) -> i32 {
  return round_shifted(add64(mul_wide(a, fix_a), mul_wide(b, fix_b)), fix_e, 0);
}

fn add_requant(a: vec4<i32>, b: vec4<i32>, m_a: f32, m_b: f32, fix_a: u32, fix_b: u32, fix_e: u32, relu: bool,
               zp_out: i32, q_max: i32) -> vec4<i32> {
  let fa = vec4<f32>(a);
  let fb = vec4<f32>(b);
  let v = fa * m_a + fb * m_b;
  var r = vec4<i32>(clamp(round(v), vec4<f32>(-512.0), vec4<f32>(512.0)));
  // float32's error: 3 roundings of |a*M_a| + |b*M_b|; the fixed-point form's: 2^-30 of
  // (|a| + |b|)*max(M_a, M_b).
  let margin = ((abs(fa) + abs(fb)) * (m_a + m_b) + 1.0) * EXACT_REL;
  let near = near_half(v, margin);
  if (any(near)) {
    r = select(r, vec4<i32>(add_exact(a.x, b.x, fix_a, fix_b, fix_e), add_exact(a.y, b.y, fix_a, fix_b, fix_e),
                            add_exact(a.z, b.z, fix_a, fix_b, fix_e), add_exact(a.w, b.w, fix_a, fix_b, fix_e)), near);
  }
  if (relu) { r = max(r, vec4<i32>(0)); }
  return clamp(r + vec4<i32>(zp_out), vec4<i32>(-128), vec4<i32>(q_max));
}
