// add_requant.wgsl -- included by add_q8.wgsl and epilogue.wgsl (no entry point): the requantized
// quantized add, one definition, so that an add fused into a conv's epilogue and an add pass give
// the same bytes. PT2E's float path in PyTorch's order: dequantize a, dequantize b, add, relu,
// quantize: y = a*s_a + b*s_b (a, b: the operands less their zero points, exact in f32);
// relu: max(y, 0); q = clamp(rint(y*inv_s_out) + zp_out, -128, q_max) (rint: half to even;
// q_max: relu6's quantized 6, else 127).
// Overflow: none (the rounded value is clamped to +-512 before the int conversion, so a huge or
// infinite y stays defined). A compiler may contract a multiply-add into an fma: then y can
// differ from PyTorch's in its last bit (<= 1 LSB).
fn add_requant(a: vec4<f32>, b: vec4<f32>, s_a: f32, s_b: f32, relu: bool, inv_s_out: f32, zp_out: i32,
               q_max: i32) -> vec4<i32> {
  var y = a * s_a + b * s_b;
  if (relu) { y = max(y, vec4<f32>(0.0)); }
  let r = clamp(round(y * inv_s_out), vec4<f32>(-512.0), vec4<f32>(512.0));
  return clamp(vec4<i32>(r) + vec4<i32>(zp_out), vec4<i32>(-128), vec4<i32>(q_max));
}
