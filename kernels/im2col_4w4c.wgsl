// im2col_4w4c.wgsl -- im2col for a 4W4C input with C_in_per_group % 4 == 0 (whole-word copies).
// In:  `src`, the input in 4W4C (addressed through `d`, layout.wgsl); it may be a window of
//      the input's rows (d.base = its first word), big inputs are bound so.
// Out: `dst`, A as 4W4C blocks (conv_params.wgsl). Thread t owns RUN consecutive k-blocks of one
//      m-block: with runs = ceil(k4 / RUN), blocks (mb, k) for mb = t / runs (+ mb_base) and
//      k = (t % runs)*RUN .. +RUN-1 (< k4), block index mb*k4 + k; it decodes the position once
//      and steps it per block (gather_4w4c.wgsl). Since cin_pg % 4 == 0, the 4 columns of a
//      k-block share (kh, kw) and are the 4 channels of one input word: each row is one u32 copy.
//      Honors stride_w, dilation, padding, groups and batch. k_pg == taps_pg (no padding columns).
// Out-of-input taps and rows past W_out get a word of 4 zero points. No overflow.
// #include "layout.wgsl"
// #include "conv_params.wgsl"
// #include "gather_4w4c.wgsl"

override WG: u32 = 64u;
override RUN: u32 = 1u;  // k-blocks per thread (host: per adapter type; dispatches m_count * ceil(k4 / RUN))

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;
@group(0) @binding(2) var<uniform> d: TensorDesc;
@group(0) @binding(3) var<uniform> p: ConvParams;

fn load_word(i: u32) -> u32 {
  return src[i];
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = linear_id(gid, nwg, WG);
  let runs = (p.k4 + RUN - 1u) / RUN;
  if (t >= p.m_count * runs) { return; }
  let mb = t / runs;
  let k0 = (t - mb * runs) * RUN;
  let m = m_pos(p, p.mb_base + mb);
  var kp = k_pos(p, k0);
  for (var i = 0u; i < RUN; i++) {
    let k = k0 + i;
    if (k >= p.k4) { break; }
    dst[mb * p.k4 + k] = gather_at(d, p, m, kp);
    kp = k_next(p, kp);
  }
}
