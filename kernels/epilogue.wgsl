// epilogue.wgsl -- included by the GEMM kernels (no entry point): the requantizing epilogue
// (spec section 2) and the store of one 4-width x 4-channel output tile. The including file
// declares `chan` (per-channel records), `o` (output words), `od` (output TensorDesc) and
// `p` (GemmParams).
//   adj = acc - zp_in*wsum; y = adj*scale + bias; relu; q = clamp(rint(y*inv_s_out) + zp_out)
// Overflow: |product| <= 2^14 and |zp_in*wsum| <= 2^14 per column, so int32 is exact for
// K_per_group < 2^16 columns (the host checks).
struct GemmParams {
  m_count: u32, mb_base: u32, k4: u32, k4_pg: u32,     // m-blocks here, first m-block, K/4, K_pg/4
  c4_out: u32, cout_pg: u32, c_out: u32, h_out: u32,
  w4_out: u32, w_out: u32, zp_in: i32, zp_out: i32,
  inv_s_out: f32, relu: u32, splits: u32, kspan: u32, // split-K: number of K slices, k4 per slice
}
struct Chan { wsum: i32, scale: f32, bias: f32, _pad: f32, }

fn requant(acc: i32, ch: Chan) -> i32 {
  var y = f32(acc - p.zp_in * ch.wsum) * ch.scale + ch.bias;
  if (p.relu != 0u) { y = max(y, 0.0); }
  // Clamp before the int conversion so huge values stay defined; +-512 cannot change the result.
  let r = clamp(round(y * p.inv_s_out), -512.0, 512.0);
  return clamp(i32(r) + p.zp_out, -128, 127);
}

// Requantize and store the tile of m-block `mb` (index within this dispatch) x channel block
// `c4`; acc[j][i] = accumulator of channel 4*c4+j at width 4*w4+i. Slots past C_out or W_out
// hold zp_out; in 4C/4C1W outputs words of widths >= W_out are not written (they don't exist).
fn store_tile(mb: u32, c4: u32, acc: array<vec4<i32>, 4>) {
  let gmb = p.mb_base + mb;
  let w4 = gmb % p.w4_out;
  let row = gmb / p.w4_out;
  let h = row % p.h_out;
  let n = row / p.h_out;
  var q: array<vec4<i32>, 4>;  // q[width][channel]
  for (var j = 0u; j < 4u; j++) {
    let oc = c4 * 4u + j;
    let ch = chan[oc];
    for (var i = 0u; i < 4u; i++) {
      var v = p.zp_out;
      if (oc < p.c_out && w4 * 4u + i < p.w_out) { v = requant(acc[j][i], ch); }
      q[i][j] = v;
    }
  }
  for (var i = 0u; i < 4u; i++) {
    let w = w4 * 4u + i;
    if (w < od.w_alloc) {
      o[word_index(od, n, c4, h, w)] = pack4xI8(q[i]);
    }
  }
}
