// epilogue.wgsl -- included by the GEMM kernels (no entry point): the requantizing epilogue
// (spec section 2) and the store of one 4-width x 4-channel output tile, optionally followed by a
// residual add. The including file declares `chan` (per-channel records), `o` (output words),
// `od` (output TensorDesc), `p` (GemmParams), and `res` (residual words) with `rd` (its
// TensorDesc: the output's shape, layout and windowing, the residual's zero point), which only
// RESIDUAL reads (else they are bound to a placeholder). RESIDUAL is an override constant, not
// a uniform, so that the convs without a residual compile without its code (a uniform branch
// left in cost lavapipe 2-10% a conv).
//   adj = acc - zp_in*wsum; v = adj*M + B (M = s_in*s_w/s_out, B = bias/s_out: the record's m, b
//   in float32 and its fixed-point form); q = clamp(rint(v) + zp_out) with rint exact, half to
//   even (exact_round.wgsl: float32 where it decides, the fixed-point form where v lies near a
//   half-integer); relu: max(rint(v), 0) = rint(max(v, 0)).
//   relu6: q = min(q, q_max) with q_max = rint(6/s_out) + zp_out (the host's, exact): rounding is
//   monotonic, so this equals clamping the real value at 6 before requantizing.
//   residual (RESIDUAL): the add of kernels/add_q8.wgsl after q (the same add_requant.wgsl), bit
//   for bit as a separate add pass computes it from q's bytes, with the operands q - zp_out and
//   r - rd.zp in the graph's order (res_first puts the residual first), add_relu and add_q_max.
//   od.zp is then the add's output zero point (padding slots hold it), zp_out the conv's.
// Overflow: |product| <= 2^14 and |zp_in*wsum| <= 2^14 per column, so int32 is exact for
// K_per_group < 2^16 columns (the host checks).
// #include "struct_gemm_params.wgsl"
// #include "struct_chan.wgsl"
// #include "add_requant.wgsl"
// #include "exact_round.wgsl"

override RESIDUAL: bool = false;  // a residual add follows the requantization (res, rd)
// store_tile indexes its 4 words from one word_index and a width step (tile_width_step) instead
// of a word_index each: on the H200 the patch kernel ran ResNet-18 1.7% faster with it, the tiled
// GEMM up to 1.28x slower per layer (ResNet-50's batch-1 1x1 convs; not understood), so only the
// patch kernel sets it.
override STEP_STORES: bool = false;

// The output's quantization as the rounding and clamps need it: `p`'s, or (dw_in.wgsl)
// another conv's whose output a kernel computes on the way.
struct QOut {
  zp_out: i32,
  relu: u32,
  q_max: i32,
}

fn p_qout() -> QOut {
  return QOut(p.zp_out, p.relu, p.q_max);
}

// float32's rint(adj*M + B) of channel oc at 4 widths, and where it cannot decide.
fn conv_round(adj: vec4<i32>, ch: Chan) -> Rounded {
  return conv_round_v(adj, vec4<f32>(ch.m), vec4<f32>(ch.b), vec4<f32>(ch.margin));
}

// conv_round with each lane's own M, B and margin (store_word: lanes are 4 channels).
fn conv_round_v(adj: vec4<i32>, m: vec4<f32>, b: vec4<f32>, margin: vec4<f32>) -> Rounded {
  return conv_round_q(adj, m, b, margin, p_qout());
}

// conv_round_v for the output quantization `qo`.
fn conv_round_q(adj: vec4<i32>, m: vec4<f32>, b: vec4<f32>, margin: vec4<f32>, qo: QOut) -> Rounded {
  let prod = vec4<f32>(adj) * m;
  // float32's error: 4 roundings of |adj*M| and 2 of |B| (at most 2^-22 of their sum); the +1 in
  // the record's margin covers the fixed-point form's 2^-30. Only rint(v) in [lo, hi] matter:
  // outside, both roundings clamp alike (relu: v <= -1 gives 0 either way).
  let lo = select(-128.0 - f32(qo.zp_out), 0.0, qo.relu != 0u) - 1.0;
  let hi = f32(qo.q_max - qo.zp_out) + 1.0;
  return round_fast(prod + b, abs(prod) * EXACT_REL + margin, lo, hi);
}

// rint(adj*M + B) of channel oc, exactly, from its fixed-point form.
fn conv_exact(adj: i32, ch: Chan) -> i32 {
  let bf = shl64(vec2<u32>(ch.fix_bf, 0u), select(0u, ch.fix_e - 32u, ch.fix_e > 32u));
  return round_shifted(add64(mul_wide(adj, ch.fix_m), bf), ch.fix_e, ch.fix_bi);
}

// Channel oc's int8 values (in i32) from its rounded values r: relu, zero point, clamps; widths
// whose bit in `valid` is false, and channels past C_out, give zp_out.
fn conv_finish(r: vec4<i32>, oc: u32, valid: vec4<bool>) -> vec4<i32> {
  return conv_finish_v(r, valid & vec4<bool>(oc < p.c_out));
}

// conv_finish with a lane mask: lanes whose `keep` is false give zp_out.
fn conv_finish_v(r: vec4<i32>, keep: vec4<bool>) -> vec4<i32> {
  return conv_finish_q(r, keep, p_qout());
}

// conv_finish_v for the output quantization `qo`.
fn conv_finish_q(r: vec4<i32>, keep: vec4<bool>, qo: QOut) -> vec4<i32> {
  let act = select(r, max(r, vec4<i32>(0)), qo.relu != 0u);
  let q = clamp(act + vec4<i32>(qo.zp_out), vec4<i32>(-128), vec4<i32>(qo.q_max));
  return select(vec4<i32>(qo.zp_out), q, keep);
}

// Vector k of 4 (k < 4), with no dynamically indexed array (it would live in slow local memory).
fn pick4(v0: vec4<i32>, v1: vec4<i32>, v2: vec4<i32>, v3: vec4<i32>, k: u32) -> vec4<i32> {
  return select(select(v0, v1, k == 1u), select(v2, v3, k == 3u), k >= 2u);
}

// The residual add's operands at width w, whose residual word is res[at], in the graph's order
// (qc: the conv's int8 values of its 4 channels there). Past W_out no residual word is read.
fn residual_operands(qc: vec4<i32>, at: u32, w: u32) -> array<vec4<i32>, 2> {
  let qv = qc - vec4<i32>(p.zp_out);
  var qr = vec4<i32>(0);
  if (w < p.w_out) { qr = unpack4xI8(res[at]) - vec4<i32>(rd.zp); }
  return array<vec4<i32>, 2>(select(qv, qr, p.res_first != 0u), select(qr, qv, p.res_first != 0u));
}

// The add's word at width w from its rounded values r; slots past W_out or C_out hold od.zp.
fn residual_word(r: vec4<i32>, c4: u32, w: u32) -> u32 {
  let q = add_finish(r, p.add_relu != 0u, od.zp, p.add_q_max);
  let c = vec4<u32>(c4 * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
  return pack4xI8(select(vec4<i32>(od.zp), q, (c < vec4<u32>(p.c_out)) & vec4<bool>(w < p.w_out)));
}

// Requantize and store the tile of m-block `mb` (index within this dispatch) x channel block
// `c4`; a<j> = accumulators of channel 4*c4+j at widths 4*w4..+3. Slots past C_out or W_out
// hold zp_out; in 4C/4C1W outputs words of widths >= W_out are not written (they don't exist).
// Named vectors, no dynamically indexed local arrays: those would live in slow local memory.
fn store_tile(mb: u32, c4: u32, a0: vec4<i32>, a1: vec4<i32>, a2: vec4<i32>, a3: vec4<i32>) {
  let gmb = p.mb_base + mb;
  let w4 = gmb % p.w4_out;
  let row = gmb / p.w4_out;
  let h = row % p.h_out;
  let n = row / p.h_out;
  let w0 = w4 * 4u;
  let valid = vec4<u32>(w0, w0 + 1u, w0 + 2u, w0 + 3u) < vec4<u32>(p.w_out);
  let oc = c4 * 4u;
  let ch0 = chan[oc];
  let ch1 = chan[oc + 1u];
  let ch2 = chan[oc + 2u];
  let ch3 = chan[oc + 3u];
  let adj0 = a0 - vec4<i32>(p.zp_in * ch0.wsum);
  let adj1 = a1 - vec4<i32>(p.zp_in * ch1.wsum);
  let adj2 = a2 - vec4<i32>(p.zp_in * ch2.wsum);
  let adj3 = a3 - vec4<i32>(p.zp_in * ch3.wsum);
  let f0 = conv_round(adj0, ch0);
  let f1 = conv_round(adj1, ch1);
  let f2 = conv_round(adj2, ch2);
  let f3 = conv_round(adj3, ch3);
  var r0 = f0.r;
  var r1 = f1.r;
  var r2 = f2.r;
  var r3 = f3.r;
  var near = near_bits16(f0.near, f1.near, f2.near, f3.near);
  while (near != 0u) {  // rare: where float32 cannot decide (bit 4*j + i: channel oc + j, width i)
    let b = firstTrailingBit(near);
    near &= near - 1u;
    let j = b / 4u;
    let at = vec4<u32>(b % 4u) == vec4<u32>(0u, 1u, 2u, 3u);
    let e = vec4<i32>(conv_exact(pick4(adj0, adj1, adj2, adj3, j)[b % 4u], chan[oc + j]));
    r0 = select(r0, e, at & vec4<bool>(j == 0u));
    r1 = select(r1, e, at & vec4<bool>(j == 1u));
    r2 = select(r2, e, at & vec4<bool>(j == 2u));
    r3 = select(r3, e, at & vec4<bool>(j == 3u));
  }
  let q0 = conv_finish(r0, oc, valid);
  let q1 = conv_finish(r1, oc + 1u, valid);
  let q2 = conv_finish(r2, oc + 2u, valid);
  let q3 = conv_finish(r3, oc + 3u, valid);
  // Word of width i = the 4 channels' bytes at width i.
  var wd = vec4<u32>(pack4xI8(vec4<i32>(q0.x, q1.x, q2.x, q3.x)), pack4xI8(vec4<i32>(q0.y, q1.y, q2.y, q3.y)),
                     pack4xI8(vec4<i32>(q0.z, q1.z, q2.z, q3.z)), pack4xI8(vec4<i32>(q0.w, q1.w, q2.w, q3.w)));
  if (RESIDUAL) {
    let r_at = word_index(rd, n, c4, h, w0);
    let r_step = tile_width_step(rd);
    let o0 = residual_operands(vec4<i32>(q0.x, q1.x, q2.x, q3.x), r_at, w0);
    let o1 = residual_operands(vec4<i32>(q0.y, q1.y, q2.y, q3.y), r_at + r_step, w0 + 1u);
    let o2 = residual_operands(vec4<i32>(q0.z, q1.z, q2.z, q3.z), r_at + 2u * r_step, w0 + 2u);
    let o3 = residual_operands(vec4<i32>(q0.w, q1.w, q2.w, q3.w), r_at + 3u * r_step, w0 + 3u);
    let g0 = add_round(o0[0], o0[1], p.add_m_a, p.add_m_b, p.add_relu != 0u, od.zp, p.add_q_max);
    let g1 = add_round(o1[0], o1[1], p.add_m_a, p.add_m_b, p.add_relu != 0u, od.zp, p.add_q_max);
    let g2 = add_round(o2[0], o2[1], p.add_m_a, p.add_m_b, p.add_relu != 0u, od.zp, p.add_q_max);
    let g3 = add_round(o3[0], o3[1], p.add_m_a, p.add_m_b, p.add_relu != 0u, od.zp, p.add_q_max);
    var s0 = g0.r;
    var s1 = g1.r;
    var s2 = g2.r;
    var s3 = g3.r;
    var snear = near_bits16(g0.near, g1.near, g2.near, g3.near);
    while (snear != 0u) {  // rare (bit 4*i + j: width i, channel j)
      let b = firstTrailingBit(snear);
      snear &= snear - 1u;
      let i = b / 4u;
      let j = b % 4u;
      let fa = pick4(o0[0], o1[0], o2[0], o3[0], i);
      let fb = pick4(o0[1], o1[1], o2[1], o3[1], i);
      let at = vec4<u32>(j) == vec4<u32>(0u, 1u, 2u, 3u);
      let e = vec4<i32>(add_exact(fa[j], fb[j], p.add_fix_a, p.add_fix_b, p.add_fix_e));
      s0 = select(s0, e, at & vec4<bool>(i == 0u));
      s1 = select(s1, e, at & vec4<bool>(i == 1u));
      s2 = select(s2, e, at & vec4<bool>(i == 2u));
      s3 = select(s3, e, at & vec4<bool>(i == 3u));
    }
    wd = vec4<u32>(residual_word(s0, c4, w0), residual_word(s1, c4, w0 + 1u),
                   residual_word(s2, c4, w0 + 2u), residual_word(s3, c4, w0 + 3u));
  }
  if (STEP_STORES) {
    let o_at = word_index(od, n, c4, h, w0);
    let o_step = tile_width_step(od);
    if (w0 < od.w_alloc) { o[o_at] = wd.x; }
    if (w0 + 1u < od.w_alloc) { o[o_at + o_step] = wd.y; }
    if (w0 + 2u < od.w_alloc) { o[o_at + 2u * o_step] = wd.z; }
    if (w0 + 3u < od.w_alloc) { o[o_at + 3u * o_step] = wd.w; }
    return;
  }
  if (w0 < od.w_alloc) { o[word_index(od, n, c4, h, w0)] = wd.x; }
  if (w0 + 1u < od.w_alloc) { o[word_index(od, n, c4, h, w0 + 1u)] = wd.y; }
  if (w0 + 2u < od.w_alloc) { o[word_index(od, n, c4, h, w0 + 2u)] = wd.z; }
  if (w0 + 3u < od.w_alloc) { o[word_index(od, n, c4, h, w0 + 3u)] = wd.w; }
}

// store_tile for one word: width w4*4 + i of the tile of m-block `mb` x channel block `c4`, from
// `acc`, the 4 channels' accumulators there (kernels with a thread per output word). The same
// rounding, clamps, zero-point slots and residual add, with the 4 channels as the vector.
fn store_word(mb: u32, c4: u32, i: u32, acc: vec4<i32>) {
  let gmb = p.mb_base + mb;
  let row = gmb / p.w4_out;
  let w = (gmb - row * p.w4_out) * 4u + i;
  if (w >= od.w_alloc) { return; }
  let h = row % p.h_out;
  let n = row / p.h_out;
  let oc = c4 * 4u;
  let ch0 = chan[oc];
  let ch1 = chan[oc + 1u];
  let ch2 = chan[oc + 2u];
  let ch3 = chan[oc + 3u];
  let adj = acc - vec4<i32>(p.zp_in) * vec4<i32>(ch0.wsum, ch1.wsum, ch2.wsum, ch3.wsum);
  let f = conv_round_v(adj, vec4<f32>(ch0.m, ch1.m, ch2.m, ch3.m), vec4<f32>(ch0.b, ch1.b, ch2.b, ch3.b),
                       vec4<f32>(ch0.margin, ch1.margin, ch2.margin, ch3.margin));
  var r = f.r;
  var near = near_bits(f.near);
  while (near != 0u) {  // rare: where float32 cannot decide (bit j: channel oc + j)
    let j = firstTrailingBit(near);
    near &= near - 1u;
    r[j] = conv_exact(adj[j], chan[oc + j]);
  }
  let in_c = vec4<u32>(oc) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.c_out);
  let qc = conv_finish_v(r, in_c & vec4<bool>(w < p.w_out));
  var word = pack4xI8(qc);
  if (RESIDUAL) {
    let ops = residual_operands(qc, word_index(rd, n, c4, h, w), w);
    let g = add_round(ops[0], ops[1], p.add_m_a, p.add_m_b, p.add_relu != 0u, od.zp, p.add_q_max);
    var s = g.r;
    var snear = near_bits(g.near);
    while (snear != 0u) {  // rare (bit j: channel j)
      let j = firstTrailingBit(snear);
      snear &= snear - 1u;
      s[j] = add_exact(ops[0][j], ops[1][j], p.add_fix_a, p.add_fix_b, p.add_fix_e);
    }
    word = residual_word(s, c4, w);
  }
  o[word_index(od, n, c4, h, w)] = word;
}
