// im2col_4w4c.wgsl -- im2col for a 4W4C input with C_in_per_group % 4 == 0 (whole-word copies).
// In:  `src`, the input in 4W4C (addressed through `d`, layout.wgsl); it may be a window of
//      the input's rows (d.base = its first word), big inputs are bound so.
// Out: `dst`, A as 4W4C blocks (conv_params.wgsl): block b = mb*k4 + k (m-block mb + mb_base,
//      k-block k), b < m_count*k4. Each thread writes RUN blocks (the host dispatches
//      ceil(m_count*k4 / RUN) threads), laid out by SPREAD:
//      - SPREAD: workgroup w owns blocks w*WG*RUN .. +WG*RUN-1 and its thread i writes blocks
//        i, i + WG, i + 2*WG, ... of them, so at each step a warp's stores are contiguous; every
//        block's position is decoded (GPUs: wide workgroups, few blocks a thread).
//      - else: thread t writes k-blocks (t % runs)*RUN .. +RUN-1 (< k4) of m-block t / runs,
//        runs = ceil(k4 / RUN): it decodes the position once and steps it per block
//        (gather_4w4c.wgsl; CPU adapters, where a thread's loop is the cheap direction).
//      Since cin_pg % 4 == 0, the 4 columns of a k-block share (kh, kw) and are the 4 channels
//      of one input word: each row is one u32 copy. Honors stride_w, dilation, padding, groups
//      and batch. k_pg == taps_pg (no padding columns).
// Out-of-input taps and rows past W_out get a word of 4 zero points. No overflow.
// #include "layout.wgsl"
// #include "conv_params.wgsl"
// #include "gather_4w4c.wgsl"

override WG: u32 = 64u;
override RUN: u32 = 1u;  // blocks per thread (host: per adapter type and size, conv.im2col_pass_shape)
override SPREAD: bool = false;  // a thread's blocks WG apart (true) or consecutive k-blocks (false)

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;
@group(0) @binding(2) var<uniform> d: TensorDesc;
@group(0) @binding(3) var<uniform> p: ConvParams;

fn load_word(i: u32) -> u32 {
  return src[i];
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = linear_id(gid, nwg, WG);
  if (SPREAD) {
    let total = p.m_count * p.k4;
    let b0 = (t - lid.x) * RUN + lid.x;  // (t - lid.x) = the workgroup's first thread
    for (var j = 0u; j < RUN; j++) {
      let b = b0 + j * WG;
      if (b >= total) { return; }
      let mb = b / p.k4;
      dst[b] = gather_4w4c(d, p, p.mb_base + mb, b - mb * p.k4);
    }
    return;
  }
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
