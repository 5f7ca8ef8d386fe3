// dw_sums.wgsl -- included (no entry point): a depthwise conv's int32 sums for one block of 4
// output widths x 4 channels, read straight from its 4W4C input: depthwise_4w4c.wgsl's (a block
// a thread) and dw_in.wgsl's (a block of the GEMM's A). The includer includes layout.wgsl,
// conv_params.wgsl and gather_4w4c.wgsl (MPos), declares `xd` (the input's TensorDesc) and `cv`
// (the conv's ConvParams), and defines `fn load_word(i: u32) -> u32` (word i of the input) and
// `fn dw_weight(c4: u32, taps: u32, tap: u32) -> u32` (tap kh*KW + kw's weights, of `taps`, of
// channels 4*c4..+3, a byte each).
// Per tap and width one input word (the 4 channels at that position; outside the input, 4 zero
// points: the padding the epilogue's zero-point correction assumes) times the tap's 4 weights.
// Overflow: |x*w| <= 2^14 a tap, so int32 is exact for KH*KW < 2^16 (see epilogue.wgsl).

// a<i>: the 4 channels' sums at output width m.w + i.
struct DwSums {
  a0: vec4<i32>,
  a1: vec4<i32>,
  a2: vec4<i32>,
  a3: vec4<i32>,
}

// The sums of channel block c4 at output position m (widths m.w..+3), kernel kh x kw (the
// caller's constants where it has them, so the loops unroll).
fn dw_sums(m: MPos, c4: u32, kh: u32, kw: u32) -> DwSums {
  let zp = zp_word(xd.zp);
  let sw = i32(cv.stride_w);
  var s = DwSums(vec4<i32>(0), vec4<i32>(0), vec4<i32>(0), vec4<i32>(0));
  for (var th = 0u; th < kh; th++) {
    let hi = i32(m.h * cv.stride_h + th * cv.dil_h) - i32(cv.pad_h);
    let row_in = hi >= 0 && hi < i32(xd.h);
    for (var tw = 0u; tw < kw; tw++) {
      let wv = unpack4xI8(dw_weight(c4, kh * kw, th * kw + tw));
      var x0 = zp;
      var x1 = zp;
      var x2 = zp;
      var x3 = zp;
      if (row_in) {
        let wofs = i32(m.w * cv.stride_w + tw * cv.dil_w) - i32(cv.pad_w);
        x0 = in_word(m.n, c4, u32(hi), wofs, zp);
        x1 = in_word(m.n, c4, u32(hi), wofs + sw, zp);
        x2 = in_word(m.n, c4, u32(hi), wofs + 2 * sw, zp);
        x3 = in_word(m.n, c4, u32(hi), wofs + 3 * sw, zp);
      }
      s.a0 += unpack4xI8(x0) * wv;
      s.a1 += unpack4xI8(x1) * wv;
      s.a2 += unpack4xI8(x2) * wv;
      s.a3 += unpack4xI8(x3) * wv;
    }
  }
  return s;
}

// The input word (4 channels) at width wi of row hi, or 4 zero points outside the input. Widths
// past W_out are computed too (the stores drop them), so loads shared by neighbouring outputs
// are the same expression. (gather_4w4c.wgsl's tap_word less its W_out test. Sharing this as a
// function that tap_word calls made the implicit GEMM 6% to 11% slower on the H100.)
fn in_word(n: u32, c4: u32, hi: u32, wi: i32, zp: u32) -> u32 {
  if (wi < 0 || wi >= i32(xd.w)) { return zp; }
  return load_word(word_index_4w4c(xd, n, c4, hi, u32(wi)));
}
