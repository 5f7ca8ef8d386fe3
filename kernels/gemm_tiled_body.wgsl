// gemm_tiled_body.wgsl -- the tiled GEMM, included by gemm_q8_tiled.wgsl and gemm_q8_dw_in.wgsl
// (each defines `fn dw_block(m: MPos, c4: u32) -> vec4<u32>`, DW_IN's A block, and an entry
// point that calls `tiled_gemm`): int8 GEMM with workgroup tiles staged in shared memory, for
// groups == 1 or C_out_per_group % 4 == 0; optional split-K; optionally implicit (im2col fused
// in).
// In:  `a`, A as 4W4C blocks (block mb*k4 + k = 4 rows x 4 k-bytes; m-blocks [mb_base,
//      mb_base + m_count) from block 0), or with IMPLICIT the 4W4C input itself (described by
//      `xd`; C_in_per_group % 4 == 0): A's blocks are then gathered from it while filling the
//      shared tile (gather_4w4c.wgsl, conv geometry `cv`), and no A matrix exists in memory.
//      With DW_IN (gemm_q8_dw_in.wgsl only), `a` is a depthwise conv's 4W4C input and A its
//      output (an inverted residual's, before this 1x1 conv), computed block by block as it is
//      staged (dw_in.wgsl: `dw_block`, bindings `dwx`, `dq`; `xd`, `cv` describe that conv).
//      `wts`, prepacked weights (block c4*k4_pg + k = 4 words,
//      word j = channel 4*c4+j's group-relative k-bytes 4k..4k+3); `chan`, epilogue records.
// Workgroup (bx, by, bz): channel blocks [g*c4_pg + bx*BN, +BN) of group g = bz % groups,
//      m-blocks [by*BM, +BM), K slice s = bz / groups: k-blocks [s*kspan, (s+1)*kspan) of the
//      group's columns (A column blocks g*k4_pg + k). BM = TM*WG_M m-blocks, BN = TN*WG_N blocks.
// Per stage, BK k-blocks of A (BM x BK vec4) and W (BN x BK vec4) go to shared memory (global
//      loads coalesced along k; out-of-range blocks = 0; rows padded by one vec4 against bank
//      conflicts). Software-pipelined: each thread's NA + NB (<= 8 + 8) global loads for the next
//      stage are issued into named registers before the current stage is computed, and the
//      shared operands of the next k-block are read before the current one's dot products
//      (k-blocks in pairs through two register sets; BK even). Thread (ty, tx) owns m-blocks
//      ty (+ WG_M if TM = 2) and channel blocks tx (+ WG_N if TN = 2): with TM = TN = 2 an
//      8-row x 8-channel register tile in 16 named vec4 accumulators (named, not an array, so
//      it stays in registers), 64 dot4I8Packed per k-block from 4 vec4 shared loads. TM or TN
//      = 1 halves the tile, both quarter it (the accumulators left unused are compiled away):
//      2x or 4x the threads for the same output, which GEMMs too small to fill the GPU need
//      more than they need dots per shared load (the H100 tuner picks 4x4 for most shapes).
// Out: PARTIAL == false: requantized tiles through kernels/epilogue.wgsl (each thread writes
//      only its own tiles' words). PARTIAL == true: raw int32 sums to `part` at
//      ((s*m_count + mb)*c4_out + c4)*4 + j (vec4 over widths), for gemm_q8_splitk.wgsl.
//      REDUCE == true (K split, no reduce pass): each slice adds its int32 sums into `ksum`, and
//      the slice of a tile that arrives last takes them and stores the requantized tile
//      (ksum_reduce.wgsl: the layout of `ksum`, and why the order holds on Vulkan only).
// Overflow: see epilogue.wgsl (int32 exact for K_per_group < 2^16).
// #include "layout.wgsl"
// #include "epilogue.wgsl"
// #include "conv_params.wgsl"
// #include "gather_4w4c.wgsl"
// #include "dot4.wgsl"
// #include "ksum_reduce.wgsl"

override WG_M: u32 = 16u;   // threads along M; the tile has TM*WG_M m-blocks (4*TM*WG_M rows)
override WG_N: u32 = 16u;   // threads along N; the tile has TN*WG_N channel blocks
override TM: u32 = 2u;      // m-blocks per thread: 1 or 2
override TN: u32 = 2u;      // channel blocks per thread: 1 or 2
override BK: u32 = 8u;      // k-blocks per shared-memory stage
override PARTIAL: bool = false;
override REDUCE: bool = false;    // K split; the last slice of a tile reduces it (no reduce pass)
override IMPLICIT: bool = false;  // `a` is the 4W4C input; gather A blocks on the fly
override DW_IN: bool = false;  // `a` is a depthwise conv's input; A blocks are its output (dw_block)

// #include "gemm_tiled_bindings.wgsl"
@group(0) @binding(11) var<storage, read_write> ksum: array<atomic<i32>>;  // REDUCE: sums, counters

// Block (m-block mb of this dispatch, k-block kcol of A's columns).

// Row r of As holds k-block r of the stage for the tile's TM*WG_M m-blocks (+1 pad), same for Bs.
var<workgroup> As: array<vec4<u32>, BK * (TM * WG_M + 1u)>;
var<workgroup> Bs: array<vec4<u32>, BK * (TN * WG_N + 1u)>;

// #include "gemm_tiled_emit.wgsl"

// Per-thread constants of the tile, set once in main (module-scope so the loaders can see them).
var<private> t_mb_lo: u32;
var<private> t_c4_lo: u32;
var<private> t_c4_end: u32;
var<private> t_a_col: u32;
var<private> t_k_end: u32;

// The thread's register tile: accumulator c{i}{j}{w} = m-block i, channel block j, channel w of
// it, as 4 rows (widths). Named, not an array, so it stays in registers (module-scope so that
// mac_block can update it; private variables start at 0).
var<private> c000: vec4<i32>;
var<private> c001: vec4<i32>;
var<private> c002: vec4<i32>;
var<private> c003: vec4<i32>;
var<private> c010: vec4<i32>;
var<private> c011: vec4<i32>;
var<private> c012: vec4<i32>;
var<private> c013: vec4<i32>;
var<private> c100: vec4<i32>;
var<private> c101: vec4<i32>;
var<private> c102: vec4<i32>;
var<private> c103: vec4<i32>;
var<private> c110: vec4<i32>;
var<private> c111: vec4<i32>;
var<private> c112: vec4<i32>;
var<private> c113: vec4<i32>;

// One k-block's dot products: operands x0 (x1) of the thread's first (second, TM = 2) m-block
// against w0 (w1) of its first (second, TN = 2) channel block. Accumulators left unused by
// TM = 1 or TN = 1 are compiled away.
fn mac_block(x0: vec4<u32>, x1: vec4<u32>, w0: vec4<u32>, w1: vec4<u32>) {
  c000 = mac(c000, x0, w0[0]);
  c001 = mac(c001, x0, w0[1]);
  c002 = mac(c002, x0, w0[2]);
  c003 = mac(c003, x0, w0[3]);
  if (TN > 1u) {
    c010 = mac(c010, x0, w1[0]);
    c011 = mac(c011, x0, w1[1]);
    c012 = mac(c012, x0, w1[2]);
    c013 = mac(c013, x0, w1[3]);
  }
  if (TM > 1u) {
    c100 = mac(c100, x1, w0[0]);
    c101 = mac(c101, x1, w0[1]);
    c102 = mac(c102, x1, w0[2]);
    c103 = mac(c103, x1, w0[3]);
  }
  if (TM > 1u && TN > 1u) {
    c110 = mac(c110, x1, w1[0]);
    c111 = mac(c111, x1, w1[1]);
    c112 = mac(c112, x1, w1[2]);
    c113 = mac(c113, x1, w1[3]);
  }
}

// One of a thread's (up to 8) A loads per stage: element e = li + r*NT of every stage's tile, so
// its m-block is fixed and only the k-block moves. Decoded once, before the stage loop.
struct ASlot {
  ok: u32,    // 1: e is inside the tile and its m-block inside this dispatch
  kk: u32,    // k-block within a stage (e % BK)
  mb: u32,    // m-block within this dispatch
  m: MPos,    // IMPLICIT, DW_IN: its output position, decoded once (two divisions less a load)
}

fn a_slot(e: u32) -> ASlot {
  var sl: ASlot;
  sl.mb = t_mb_lo + e / BK;
  sl.kk = e % BK;
  sl.ok = select(0u, 1u, e < BK * TM * WG_M && sl.mb < p.m_count);
  if (IMPLICIT || DW_IN) { sl.m = m_pos(cv, p.mb_base + sl.mb); }
  return sl;
}

// The slot's A block at stage k0: from A, or with IMPLICIT gathered from the 4W4C input.
fn load_a(sl: ASlot, k0: u32) -> vec4<u32> {
  let k = k0 + sl.kk;
  if (sl.ok == 0u || k >= t_k_end) { return vec4<u32>(0u); }
  if (DW_IN) { return dw_block(sl.m, t_a_col + k); }
  if (!IMPLICIT) { return a[sl.mb * p.k4 + t_a_col + k]; }
  return gather_at(xd, cv, sl.m, k_pos(cv, t_a_col + k));
}

// Element e of a stage's W tile (k-block k0 + e % BK of channel block t_c4_lo + e / BK), 0 outside.
fn load_b(e: u32, k0: u32) -> vec4<u32> {
  let c4 = t_c4_lo + e / BK;
  let k = k0 + e % BK;
  if (e < BK * TN * WG_N && c4 < t_c4_end && k < t_k_end) { return wts[c4 * p.k4_pg + k]; }
  return vec4<u32>(0u);
}

// The kernel of workgroup `wid` (of `nwg`), thread `li`: each entry file's main calls it
// (@workgroup_size(WG_M * WG_N)).
fn tiled_gemm(wid: vec3<u32>, nwg: vec3<u32>, li: u32) {
  let BM = TM * WG_M;
  let BN = TN * WG_N;
  let SA = BM + 1u;  // padded row strides
  let SB = BN + 1u;
  let NT = WG_M * WG_N;
  let groups = p.c_out / p.cout_pg;
  let c4_pg = select(p.c4_out, p.cout_pg / 4u, groups > 1u);
  let g = wid.z % groups;
  let s = wid.z / groups;
  let c4_lo = g * c4_pg + wid.x * BN;
  let c4_end = min((g + 1u) * c4_pg, p.c4_out);
  let mb_lo = wid.y * BM;
  let k_lo = s * p.kspan;
  let k_end = min(k_lo + p.kspan, p.k4_pg);
  let a_col = (p.g_base + g) * p.k4_pg;  // g_base: first group of a slice of whole groups
  let tx = li % WG_N;
  let ty = li / WG_N;
  t_mb_lo = mb_lo;
  t_c4_lo = c4_lo;
  t_c4_end = c4_end;
  t_a_col = a_col;
  t_k_end = k_end;
  let NA = (BK * BM + NT - 1u) / NT;  // global loads per thread per stage (<= 8)
  let NB = (BK * BN + NT - 1u) / NT;
  let sa0 = a_slot(li);
  let sa1 = a_slot(li + NT);
  let sa2 = a_slot(li + 2u * NT);
  let sa3 = a_slot(li + 3u * NT);
  let sa4 = a_slot(li + 4u * NT);
  let sa5 = a_slot(li + 5u * NT);
  let sa6 = a_slot(li + 6u * NT);
  let sa7 = a_slot(li + 7u * NT);

  // Stage k_lo's global loads, then each iteration: registers -> shared, barrier, next stage's
  // loads (in flight while this stage computes), compute, barrier.
  var ra0 = load_a(sa0, k_lo);
  var ra1 = vec4<u32>(0u);
  var ra2 = vec4<u32>(0u);
  var ra3 = vec4<u32>(0u);
  var ra4 = vec4<u32>(0u);
  var ra5 = vec4<u32>(0u);
  var ra6 = vec4<u32>(0u);
  var ra7 = vec4<u32>(0u);
  if (NA > 1u) { ra1 = load_a(sa1, k_lo); }
  if (NA > 2u) { ra2 = load_a(sa2, k_lo); }
  if (NA > 3u) { ra3 = load_a(sa3, k_lo); }
  if (NA > 4u) { ra4 = load_a(sa4, k_lo); }
  if (NA > 5u) { ra5 = load_a(sa5, k_lo); }
  if (NA > 6u) { ra6 = load_a(sa6, k_lo); }
  if (NA > 7u) { ra7 = load_a(sa7, k_lo); }
  var rb0 = load_b(li, k_lo);
  var rb1 = vec4<u32>(0u);
  var rb2 = vec4<u32>(0u);
  var rb3 = vec4<u32>(0u);
  var rb4 = vec4<u32>(0u);
  var rb5 = vec4<u32>(0u);
  var rb6 = vec4<u32>(0u);
  var rb7 = vec4<u32>(0u);
  if (NB > 1u) { rb1 = load_b(li + NT, k_lo); }
  if (NB > 2u) { rb2 = load_b(li + 2u * NT, k_lo); }
  if (NB > 3u) { rb3 = load_b(li + 3u * NT, k_lo); }
  if (NB > 4u) { rb4 = load_b(li + 4u * NT, k_lo); }
  if (NB > 5u) { rb5 = load_b(li + 5u * NT, k_lo); }
  if (NB > 6u) { rb6 = load_b(li + 6u * NT, k_lo); }
  if (NB > 7u) { rb7 = load_b(li + 7u * NT, k_lo); }
  for (var k0 = k_lo; k0 < k_end; k0 += BK) {
    // Element e = li + r*NT of a tile goes to row e % BK, column e / BK.
    if (li < BK * BM) { As[(li % BK) * SA + li / BK] = ra0; }
    if (NA > 1u && li + NT < BK * BM) { As[((li + NT) % BK) * SA + (li + NT) / BK] = ra1; }
    if (NA > 2u && li + 2u * NT < BK * BM) { As[((li + 2u * NT) % BK) * SA + (li + 2u * NT) / BK] = ra2; }
    if (NA > 3u && li + 3u * NT < BK * BM) { As[((li + 3u * NT) % BK) * SA + (li + 3u * NT) / BK] = ra3; }
    if (NA > 4u && li + 4u * NT < BK * BM) { As[((li + 4u * NT) % BK) * SA + (li + 4u * NT) / BK] = ra4; }
    if (NA > 5u && li + 5u * NT < BK * BM) { As[((li + 5u * NT) % BK) * SA + (li + 5u * NT) / BK] = ra5; }
    if (NA > 6u && li + 6u * NT < BK * BM) { As[((li + 6u * NT) % BK) * SA + (li + 6u * NT) / BK] = ra6; }
    if (NA > 7u && li + 7u * NT < BK * BM) { As[((li + 7u * NT) % BK) * SA + (li + 7u * NT) / BK] = ra7; }
    if (li < BK * BN) { Bs[(li % BK) * SB + li / BK] = rb0; }
    if (NB > 1u && li + NT < BK * BN) { Bs[((li + NT) % BK) * SB + (li + NT) / BK] = rb1; }
    if (NB > 2u && li + 2u * NT < BK * BN) { Bs[((li + 2u * NT) % BK) * SB + (li + 2u * NT) / BK] = rb2; }
    if (NB > 3u && li + 3u * NT < BK * BN) { Bs[((li + 3u * NT) % BK) * SB + (li + 3u * NT) / BK] = rb3; }
    if (NB > 4u && li + 4u * NT < BK * BN) { Bs[((li + 4u * NT) % BK) * SB + (li + 4u * NT) / BK] = rb4; }
    if (NB > 5u && li + 5u * NT < BK * BN) { Bs[((li + 5u * NT) % BK) * SB + (li + 5u * NT) / BK] = rb5; }
    if (NB > 6u && li + 6u * NT < BK * BN) { Bs[((li + 6u * NT) % BK) * SB + (li + 6u * NT) / BK] = rb6; }
    if (NB > 7u && li + 7u * NT < BK * BN) { Bs[((li + 7u * NT) % BK) * SB + (li + 7u * NT) / BK] = rb7; }
    workgroupBarrier();
    let kn = k0 + BK;
    if (kn < k_end) {
      ra0 = load_a(sa0, kn);
      if (NA > 1u) { ra1 = load_a(sa1, kn); }
      if (NA > 2u) { ra2 = load_a(sa2, kn); }
      if (NA > 3u) { ra3 = load_a(sa3, kn); }
      if (NA > 4u) { ra4 = load_a(sa4, kn); }
      if (NA > 5u) { ra5 = load_a(sa5, kn); }
      if (NA > 6u) { ra6 = load_a(sa6, kn); }
      if (NA > 7u) { ra7 = load_a(sa7, kn); }
      rb0 = load_b(li, kn);
      if (NB > 1u) { rb1 = load_b(li + NT, kn); }
      if (NB > 2u) { rb2 = load_b(li + 2u * NT, kn); }
      if (NB > 3u) { rb3 = load_b(li + 3u * NT, kn); }
      if (NB > 4u) { rb4 = load_b(li + 4u * NT, kn); }
      if (NB > 5u) { rb5 = load_b(li + 5u * NT, kn); }
      if (NB > 6u) { rb6 = load_b(li + 6u * NT, kn); }
      if (NB > 7u) { rb7 = load_b(li + 7u * NT, kn); }
    }
    // k-blocks in pairs, through two register sets: p holds the even k-block, q the odd one. Each
    // half reads the other set's operands before its own dot products, so no operand is ever
    // copied between registers (rotating one prefetch set cost 16 moves per 64 dots: ~30% on
    // the H100). BK is even. Operands of a second m-block (channel block) only with TM (TN) 2.
    var px0 = As[ty];
    var px1 = vec4<u32>(0u);
    var pw0 = Bs[tx];
    var pw1 = vec4<u32>(0u);
    if (TM > 1u) { px1 = As[ty + WG_M]; }
    if (TN > 1u) { pw1 = Bs[tx + WG_N]; }
    for (var kk = 0u; kk < BK; kk += 2u) {
      let qx0 = As[(kk + 1u) * SA + ty];
      var qx1 = vec4<u32>(0u);
      let qw0 = Bs[(kk + 1u) * SB + tx];
      var qw1 = vec4<u32>(0u);
      if (TM > 1u) { qx1 = As[(kk + 1u) * SA + ty + WG_M]; }
      if (TN > 1u) { qw1 = Bs[(kk + 1u) * SB + tx + WG_N]; }
      mac_block(px0, px1, pw0, pw1);
      let kn2 = min(kk + 2u, BK - 1u);  // the next pair's even k-block (the last pair rereads)
      px0 = As[kn2 * SA + ty];
      pw0 = Bs[kn2 * SB + tx];
      if (TM > 1u) { px1 = As[kn2 * SA + ty + WG_M]; }
      if (TN > 1u) { pw1 = Bs[kn2 * SB + tx + WG_N]; }
      mac_block(qx0, qx1, qw0, qw1);
    }
    workgroupBarrier();
  }

  if (REDUCE) {
    add_partial(mb_lo + ty, c4_lo + tx, c4_end, c000, c001, c002, c003);
    if (TN > 1u) { add_partial(mb_lo + ty, c4_lo + tx + WG_N, c4_end, c010, c011, c012, c013); }
    if (TM > 1u) { add_partial(mb_lo + ty + WG_M, c4_lo + tx, c4_end, c100, c101, c102, c103); }
    if (TM > 1u && TN > 1u) { add_partial(mb_lo + ty + WG_M, c4_lo + tx + WG_N, c4_end, c110, c111, c112, c113); }
    if (arrived_last(li, p.m_count * p.c4_out * 16u + (g * nwg.y + wid.y) * nwg.x + wid.x)) {
      store_reduced(mb_lo + ty, c4_lo + tx, c4_end);
      if (TN > 1u) { store_reduced(mb_lo + ty, c4_lo + tx + WG_N, c4_end); }
      if (TM > 1u) { store_reduced(mb_lo + ty + WG_M, c4_lo + tx, c4_end); }
      if (TM > 1u && TN > 1u) { store_reduced(mb_lo + ty + WG_M, c4_lo + tx + WG_N, c4_end); }
    }
    return;
  }
  emit(mb_lo + ty, c4_lo + tx, s, c4_end, c000, c001, c002, c003);
  if (TN > 1u) { emit(mb_lo + ty, c4_lo + tx + WG_N, s, c4_end, c010, c011, c012, c013); }
  if (TM > 1u) { emit(mb_lo + ty + WG_M, c4_lo + tx, s, c4_end, c100, c101, c102, c103); }
  if (TM > 1u && TN > 1u) { emit(mb_lo + ty + WG_M, c4_lo + tx + WG_N, s, c4_end, c110, c111, c112, c113); }
}
