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

// rint(adj*M + B) of channel record ch, exactly, from its fixed-point form.
fn conv_exact(adj: i32, ch: Chan) -> i32 {
  return round_shifted(add64(mul_wide(adj, ch.fix_m), vec2<u32>(ch.fix_bf_lo, ch.fix_bf_hi)), ch.fix_e, ch.fix_bi);
}

// Requantized channel `oc` (record ch) at 4 widths (acc = its 4 accumulators), as int8 values in
// i32; widths whose bit in `valid` is false, and channels past C_out, give zp_out.
fn requant4(acc: vec4<i32>, ch: Chan, oc: u32, valid: vec4<bool>) -> vec4<i32> {
  let adj = acc - vec4<i32>(p.zp_in * ch.wsum);
  let prod = vec4<f32>(adj) * ch.m;
  let v = prod + ch.b;
  // Clamp before the int conversion so huge values stay defined; +-512 cannot change the result.
  var r = vec4<i32>(clamp(round(v), vec4<f32>(-512.0), vec4<f32>(512.0)));
  // float32's error: 4 roundings of |adj*M| and 2 of |B| (at most 2^-22 of their sum); the +1
  // covers the fixed-point form's 2^-30.
  let margin = (abs(prod) + vec4<f32>(abs(ch.b) + 1.0)) * EXACT_REL;
  let near = near_half(v, margin);
  if (any(near)) {
    r = select(r, vec4<i32>(conv_exact(adj.x, ch), conv_exact(adj.y, ch), conv_exact(adj.z, ch), conv_exact(adj.w, ch)), near);
  }
  if (p.relu != 0u) { r = max(r, vec4<i32>(0)); }
  let q = clamp(r + vec4<i32>(p.zp_out), vec4<i32>(-128), vec4<i32>(p.q_max));
  return select(vec4<i32>(p.zp_out), q, valid & vec4<bool>(oc < p.c_out));
}

// The residual add's word at width w of channel block c4 (qc: the conv's int8 values of its 4
// channels there); slots past W_out or C_out hold od.zp, and no residual word past W_out is read.
fn add_residual(qc: vec4<i32>, n: u32, c4: u32, h: u32, w: u32) -> u32 {
  if (w >= p.w_out) { return pack4xI8(vec4<i32>(od.zp)); }
  let qv = qc - vec4<i32>(p.zp_out);
  let qr = unpack4xI8(res[word_index(rd, n, c4, h, w)]) - vec4<i32>(rd.zp);
  let first = select(qv, qr, p.res_first != 0u);
  let second = select(qr, qv, p.res_first != 0u);
  let q = add_requant(first, second, p.add_m_a, p.add_m_b, p.add_fix_a, p.add_fix_b, p.add_fix_e,
                      p.add_relu != 0u, od.zp, p.add_q_max);
  let c = vec4<u32>(c4 * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
  return pack4xI8(select(vec4<i32>(od.zp), q, c < vec4<u32>(p.c_out)));
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
  let q0 = requant4(a0, chan[oc], oc, valid);
  let q1 = requant4(a1, chan[oc + 1u], oc + 1u, valid);
  let q2 = requant4(a2, chan[oc + 2u], oc + 2u, valid);
  let q3 = requant4(a3, chan[oc + 3u], oc + 3u, valid);
  // Word of width i = the 4 channels' bytes at width i.
  var wd = vec4<u32>(pack4xI8(vec4<i32>(q0.x, q1.x, q2.x, q3.x)), pack4xI8(vec4<i32>(q0.y, q1.y, q2.y, q3.y)),
                     pack4xI8(vec4<i32>(q0.z, q1.z, q2.z, q3.z)), pack4xI8(vec4<i32>(q0.w, q1.w, q2.w, q3.w)));
  if (RESIDUAL) {
    wd = vec4<u32>(add_residual(vec4<i32>(q0.x, q1.x, q2.x, q3.x), n, c4, h, w0),
                   add_residual(vec4<i32>(q0.y, q1.y, q2.y, q3.y), n, c4, h, w0 + 1u),
                   add_residual(vec4<i32>(q0.z, q1.z, q2.z, q3.z), n, c4, h, w0 + 2u),
                   add_residual(vec4<i32>(q0.w, q1.w, q2.w, q3.w), n, c4, h, w0 + 3u));
  }
  if (w0 < od.w_alloc) { o[word_index(od, n, c4, h, w0)] = wd.x; }
  if (w0 + 1u < od.w_alloc) { o[word_index(od, n, c4, h, w0 + 1u)] = wd.y; }
  if (w0 + 2u < od.w_alloc) { o[word_index(od, n, c4, h, w0 + 2u)] = wd.z; }
  if (w0 + 3u < od.w_alloc) { o[word_index(od, n, c4, h, w0 + 3u)] = wd.w; }
}
