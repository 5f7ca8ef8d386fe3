// gather_4w4c.wgsl -- included (no entry point): blocks of the im2col matrix read straight
// from a 4W4C input with C_in_per_group % 4 == 0. The including file includes layout.wgsl and
// conv_params.wgsl and declares `fn load_word(i: u32) -> u32` (word i of its input binding).
// Block (global m-block mb, k-block k4) = 4 rows (output widths 4*(mb % w4_out)..+3 of output
// row mb / w4_out = n*h_out + h) x 4 columns 4*k4..+3. Since cin_pg % 4 == 0 the 4 columns share
// (kh, kw) and are the 4 channels of one input word, so each row is one u32 copy; k_pg == taps_pg
// (no padding columns). Taps outside the input and rows past W_out get 4 zero points.
// `xd` must describe a 4W4C tensor (the callers check the layout).
// Divisions by uniforms cost ~20 instructions each: positions are decoded once (m_pos, k_pos)
// and the next k-block's position is stepped without dividing (k_next).

// An m-block's output position: batch n, output row h, first output width w (a multiple of 4).
struct MPos { n: u32, h: u32, w: u32, }

fn m_pos(cv: ConvParams, mb: u32) -> MPos {
  let row = mb / cv.w4_out;
  let n = row / cv.h_out;
  return MPos(n, row - n * cv.h_out, (mb - row * cv.w4_out) * 4u);
}

// A k-block's position: group g, channel c within the group (a multiple of 4), tap (th, tw).
struct KPos { g: u32, c: u32, th: u32, tw: u32, }

fn k_pos(cv: ConvParams, k4: u32) -> KPos {
  let k = k4 * 4u;
  let g = k / cv.k_pg;
  let kk = k - g * cv.k_pg;
  let tap = kk / cv.cin_pg;
  let th = tap / cv.kw;
  return KPos(g, kk - tap * cv.cin_pg, th, tap - th * cv.kw);
}

// The position of k-block k4 + 1, given that of k4 (columns run (kh, kw, ic) within a group).
fn k_next(cv: ConvParams, kp: KPos) -> KPos {
  var q = kp;
  q.c += 4u;
  if (q.c == cv.cin_pg) {
    q.c = 0u;
    q.tw += 1u;
    if (q.tw == cv.kw) {
      q.tw = 0u;
      q.th += 1u;
      if (q.th == cv.kh) {
        q.th = 0u;
        q.g += 1u;
      }
    }
  }
  return q;
}

fn gather_at(xd: TensorDesc, cv: ConvParams, m: MPos, kp: KPos) -> vec4<u32> {
  let zp = zp_word(xd.zp);
  let hi = i32(m.h * cv.stride_h + kp.th * cv.dil_h) - i32(cv.pad_h);
  if (hi < 0 || hi >= i32(xd.h)) { return vec4<u32>(zp); }
  let c4 = (kp.g * cv.cin_pg + kp.c) / 4u;
  // Row i (output width m.w + i) reads input width wofs + i*stride_w. Four named words, not a
  // vector indexed in a loop (that can land in slow local memory).
  let wofs = i32(m.w * cv.stride_w + kp.tw * cv.dil_w) - i32(cv.pad_w);
  let sw = i32(cv.stride_w);
  return vec4<u32>(tap_word(xd, cv, zp, m.n, c4, u32(hi), m.w, wofs),
                   tap_word(xd, cv, zp, m.n, c4, u32(hi), m.w + 1u, wofs + sw),
                   tap_word(xd, cv, zp, m.n, c4, u32(hi), m.w + 2u, wofs + 2 * sw),
                   tap_word(xd, cv, zp, m.n, c4, u32(hi), m.w + 3u, wofs + 3 * sw));
}

fn gather_4w4c(xd: TensorDesc, cv: ConvParams, mb: u32, k4: u32) -> vec4<u32> {
  return gather_at(xd, cv, m_pos(cv, mb), k_pos(cv, k4));
}

// The input word at (n, c4, hi, wi) for output width w, or the zero-point word `zp` where w is
// past W_out or wi outside the input.
fn tap_word(xd: TensorDesc, cv: ConvParams, zp: u32, n: u32, c4: u32, hi: u32, w: u32, wi: i32) -> u32 {
  if (w >= cv.w_out || wi < 0 || wi >= i32(xd.w)) { return zp; }
  return load_word(word_index_4w4c(xd, n, c4, hi, u32(wi)));
}
