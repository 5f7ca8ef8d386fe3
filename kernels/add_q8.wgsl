// add_q8.wgsl -- quantized elementwise add (PT2E float path), optional fused relu.
// In:  `a`, `b`, int8 tensors of one NCHW shape, each packed in any layout (4W4C, 4C or 4C1W;
//      see layout.wgsl) and described by its own TensorDesc `ad`, `bd` (zero points ad.zp, bd.zp).
// Out: `o`, every word of the packed output described by `od` (same shape, any layout).
// Thread t writes exactly one output word, (n, h, c4, w) = decode of t over
// [N, H, C4, od.w_alloc]: channels 4*c4..4*c4+3 of pixel (n, h, w), as in pack_nchw.wgsl.
// Slots past C, and whole words of widths >= W (4W4C's padded widths), hold od.zp; input words
// are read only for w < W, so no input padding slot is read and nothing reads out of bounds.
// Math: add_requant.wgsl of a - zp_a and b - zp_b, also what a residual add fused into a conv's
// epilogue computes (epilogue.wgsl); relu6: its q_max, the host's quantized 6 (rounding is
// monotonic: the same as clamping the real value at 6 first).
// Overflow: see add_requant.wgsl.
// #include "layout.wgsl"
// #include "add_requant.wgsl"
// #include "struct_add_params.wgsl"

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> a: array<u32>;
@group(0) @binding(1) var<storage, read> b: array<u32>;
@group(0) @binding(2) var<storage, read_write> o: array<u32>;
@group(0) @binding(3) var<uniform> ad: TensorDesc;
@group(0) @binding(4) var<uniform> bd: TensorDesc;
@group(0) @binding(5) var<uniform> od: TensorDesc;
@group(0) @binding(6) var<uniform> p: AddParams;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = linear_id(gid, nwg, WG);
  if (t >= word_count(od)) { return; }
  let at = word_coords(od, t);
  let n = at.x;
  let c4 = at.y;
  let h = at.z;
  let w = at.w;
  var q = vec4<i32>(od.zp);
  if (w < od.w) {
    let qa = unpack4xI8(a[word_index(ad, n, c4, h, w)]) - vec4<i32>(ad.zp);
    let qb = unpack4xI8(b[word_index(bd, n, c4, h, w)]) - vec4<i32>(bd.zp);
    let f = add_round(qa, qb, p.m_a, p.m_b, p.relu != 0u, od.zp, p.q_max);
    var r = f.r;
    var near = near_bits(f.near);
    while (near != 0u) {  // rare: where float32 cannot decide
      let i = firstTrailingBit(near);
      near &= near - 1u;
      r[i] = add_exact(qa[i], qb[i], p.fix_a, p.fix_b, p.fix_e);
    }
    let sum = add_finish(r, p.relu != 0u, od.zp, p.q_max);
    let c = vec4<u32>(c4 * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
    q = select(q, sum, c < vec4<u32>(od.c));
  }
  o[word_index(od, n, c4, h, w)] = pack4xI8(q);
}
