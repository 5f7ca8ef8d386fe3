// layout.wgsl -- included by the kernels (no entry point). Addressing of int8 activation
// tensors packed four bytes per u32 word, little-endian (byte j = bits 8j..8j+7), as in
// the spec's layout table. One descriptor covers all three packed layouts:
//   word(n, c4, h, w) = n*s_n + h*s_h + (w / wb)*s_wb + (w % wb)*s_wi + c4*s_c4,  byte = c % 4
//   4W4C: wb = 4, s_wi = 1, s_c4 = 4, s_wb = 4*C4, s_h = W4*4*C4
//   4C:   wb = 1, s_wi = 0, s_c4 = 1, s_wb = C4,   s_h = W*C4
//   4C1W: wb = 1, s_wi = 0, s_c4 = W, s_wb = 1,    s_h = C4*W
// s_n = H*s_h. Slots past C (and past W in 4W4C) hold the tensor's zero point `zp`.
// `base`: word index (in the whole tensor) of word 0 of the binding, subtracted by word_index,
// so a binding may be a window of the tensor (big tensors are split into row windows; a whole
// (n, h) row is contiguous in every layout). u32 arithmetic wraps, so base = -c4_0*s_c4 (mod
// 2^32) makes channel block c4 land at c4_0 + c4 (GEMM dispatches over output-channel slices).
// #include "struct_tensor_desc.wgsl"

fn word_index(d: TensorDesc, n: u32, c4: u32, h: u32, w: u32) -> u32 {
  return n * d.s_n + h * d.s_h + (w / d.wb) * d.s_wb + (w % d.wb) * d.s_wi + c4 * d.s_c4 - d.base;
}

// word_index for a 4W4C tensor (wb = 4, s_wi = 1, s_c4 = 4), with shifts: a division by the
// uniform d.wb costs ~20 instructions, and gathers compute 4 indices per 16-byte block.
fn word_index_4w4c(d: TensorDesc, n: u32, c4: u32, h: u32, w: u32) -> u32 {
  return n * d.s_n + h * d.s_h + (w >> 2u) * d.s_wb + (w & 3u) + c4 * 4u - d.base;
}

// The index step from width w to w + 1 within a 4-width tile (first width a multiple of 4): such
// widths are s_wi apart in 4W4C (one 4-width block) and s_wb apart in 4C and 4C1W (wb = 1), so a
// tile's 4 words need one word_index, not 4 (its divisions by the uniform wb cost ~20 instructions).
fn tile_width_step(d: TensorDesc) -> u32 {
  return select(d.s_wb, d.s_wi, d.wb > 1u);
}

// Kernels that write one word of a packed tensor per thread (pack, quantize, add, pools): the
// tensor's words, and thread t's word (n, c4, h, w) over [N, H, C4, w_alloc], w fastest (4W4C's
// padded widths included).
fn word_count(d: TensorDesc) -> u32 {
  return d.n * d.h * ((d.c + 3u) / 4u) * d.w_alloc;
}

fn word_coords(d: TensorDesc, t: u32) -> vec4<u32> {
  let c4n = (d.c + 3u) / 4u;
  let q = t / d.w_alloc;
  let r = q / c4n;
  return vec4<u32>(r / d.h, q % c4n, r % d.h, t % d.w_alloc);
}

// A word whose four bytes are all the zero point `zp` (int8 two's complement).
fn zp_word(zp: i32) -> u32 {
  return (u32(zp) & 0xffu) * 0x01010101u;
}

// Sign-extended byte j (0..3) of a word.
fn byte_at(word: u32, j: u32) -> i32 {
  return extractBits(bitcast<i32>(word), 8u * j, 8u);
}

// Linear thread index over a dispatch folded into (x, y) workgroups (x, y <= 65535).
fn linear_id(gid: vec3<u32>, nwg: vec3<u32>, wg: u32) -> u32 {
  return gid.x + gid.y * nwg.x * wg;
}
