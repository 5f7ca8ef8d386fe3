// dw_in.wgsl -- included by gemm_q8_tiled.wgsl (no entry point): with DW_IN, the GEMM's A is the
// output of a depthwise conv (an inverted residual's, before its 1x1 projection), computed and
// requantized block by block as the GEMM stages it, so the depthwise output never goes to memory
// and its dispatch (and the barrier after it) goes away.
// In:  `a`, the depthwise conv's 4W4C input, described by `xd`, its geometry by `cv` (kernel,
//      stride, padding, dilation; output positions as the GEMM's m-blocks); `dwx`, its per-channel
//      epilogue records (Chan, CHAN_WORDS words each, for 4*ceil(C/4) channels) followed by its
//      weights (word c4*taps + t = tap t = kh*KW + kw of channels 4*c4..4*c4+3, as
//      depthwise_4w4c.wgsl takes them); `dq`, its GemmParams (zp_in, zp_out, relu, q_max, c_out,
//      w_out).
// Block (m-block at output position m, k-block c4) = the depthwise output at widths m.w..+3 x
//      channels 4*c4..+3, as depthwise_4w4c.wgsl writes it: the same sums in int32, the same
//      requantization (epilogue.wgsl requant_lanes with the records and dq's quantization), and
//      dq's zero point in the slots past W_out or C (which depthwise_4w4c writes there too), so the
//      GEMM computes exactly what the two dispatches did.
// The includer declares `dwx` and `dq`, includes layout.wgsl, epilogue.wgsl, conv_params.wgsl,
// gather_4w4c.wgsl (MPos) and dw_sums.wgsl (the sums, as depthwise_4w4c.wgsl's), and defines
// `fn load_word(i: u32) -> u32` (word i of `a`).
// Overflow: dw_sums.wgsl's (int32 exact for KH*KW < 2^16).

const CHAN_WORDS: u32 = 8u;  // words of one Chan record (uniforms.CHAN)

// One of 4 records (j < 4), with no dynamically indexed array (it would live in slow local memory).
fn pick_chan(c0: Chan, c1: Chan, c2: Chan, c3: Chan, j: u32) -> Chan {
  if (j == 0u) { return c0; }
  if (j == 1u) { return c1; }
  if (j == 2u) { return c2; }
  return c3;
}

// The int8 values (in i32) of 4 channels at one width from their accumulators `acc`, with
// their records c0..c3, the input zero point `zp_in` and the output quantization `qo`: the
// zero-point correction, rounding (exact where float32 cannot decide) and clamps; lanes whose
// `keep` is false give qo.zp_out. (epilogue.wgsl's store_word does the same with `chan` and `p`
// written out: through this function, its records kept as values for the rare exact path,
// depthwise_4w4c.wgsl ran 1.03x-1.16x slower on the H200.)
fn requant_lanes(acc: vec4<i32>, zp_in: i32, c0: Chan, c1: Chan, c2: Chan, c3: Chan, qo: QOut,
                 keep: vec4<bool>) -> vec4<i32> {
  let adj = acc - vec4<i32>(zp_in) * vec4<i32>(c0.wsum, c1.wsum, c2.wsum, c3.wsum);
  let f = conv_round_q(adj, vec4<f32>(c0.m, c1.m, c2.m, c3.m), vec4<f32>(c0.b, c1.b, c2.b, c3.b),
                       vec4<f32>(c0.margin, c1.margin, c2.margin, c3.margin), qo);
  var r = f.r;
  var near = near_bits(f.near);
  while (near != 0u) {  // rare: where float32 cannot decide (bit j: channel j)
    let j = firstTrailingBit(near);
    near &= near - 1u;
    r[j] = conv_exact(adj[j], pick_chan(c0, c1, c2, c3, j));
  }
  return conv_finish_q(r, keep, qo);
}

// The depthwise conv's record of channel c, from its words in `dwx`.
fn dw_chan(c: u32) -> Chan {
  let i = c * CHAN_WORDS;
  return Chan(bitcast<i32>(dwx[i]), bitcast<f32>(dwx[i + 1u]), bitcast<f32>(dwx[i + 2u]),
              bitcast<f32>(dwx[i + 3u]), dwx[i + 4u], dwx[i + 5u], bitcast<i32>(dwx[i + 6u]), dwx[i + 7u]);
}

// The requantized depthwise output word (4 channels of block c4) at width w from its sums.
fn dw_word(acc: vec4<i32>, c4: u32, w: u32) -> u32 {
  let oc = c4 * 4u;
  let in_c = vec4<u32>(oc) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(dq.c_out);
  let qc = requant_lanes(acc, dq.zp_in, dw_chan(oc), dw_chan(oc + 1u), dw_chan(oc + 2u), dw_chan(oc + 3u),
                         QOut(dq.zp_out, dq.relu, dq.q_max), in_c & vec4<bool>(w < dq.w_out));
  return pack4xI8(qc);
}

// Tap `tap` (of `taps`) of channel block c4's weights, after the records in `dwx` (dw_sums.wgsl).
fn dw_weight(c4: u32, taps: u32, tap: u32) -> u32 {
  return dwx[CHAN_WORDS * 4u * ((dq.c_out + 3u) / 4u) + c4 * taps + tap];
}

// A block of the depthwise output (see the header): 4 words, word i = width m.w + i.
fn dw_block(m: MPos, c4: u32) -> vec4<u32> {
  let d = dw_sums(m, c4, cv.kh, cv.kw);
  return vec4<u32>(dw_word(d.a0, c4, m.w), dw_word(d.a1, c4, m.w + 1u), dw_word(d.a2, c4, m.w + 2u),
                   dw_word(d.a3, c4, m.w + 3u));
}
