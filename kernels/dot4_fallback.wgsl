// dot4_fallback.wgsl -- the packed int8 dot product by hand, for adapters whose shader compiler
// rejects dot4I8Packed or computes it wrongly: a module-scope function of the builtin's name,
// which shadows it. In: a, b, four int8 bytes each (byte 0 lowest). Out: the int32 sum of the
// four byte products, exact (|sum| <= 4 * 128 * 128). The shader library (q8ta_wgpu/shaders.py)
// resolves "dot4.wgsl" to this file for Device(dot4="fallback") or a failed probe.
fn dot4I8Packed(a: u32, b: u32) -> i32 {
  let x = vec4<i32>(extractBits(bitcast<i32>(a), 0u, 8u), extractBits(bitcast<i32>(a), 8u, 8u),
                    extractBits(bitcast<i32>(a), 16u, 8u), extractBits(bitcast<i32>(a), 24u, 8u));
  let y = vec4<i32>(extractBits(bitcast<i32>(b), 0u, 8u), extractBits(bitcast<i32>(b), 8u, 8u),
                    extractBits(bitcast<i32>(b), 16u, 8u), extractBits(bitcast<i32>(b), 24u, 8u));
  return dot(x, y);
}
