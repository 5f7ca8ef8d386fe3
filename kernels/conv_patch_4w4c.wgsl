// conv_patch_4w4c.wgsl -- a conv (groups == 1) read straight from its 4W4C input in one dispatch:
// each workgroup stages the input patch that its output tile reads in shared memory, a chunk of
// CB input channel words (4 channels each) at a time, with the weights of those channels, and
// computes every tap from that patch. (The implicit GEMM gathers each tap's A block from memory
// again, with its bounds tests; im2col writes all of them to an A matrix first, in a dispatch of
// its own.)
// In:  `x`, the whole input in 4W4C (`xd`; C_in a multiple of 4: the kernel geometry's);
//      `wts`, the prepacked weights of gemm_q8_tiled.wgsl (block c4*k4_pg + k, k-block
//      k = tap*C4_in + word, tap = kh*KW + kw); `chan`, epilogue records. Geometry in `cv` (its
//      kernel size, stride and dilation are the KH, KW, SH, SW, DH, DW constants; the pipeline is
//      made per geometry) and `p` (h_out, w4_out, c4_out, k4_pg; the dispatch covers every
//      m-block: mb_base = 0, m_count = N*h_out*w4_out).
// Workgroup (bx, by): channel blocks [bx*BN, +BN), BN = TN*WG_N; by = (n*row_tiles + rt)*
//      col_tiles + ct: output rows [rt*TR, +TR) x m-blocks [ct*TW, +TW) of image n. Thread
//      (ty, tx) (li = ty*WG_N + tx, ty < TR*TW): output row rt*TR + ty / TW, m-block
//      ct*TW + ty % TW (4 widths), channel blocks c4_lo + tx (and + WG_N with TN = 2).
// Per stage (input words [ci, ci + CB)): the patch, PH = (TR-1)*SH + (KH-1)*DH + 1 input rows x
//      PW = (4*TW-1)*SW + (KW-1)*DW + 1 input widths x CB words (4 zero points outside the input
//      and past C_in: those words' weights are 0), and the weights of those words for every tap
//      and the tile's channel blocks (0 past C_out) go to shared memory. Each thread's share of
//      the next stage's global loads (<= 16 words and 8 weight blocks) is issued into named
//      registers before the current stage is computed. Then each tap and word reads the 4 widths'
//      words of the thread's m-block from the patch: 16 dot4I8Packed a channel block.
// Split K (workgroup z = slice s of p.splits): the slice takes input words [s*kspan, +kspan)
//      (p.kspan, a multiple of CB) and, with REDUCE, adds its sums into `ksum`; the slice of a
//      tile that arrives last requantizes and stores it (ksum_reduce.wgsl). Splitting needs
//      REDUCE (there is no reduce pass for this kernel).
// QUANT_IN: `x` is the float32 NCHW input instead ([N, xd.c, xd.h, xd.w]; xd.zp its zero
//      point), each patch word quantized as it is loaded (quantize_word.wgsl with `qp`: the bytes
//      quantize_pack.wgsl would have written), so the conv needs no quantize pass before it.
// Out: requantized tiles through epilogue.wgsl's store_tile; each thread writes only its own.
// Overflow: see epilogue.wgsl (int32 exact for K_per_group < 2^16).
// #include "layout.wgsl"
// #include "epilogue.wgsl"
// #include "conv_params.wgsl"
// #include "mac.wgsl"
// #include "ksum_reduce.wgsl"
// #include "direct_conv_bindings.wgsl"
// #include "quantize_word.wgsl"

override TR: u32 = 2u;    // output rows a workgroup tile
override TW: u32 = 4u;    // m-blocks (4 output widths each) of a row a workgroup tile
override WG_N: u32 = 8u;  // threads along channel blocks
override TN: u32 = 1u;    // channel blocks a thread: 1 or 2
override CB: u32 = 4u;    // input channel words a stage
override KH: u32 = 3u;
override KW: u32 = 3u;
override SH: u32 = 1u;
override SW: u32 = 1u;
override DH: u32 = 1u;
override DW: u32 = 1u;
override REDUCE: bool = false;  // K split into slices, reduced in `ksum`
override QUANT_IN: bool = false;  // `x` holds float32 NCHW values, quantized as they are loaded

// The patch's input rows and widths (derived from the constants above; the host sets none).
override PH: u32 = (TR - 1u) * SH + (KH - 1u) * DH + 1u;
override PW: u32 = (4u * TW - 1u) * SW + (KW - 1u) * DW + 1u;

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read> wts: array<vec4<u32>>;
// (bindings 2-9: direct_conv_bindings.wgsl)
@group(0) @binding(10) var<storage, read_write> ksum: array<atomic<i32>>;  // REDUCE: sums, counters
@group(0) @binding(11) var<uniform> qp: QuantizeParams;  // QUANT_IN: the input's quantization

// Word (cw*PH + r)*PW + c: input word ci + cw at patch row r, width c. Weights: row
// (tap*CB + cw) of BN blocks (+1 against bank conflicts).
var<workgroup> ptile: array<u32, CB * PH * PW>;
var<workgroup> wtile: array<vec4<u32>, KH * KW * CB * (TN * WG_N + 1u)>;

// The workgroup's constants, set once in main (module scope, for the loaders).
var<private> t_n: u32;
var<private> t_hi0: i32;  // input row of patch row 0
var<private> t_wi0: i32;  // input width of patch width 0
var<private> t_c4_lo: u32;
var<private> t_c4_in: u32;

// Patch element e (its index in `ptile`) of the stage at input word ci.
fn patch_word(e: u32, ci: u32) -> u32 {
  let cw = e / (PH * PW);
  let rc = e - cw * (PH * PW);
  let r = rc / PW;
  let hi = t_hi0 + i32(r);
  let wi = t_wi0 + i32(rc - r * PW);
  let c4 = ci + cw;
  if (e >= CB * PH * PW || c4 >= t_c4_in || hi < 0 || hi >= i32(xd.h) || wi < 0 || wi >= i32(xd.w)) {
    return zp_word(xd.zp);
  }
  if (QUANT_IN) { return quantized_input_word(c4, u32(hi), u32(wi)); }
  return x[word_index_4w4c(xd, t_n, c4, u32(hi), u32(wi))];
}

// QUANT_IN: input word c4 (channels 4*c4..+3; zp past xd.c) at (t_n, hi, wi), quantized from the
// float32 NCHW values in `x`.
fn quantized_input_word(c4: u32, hi: u32, wi: u32) -> u32 {
  let plane = xd.h * xd.w;
  let c = vec4<u32>(4u * c4) + vec4<u32>(0u, 1u, 2u, 3u);
  let valid = c < vec4<u32>(xd.c);
  let i = ((t_n * xd.c + 4u * c4) * xd.h + hi) * xd.w + wi;
  var v = vec4<f32>(0.0);
  if (valid.x) { v.x = bitcast<f32>(x[i]); }
  if (valid.y) { v.y = bitcast<f32>(x[i + plane]); }
  if (valid.z) { v.z = bitcast<f32>(x[i + 2u * plane]); }
  if (valid.w) { v.w = bitcast<f32>(x[i + 3u * plane]); }
  return quantize_word(v, valid, xd.zp, qp);
}

// Weight element e of the stage at input word ci: channel block t_c4_lo + e / (taps*CB), tap and
// word from e's rest (word fastest: consecutive elements are consecutive blocks in memory).
fn weight_block(e: u32, ci: u32) -> vec4<u32> {
  let tc = KH * KW * CB;
  let c = e / tc;
  let rest = e - c * tc;
  let tap = rest / CB;
  let cw = rest - tap * CB;
  if (e >= tc * TN * WG_N || t_c4_lo + c >= p.c4_out || ci + cw >= t_c4_in) { return vec4<u32>(0u); }
  return wts[(t_c4_lo + c) * p.k4_pg + tap * t_c4_in + ci + cw];
}

fn put_patch(e: u32, v: u32) {
  if (e < CB * PH * PW) { ptile[e] = v; }
}

fn put_weight(e: u32, v: vec4<u32>) {
  let tc = KH * KW * CB;
  if (e < tc * TN * WG_N) {
    let c = e / tc;
    wtile[(e - c * tc) * (TN * WG_N + 1u) + c] = v;
  }
}

@compute @workgroup_size(TR * TW * WG_N)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let NT = TR * TW * WG_N;
  let SBN = TN * WG_N + 1u;
  let NP = (CB * PH * PW + NT - 1u) / NT;  // patch words a thread loads a stage (<= 16)
  let NW = (KH * KW * CB * TN * WG_N + NT - 1u) / NT;  // weight blocks a thread a stage (<= 8)
  let tx = li % WG_N;
  let ty = li / WG_N;
  let col_tiles = (p.w4_out + TW - 1u) / TW;
  let row_tiles = (p.h_out + TR - 1u) / TR;
  let ct = wid.y % col_tiles;
  let rest = wid.y / col_tiles;
  let rt = rest % row_tiles;
  t_n = rest / row_tiles;
  t_c4_lo = wid.x * TN * WG_N;
  t_c4_in = cv.cin_pg / 4u;
  let ci_lo = wid.z * p.kspan;  // this slice's input words
  let ci_end = min(ci_lo + p.kspan, t_c4_in);
  t_hi0 = i32(rt * TR * SH) - i32(cv.pad_h);
  t_wi0 = i32(ct * TW * 4u * SW) - i32(cv.pad_w);
  let r_l = ty / TW;
  let wb_l = ty - r_l * TW;
  // the patch index of the thread's width 0 at tap (0, 0), word 0
  let at0 = r_l * SH * PW + wb_l * 4u * SW;

  var c00 = vec4<i32>(0);  // c<b><j>: channel j of the thread's channel block b, at its 4 widths
  var c01 = vec4<i32>(0);
  var c02 = vec4<i32>(0);
  var c03 = vec4<i32>(0);
  var c10 = vec4<i32>(0);
  var c11 = vec4<i32>(0);
  var c12 = vec4<i32>(0);
  var c13 = vec4<i32>(0);

  // The first stage's loads, then each iteration: registers -> shared, barrier, the next stage's
  // loads (in flight while this stage computes), compute, barrier.
  var p0 = patch_word(li, ci_lo);
  var p1 = 0u;
  var p2 = 0u;
  var p3 = 0u;
  var p4 = 0u;
  var p5 = 0u;
  var p6 = 0u;
  var p7 = 0u;
  var p8 = 0u;
  var p9 = 0u;
  var p10 = 0u;
  var p11 = 0u;
  var p12 = 0u;
  var p13 = 0u;
  var p14 = 0u;
  var p15 = 0u;
  if (NP > 1u) { p1 = patch_word(li + NT, ci_lo); }
  if (NP > 2u) { p2 = patch_word(li + 2u * NT, ci_lo); }
  if (NP > 3u) { p3 = patch_word(li + 3u * NT, ci_lo); }
  if (NP > 4u) { p4 = patch_word(li + 4u * NT, ci_lo); }
  if (NP > 5u) { p5 = patch_word(li + 5u * NT, ci_lo); }
  if (NP > 6u) { p6 = patch_word(li + 6u * NT, ci_lo); }
  if (NP > 7u) { p7 = patch_word(li + 7u * NT, ci_lo); }
  if (NP > 8u) { p8 = patch_word(li + 8u * NT, ci_lo); }
  if (NP > 9u) { p9 = patch_word(li + 9u * NT, ci_lo); }
  if (NP > 10u) { p10 = patch_word(li + 10u * NT, ci_lo); }
  if (NP > 11u) { p11 = patch_word(li + 11u * NT, ci_lo); }
  if (NP > 12u) { p12 = patch_word(li + 12u * NT, ci_lo); }
  if (NP > 13u) { p13 = patch_word(li + 13u * NT, ci_lo); }
  if (NP > 14u) { p14 = patch_word(li + 14u * NT, ci_lo); }
  if (NP > 15u) { p15 = patch_word(li + 15u * NT, ci_lo); }
  var w0 = weight_block(li, ci_lo);
  var w1 = vec4<u32>(0u);
  var w2 = vec4<u32>(0u);
  var w3 = vec4<u32>(0u);
  var w4 = vec4<u32>(0u);
  var w5 = vec4<u32>(0u);
  var w6 = vec4<u32>(0u);
  var w7 = vec4<u32>(0u);
  if (NW > 1u) { w1 = weight_block(li + NT, ci_lo); }
  if (NW > 2u) { w2 = weight_block(li + 2u * NT, ci_lo); }
  if (NW > 3u) { w3 = weight_block(li + 3u * NT, ci_lo); }
  if (NW > 4u) { w4 = weight_block(li + 4u * NT, ci_lo); }
  if (NW > 5u) { w5 = weight_block(li + 5u * NT, ci_lo); }
  if (NW > 6u) { w6 = weight_block(li + 6u * NT, ci_lo); }
  if (NW > 7u) { w7 = weight_block(li + 7u * NT, ci_lo); }
  for (var ci = ci_lo; ci < ci_end; ci += CB) {
    put_patch(li, p0);
    if (NP > 1u) { put_patch(li + NT, p1); }
    if (NP > 2u) { put_patch(li + 2u * NT, p2); }
    if (NP > 3u) { put_patch(li + 3u * NT, p3); }
    if (NP > 4u) { put_patch(li + 4u * NT, p4); }
    if (NP > 5u) { put_patch(li + 5u * NT, p5); }
    if (NP > 6u) { put_patch(li + 6u * NT, p6); }
    if (NP > 7u) { put_patch(li + 7u * NT, p7); }
    if (NP > 8u) { put_patch(li + 8u * NT, p8); }
    if (NP > 9u) { put_patch(li + 9u * NT, p9); }
    if (NP > 10u) { put_patch(li + 10u * NT, p10); }
    if (NP > 11u) { put_patch(li + 11u * NT, p11); }
    if (NP > 12u) { put_patch(li + 12u * NT, p12); }
    if (NP > 13u) { put_patch(li + 13u * NT, p13); }
    if (NP > 14u) { put_patch(li + 14u * NT, p14); }
    if (NP > 15u) { put_patch(li + 15u * NT, p15); }
    put_weight(li, w0);
    if (NW > 1u) { put_weight(li + NT, w1); }
    if (NW > 2u) { put_weight(li + 2u * NT, w2); }
    if (NW > 3u) { put_weight(li + 3u * NT, w3); }
    if (NW > 4u) { put_weight(li + 4u * NT, w4); }
    if (NW > 5u) { put_weight(li + 5u * NT, w5); }
    if (NW > 6u) { put_weight(li + 6u * NT, w6); }
    if (NW > 7u) { put_weight(li + 7u * NT, w7); }
    workgroupBarrier();
    let cn = ci + CB;
    if (cn < ci_end) {
      p0 = patch_word(li, cn);
      if (NP > 1u) { p1 = patch_word(li + NT, cn); }
      if (NP > 2u) { p2 = patch_word(li + 2u * NT, cn); }
      if (NP > 3u) { p3 = patch_word(li + 3u * NT, cn); }
      if (NP > 4u) { p4 = patch_word(li + 4u * NT, cn); }
      if (NP > 5u) { p5 = patch_word(li + 5u * NT, cn); }
      if (NP > 6u) { p6 = patch_word(li + 6u * NT, cn); }
      if (NP > 7u) { p7 = patch_word(li + 7u * NT, cn); }
      if (NP > 8u) { p8 = patch_word(li + 8u * NT, cn); }
      if (NP > 9u) { p9 = patch_word(li + 9u * NT, cn); }
      if (NP > 10u) { p10 = patch_word(li + 10u * NT, cn); }
      if (NP > 11u) { p11 = patch_word(li + 11u * NT, cn); }
      if (NP > 12u) { p12 = patch_word(li + 12u * NT, cn); }
      if (NP > 13u) { p13 = patch_word(li + 13u * NT, cn); }
      if (NP > 14u) { p14 = patch_word(li + 14u * NT, cn); }
      if (NP > 15u) { p15 = patch_word(li + 15u * NT, cn); }
      w0 = weight_block(li, cn);
      if (NW > 1u) { w1 = weight_block(li + NT, cn); }
      if (NW > 2u) { w2 = weight_block(li + 2u * NT, cn); }
      if (NW > 3u) { w3 = weight_block(li + 3u * NT, cn); }
      if (NW > 4u) { w4 = weight_block(li + 4u * NT, cn); }
      if (NW > 5u) { w5 = weight_block(li + 5u * NT, cn); }
      if (NW > 6u) { w6 = weight_block(li + 6u * NT, cn); }
      if (NW > 7u) { w7 = weight_block(li + 7u * NT, cn); }
    }
    for (var th = 0u; th < KH; th++) {
      for (var tw = 0u; tw < KW; tw++) {
        let tap = th * KW + tw;
        let at = at0 + th * DH * PW + tw * DW;
        for (var cw = 0u; cw < CB; cw++) {
          let e = cw * (PH * PW) + at;
          // the 4 widths' words (SW apart in the patch)
          let xa = vec4<u32>(ptile[e], ptile[e + SW], ptile[e + 2u * SW], ptile[e + 3u * SW]);
          let row = (tap * CB + cw) * SBN;
          let wa = wtile[row + tx];
          c00 = mac(c00, xa, wa.x);
          c01 = mac(c01, xa, wa.y);
          c02 = mac(c02, xa, wa.z);
          c03 = mac(c03, xa, wa.w);
          if (TN > 1u) {
            let wb = wtile[row + tx + WG_N];
            c10 = mac(c10, xa, wb.x);
            c11 = mac(c11, xa, wb.y);
            c12 = mac(c12, xa, wb.z);
            c13 = mac(c13, xa, wb.w);
          }
        }
      }
    }
    workgroupBarrier();
  }

  let h = rt * TR + r_l;
  let wb = ct * TW + wb_l;
  // m-blocks past the output get index m_count: add_partial and store_reduced skip them
  let mb = select(p.m_count, (t_n * p.h_out + h) * p.w4_out + wb, h < p.h_out && wb < p.w4_out);
  if (REDUCE) {
    add_partial(mb, t_c4_lo + tx, p.c4_out, c00, c01, c02, c03);
    if (TN > 1u) { add_partial(mb, t_c4_lo + tx + WG_N, p.c4_out, c10, c11, c12, c13); }
    if (arrived_last(li, 16u * p.m_count * p.c4_out + wid.y * nwg.x + wid.x)) {
      store_reduced(mb, t_c4_lo + tx, p.c4_out);
      if (TN > 1u) { store_reduced(mb, t_c4_lo + tx + WG_N, p.c4_out); }
    }
    return;
  }
  if (mb >= p.m_count) { return; }
  if (t_c4_lo + tx < p.c4_out) { store_tile(mb, t_c4_lo + tx, c00, c01, c02, c03); }
  if (TN > 1u && t_c4_lo + tx + WG_N < p.c4_out) { store_tile(mb, t_c4_lo + tx + WG_N, c10, c11, c12, c13); }
}
