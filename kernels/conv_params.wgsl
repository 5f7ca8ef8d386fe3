// conv_params.wgsl -- included by the im2col kernels (no entry point): the conv geometry.
// The im2col matrix A is a 4W4C tensor [N, K, H_out, W_pad]: block mb*k4 + k4i holds rows
// (widths) 4*(mb % w4_out)..+3 of output row mb / w4_out = n*h_out + h_out_i, columns (k)
// 4*k4i..+3. Column k of group g: k = g*k_pg + (kh*KW + kw)*cin_pg + ic; columns with
// (k % k_pg) >= taps_pg are padding. A dispatch covers m-blocks [mb_base, mb_base + m_count)
// and writes them from block 0 of its A binding (so big A matrices are done in chunks).
struct ConvParams {
  h_out: u32, w_out: u32, w4_out: u32, k4: u32,
  kh: u32, kw: u32, stride_h: u32, stride_w: u32,
  pad_h: u32, pad_w: u32, dil_h: u32, dil_w: u32,
  cin_pg: u32, taps_pg: u32, k_pg: u32, mb_base: u32,
  m_count: u32, _p0: u32, _p1: u32, _p2: u32,
}
