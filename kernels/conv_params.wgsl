// conv_params.wgsl -- included by the im2col kernels (no entry point): the conv geometry.
// The im2col matrix A is a 4W4C tensor [N, K, H_out, W_pad]: block mb*k4 + k4i holds rows
// (widths) 4*(mb % w4_out)..+3 of output row mb / w4_out = n*h_out + h_out_i, columns (k)
// 4*k4i..+3. Column k of group g: k = g*k_pg + (kh*KW + kw)*cin_pg + ic; columns with
// (k % k_pg) >= taps_pg are padding. A dispatch covers m-blocks [mb_base, mb_base + m_count)
// and writes them from block 0 of its A binding (so big A matrices are done in chunks).
// #include "struct_conv_params.wgsl"
