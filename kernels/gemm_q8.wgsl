// gemm_q8.wgsl -- int8 GEMM + requantize epilogue: out = requant(A x W^T), A in 4W4C blocks.
// In:  `a`, the im2col matrix (or a 4W4C activation for pointwise convs): block mb*k4 + k
//      = 4 rows (output widths 4*(mb % w4_out)..+3 of row mb / w4_out) x 4 columns (k bytes).
//      `a` holds m-blocks [mb_base, mb_base + m_count) from its block 0.
//      `wts`, prepacked weights: block c4*k4_pg + k = 4 words, word j = output channel 4*c4+j,
//      bytes = that channel's group-relative columns 4k..4k+3 (0 past C_out or K_per_group).
//      `chan[oc]` = (weight sum, s_in*s_w[oc], bias[oc]) for oc < 4*c4_out (padding: zeros).
// Out: `o`, the output tensor in the layout of `od` (4W4C, 4C or 4C1W). Thread t computes a
//      tile of TM m-blocks x TN channel blocks (4*TM widths x 4*TN channels), (mt, nt) with nt
//      fastest, and writes only its own words: in 4W4C every word of its blocks (padding slots
//      = zp_out), in 4C/4C1W the words of widths < W_out (channel padding bytes = zp_out).
// Groups: output channel oc reads A columns [g*k4_pg, (g+1)*k4_pg) blocks, g = g_base + oc / cout_pg
//      (g_base: the first group of a dispatch over a slice of whole groups).
//      MODE 0: groups == 1; MODE 1: cout_pg % 4 == 0 (a channel block is in one group);
//      MODE 2: any (each channel finds its own group).
// Epilogue: kernels/epilogue.wgsl.
// #include "layout.wgsl"
// #include "epilogue.wgsl"
// #include "dot4.wgsl"

override WG: u32 = 64u;
override TM: u32 = 1u;     // m-blocks per thread (TM * TN <= 8)
override TN: u32 = 2u;     // channel blocks per thread
override MODE: u32 = 0u;

// #include "gemm_bindings.wgsl"

const MAX_ACC: u32 = 32u;  // (TM*TN <= 8 tiles) x 4 channels, each a vec4 over 4 widths

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = linear_id(gid, nwg, WG);
  let nt_count = (p.c4_out + TN - 1u) / TN;
  let mt = t / nt_count;
  let mb0 = mt * TM;
  if (mb0 >= p.m_count) { return; }
  let c40 = (t % nt_count) * TN;

  // Row start (in blocks) of each m-block and column start of each channel's group.
  var arow: array<u32, 8>;
  for (var mi = 0u; mi < TM; mi++) {
    arow[mi] = min(mb0 + mi, p.m_count - 1u) * p.k4 + p.g_base * p.k4_pg;
  }
  var kb: array<u32, 32>;
  for (var ni = 0u; ni < TN; ni++) {
    for (var j = 0u; j < 4u; j++) {
      let oc = min((c40 + ni) * 4u + j, p.c_out - 1u);
      kb[ni * 4u + j] = select(0u, (oc / p.cout_pg) * p.k4_pg, MODE != 0u);
    }
  }
  var acc: array<vec4<i32>, MAX_ACC>;
  for (var k = 0u; k < p.k4_pg; k++) {
    var a0: array<vec4<u32>, 8>;
    if (MODE == 0u) {
      for (var mi = 0u; mi < TM; mi++) { a0[mi] = a[arow[mi] + k]; }
    }
    for (var ni = 0u; ni < TN; ni++) {
      let wb = wts[min(c40 + ni, p.c4_out - 1u) * p.k4_pg + k];
      for (var mi = 0u; mi < TM; mi++) {
        var ab = a0[mi];
        if (MODE == 1u) { ab = a[arow[mi] + kb[ni * 4u] + k]; }
        for (var j = 0u; j < 4u; j++) {
          if (MODE == 2u) { ab = a[arow[mi] + kb[ni * 4u + j] + k]; }
          let wj = wb[j];
          acc[(mi * TN + ni) * 4u + j] += vec4<i32>(
            dot4I8Packed(ab.x, wj), dot4I8Packed(ab.y, wj),
            dot4I8Packed(ab.z, wj), dot4I8Packed(ab.w, wj));
        }
      }
    }
  }

  // Epilogue: requantize and write this thread's tiles.
  for (var mi = 0u; mi < TM; mi++) {
    if (mb0 + mi >= p.m_count) { break; }
    for (var ni = 0u; ni < TN; ni++) {
      if (c40 + ni >= p.c4_out) { break; }
      let base = (mi * TN + ni) * 4u;
      store_tile(mb0 + mi, c40 + ni, acc[base], acc[base + 1u], acc[base + 2u], acc[base + 3u]);
    }
  }
}
