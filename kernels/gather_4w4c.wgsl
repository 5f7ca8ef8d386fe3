// gather_4w4c.wgsl -- included (no entry point): one block of the im2col matrix read straight
// from a 4W4C input with C_in_per_group % 4 == 0. The including file includes layout.wgsl and
// conv_params.wgsl and declares `fn load_word(i: u32) -> u32` (word i of its input binding).
// Block (global m-block mb, k-block k4) = 4 rows (output widths 4*(mb % w4_out)..+3 of output
// row mb / w4_out = n*h_out + h) x 4 columns 4*k4..+3. Since cin_pg % 4 == 0 the 4 columns share
// (kh, kw) and are the 4 channels of one input word, so each row is one u32 copy; k_pg == taps_pg
// (no padding columns). Taps outside the input and rows past W_out get 4 zero points.
// `xd` must describe a 4W4C tensor (the callers check the layout).
fn gather_4w4c(xd: TensorDesc, cv: ConvParams, mb: u32, k4: u32) -> vec4<u32> {
  // Each quotient once, remainders by multiply-subtract (divisions by uniforms are slow).
  let row = mb / cv.w4_out;
  let w4 = mb - row * cv.w4_out;
  let n = row / cv.h_out;
  let h = row - n * cv.h_out;
  let k = k4 * 4u;
  let g = k / cv.k_pg;
  let kk = k - g * cv.k_pg;
  let tap = kk / cv.cin_pg;
  let c4 = (g * cv.cin_pg + kk - tap * cv.cin_pg) / 4u;
  let th = tap / cv.kw;
  let hi = i32(h * cv.stride_h + th * cv.dil_h) - i32(cv.pad_h);
  let zp = zp_word(xd.zp);
  if (hi < 0 || hi >= i32(xd.h)) { return vec4<u32>(zp); }
  // Row i (output width w + i) reads input width wofs + i*stride_w. Four named words, not a
  // vector indexed in a loop (that can land in slow local memory).
  let w = w4 * 4u;
  let wofs = i32(w * cv.stride_w + (tap - th * cv.kw) * cv.dil_w) - i32(cv.pad_w);
  return vec4<u32>(tap_word(xd, cv, zp, n, c4, u32(hi), w, wofs),
                   tap_word(xd, cv, zp, n, c4, u32(hi), w + 1u, wofs + i32(cv.stride_w)),
                   tap_word(xd, cv, zp, n, c4, u32(hi), w + 2u, wofs + 2 * i32(cv.stride_w)),
                   tap_word(xd, cv, zp, n, c4, u32(hi), w + 3u, wofs + 3 * i32(cv.stride_w)));
}

// The input word at (n, c4, hi, wi) for output width w, or the zero-point word `zp` where w is
// past W_out or wi outside the input.
fn tap_word(xd: TensorDesc, cv: ConvParams, zp: u32, n: u32, c4: u32, hi: u32, w: u32, wi: i32) -> u32 {
  if (w >= cv.w_out || wi < 0 || wi >= i32(xd.w)) { return zp; }
  return load_word(word_index_4w4c(xd, n, c4, hi, u32(wi)));
}
