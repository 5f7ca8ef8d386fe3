// mac.wgsl -- included by the kernels that multiply 4-row blocks (no entry point): the packed
// multiply-accumulate of 4 rows (widths) against one channel's word.
// #include "dot4.wgsl"
// acc + (x . w) for the 4 rows (widths) of x against one channel's word w.
fn mac(acc: vec4<i32>, x: vec4<u32>, w: u32) -> vec4<i32> {
  return acc + vec4<i32>(dot4I8Packed(x.x, w), dot4I8Packed(x.y, w),
                         dot4I8Packed(x.z, w), dot4I8Packed(x.w, w));
}
