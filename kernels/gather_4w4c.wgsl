// gather_4w4c.wgsl -- included (no entry point): one block of the im2col matrix read straight
// from a 4W4C input with C_in_per_group % 4 == 0. The including file includes layout.wgsl and
// conv_params.wgsl and declares `fn load_word(i: u32) -> u32` (word i of its input binding).
// Block (global m-block mb, k-block k4) = 4 rows (output widths 4*(mb % w4_out)..+3 of output
// row mb / w4_out = n*h_out + h) x 4 columns 4*k4..+3. Since cin_pg % 4 == 0 the 4 columns share
// (kh, kw) and are the 4 channels of one input word, so each row is one u32 copy; k_pg == taps_pg
// (no padding columns). Taps outside the input and rows past W_out get 4 zero points.
fn gather_4w4c(xd: TensorDesc, cv: ConvParams, mb: u32, k4: u32) -> vec4<u32> {
  let w4 = mb % cv.w4_out;
  let row = mb / cv.w4_out;
  let h = row % cv.h_out;
  let n = row / cv.h_out;
  let k = k4 * 4u;
  let g = k / cv.k_pg;
  let kk = k - g * cv.k_pg;
  let tap = kk / cv.cin_pg;
  let c4 = (g * cv.cin_pg + kk % cv.cin_pg) / 4u;
  let hi = i32(h * cv.stride_h + (tap / cv.kw) * cv.dil_h) - i32(cv.pad_h);
  var blk = vec4<u32>(zp_word(xd.zp));
  if (hi >= 0 && hi < i32(xd.h)) {
    let wofs = (tap % cv.kw) * cv.dil_w;
    for (var i = 0u; i < 4u; i++) {
      let w = w4 * 4u + i;
      let wi = i32(w * cv.stride_w + wofs) - i32(cv.pad_w);
      if (w < cv.w_out && wi >= 0 && wi < i32(xd.w)) {
        blk[i] = load_word(word_index(xd, n, c4, u32(hi), u32(wi)));
      }
    }
  }
  return blk;
}
