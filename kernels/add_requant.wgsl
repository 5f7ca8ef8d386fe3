// add_requant.wgsl -- included by add_q8.wgsl and epilogue.wgsl (no entry point): the requantized
// quantized add, one definition, so that an add fused into a conv's epilogue and an add pass give
// the same bytes. The Q/DQ graph's add, exactly: v = a*M_a + b*M_b in output steps (a, b: the
// operands less their zero points, |a|, |b| <= 255; M_a = s_a/s_out, M_b = s_b/s_out: m_a, m_b in
// float32, fix_a * 2^-fix_e and fix_b * 2^-fix_e in fixed point); q = clamp(rint(v) + zp_out,
// -128, q_max) with rint exact, half to even (exact_round.wgsl: add_round in float32, add_exact
// where it cannot decide); relu: max(rint(v), 0); q_max: relu6's quantized 6, else 127.
// Overflow: none: |a*fix_a| + |b*fix_b| < 2^40.
// #include "exact_round.wgsl"

// lo, hi: where rint(v) matters once clamped (add_finish), as conv_round's.
fn add_round(a: vec4<i32>, b: vec4<i32>, m_a: f32, m_b: f32, relu: bool, zp_out: i32, q_max: i32) -> Rounded {
  let fa = vec4<f32>(a);
  let fb = vec4<f32>(b);
  // float32's error: 3 roundings of |a*M_a| + |b*M_b|; the fixed-point form's: 2^-30 of
  // (|a| + |b|)*max(M_a, M_b).
  let lo = select(-128.0 - f32(zp_out), 0.0, relu) - 1.0;
  let margin = ((abs(fa) + abs(fb)) * (m_a + m_b) + 1.0) * EXACT_REL;
  return round_fast(fa * m_a + fb * m_b, margin, lo, f32(q_max - zp_out) + 1.0);
}

fn add_exact(a: i32, b: i32, fix_a: u32, fix_b: u32, fix_e: u32) -> i32 {
  return round_shifted(add64(mul_wide(a, fix_a), mul_wide(b, fix_b)), fix_e, 0);
}

fn add_finish(r: vec4<i32>, relu: bool, zp_out: i32, q_max: i32) -> vec4<i32> {
  let act = select(r, max(r, vec4<i32>(0)), relu);
  return clamp(act + vec4<i32>(zp_out), vec4<i32>(-128), vec4<i32>(q_max));
}
