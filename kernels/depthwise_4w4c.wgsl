// depthwise_4w4c.wgsl -- a depthwise conv (C_in/groups == C_out/groups == 1) read straight from
// its 4W4C input: no im2col matrix and no GEMM. A depthwise conv has KH*KW MACs an output, too
// few for a GEMM tile to pay off, and its K columns of one channel are one byte of each of
// KH*KW input words, which is the wrong way round for dot4I8Packed.
// In:  `x`, the input in 4W4C (`xd`; it may be a window of the input's rows, xd.base);
//      `wts`, the depthwise weights: word c4*taps + t holds tap t = kh*KW + kw of channels
//      4*c4..4*c4+3 (byte j = channel 4*c4+j; channels past C are 0); `chan`, epilogue records.
//      Conv geometry in `cv` (conv_params.wgsl: stride, padding, dilation, kernel size, m-blocks
//      [mb_base, mb_base + m_count) of this dispatch).
// Thread t (of m_count*c4_out, folded over x, y workgroups): the 4-width x 4-channel output block
//      of m-block mb = t / c4_out and channel block c4 = t % c4_out, so neighbouring threads
//      read and write neighbouring 16-byte blocks. With WPT = 1 (of 4*m_count*c4_out threads):
//      word t % 4 (one width, 4 channels) of block t / 4, through store_word: 4x the threads,
//      each waiting on a quarter of the loads (GPUs: batch-1 layers fill them poorly). Per tap
//      and width it loads one input word (the 4 channels at that position; outside the input,
//      4 zero points: the padding the epilogue's zero-point correction assumes) and adds its 4
//      bytes times the tap's 4 weights, in int32, one accumulator vector (4 channels) per width.
// Out: requantized through epilogue.wgsl's store_tile (store_word with WPT = 1; `p`: m_count,
//      mb_base, the output's shape and quantization); each thread writes only its own block
//      (word).
// Overflow: |x*w| <= 2^14 a tap, so int32 is exact for KH*KW < 2^16 (see epilogue.wgsl).
// #include "layout.wgsl"
// #include "epilogue.wgsl"
// #include "conv_params.wgsl"
// #include "gather_4w4c.wgsl"
// #include "dw_sums.wgsl"
// #include "direct_conv_bindings.wgsl"

override WG: u32 = 64u;
// The kernel's size as constants, so the tap loops unroll and a thread's loads are issued
// together; 0: read from `cv` (the host passes 0 for big kernels, which would unroll too far).
override KH: u32 = 0u;
override KW: u32 = 0u;
override WPT: u32 = 4u;  // output widths a thread: 4 (a 4x4 block) or 1 (one word)

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read> wts: array<u32>;
// (bindings 2-9: direct_conv_bindings.wgsl)

fn load_word(i: u32) -> u32 {
  return x[i];
}

// Tap `tap` (of `taps`) of channel block c4's weights (dw_sums.wgsl).
fn dw_weight(c4: u32, taps: u32, tap: u32) -> u32 {
  return wts[c4 * taps + tap];
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let tid = linear_id(gid, nwg, WG);
  let per_block = 4u / WPT;
  if (tid >= p.m_count * p.c4_out * per_block) { return; }
  let t = tid / per_block;  // the block
  let mb = t / p.c4_out;
  let c4 = t - mb * p.c4_out;
  let m = m_pos(cv, p.mb_base + mb);
  let zp = zp_word(xd.zp);
  let kh = select(KH, cv.kh, KH == 0u);
  let kw = select(KW, cv.kw, KW == 0u);
  let taps = kh * kw;
  if (WPT == 1u) {
    let i = tid - t * 4u;  // the width within the block
    var a = vec4<i32>(0);  // the 4 channels' sums at output width m.w + i
    for (var th = 0u; th < kh; th++) {
      let hi = i32(m.h * cv.stride_h + th * cv.dil_h) - i32(cv.pad_h);
      let row_in = hi >= 0 && hi < i32(xd.h);
      for (var tw = 0u; tw < kw; tw++) {
        var xi = zp;
        if (row_in) {
          xi = in_word(m.n, c4, u32(hi), i32((m.w + i) * cv.stride_w + tw * cv.dil_w) - i32(cv.pad_w), zp);
        }
        a += unpack4xI8(xi) * unpack4xI8(wts[c4 * taps + th * kw + tw]);
      }
    }
    store_word(mb, c4, i, a);
    return;
  }
  let d = dw_sums(m, c4, kh, kw);
  let a0 = d.a0;
  let a1 = d.a1;
  let a2 = d.a2;
  let a3 = d.a3;
  // store_tile takes each channel's 4 widths.
  store_tile(mb, c4, vec4<i32>(a0.x, a1.x, a2.x, a3.x), vec4<i32>(a0.y, a1.y, a2.y, a3.y),
             vec4<i32>(a0.z, a1.z, a2.z, a3.z), vec4<i32>(a0.w, a1.w, a2.w, a3.w));
}
