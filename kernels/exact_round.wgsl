// exact_round.wgsl -- included by every requantizing kernel (no entry point): exact rounding of a
// requantized value v (in output steps) where float32 cannot decide it. Each kernel computes v in
// float32 and a bound `margin` on that value's error plus the fixed-point form's; where v lies
// within margin of a half-integer (`round_fast`'s near), it takes the rounding from the fixed-point form
// instead, in 64-bit integers (vec2<u32>: low word, high word, two's complement). Elsewhere
// float32's rint is already the exact one. So every adapter writes the same bytes, those of
// q8ta_wgpu.quant.round_shifted / round_ratio in the numpy reference.
// The fixed-point forms (q8ta_wgpu.quant): a multiplier M ~ m * 2^-e (m <= 2^30, 1 <= e <= 60),
// an offset B ~ bi + bf * 2^-e (0 <= bf < 2^e). Overflow: |x * m| + bf < 2^62 for |x| < 2^31;
// 64-bit sums wrap, which is exact wherever the final value fits. The host bounds M < 2^16 and
// |B| < 2^16, so float32's error is below |v|*2^-21 + 2^-4; margins up to 0.25 cover every |v| <
// 2^17, and beyond, float32's rint saturates the int8 result as the exact one would. A near value
// lies below 2^23 (float32 has no fractions above), so every exact result fits i32.

const EXACT_REL: f32 = 4.76837158203125e-07;  // 2^-21: 2x float32's worst error, relative to |v|

// float32's rint of 4 values, and where it cannot decide (`near`).
struct Rounded {
  r: vec4<i32>,
  near: vec4<bool>,
}

// rint(v) in float32 (clamped to +-512 before the int conversion, so huge values stay defined:
// that cannot change an int8 result), and where v lies within margin of a half-integer and
// inside (lo, hi) (where the two roundings could give two results once clamped): there float32
// cannot decide rint(v). Callers run the exact path only where any value is near (rare), once,
// in a loop over those values: one copy of its code in a kernel, and the common path stays a
// few vector operations.
fn round_fast(v: vec4<f32>, margin: vec4<f32>, lo: f32, hi: f32) -> Rounded {
  let rv = round(v);
  let r = vec4<i32>(clamp(rv, vec4<f32>(-512.0), vec4<f32>(512.0)));
  let near = abs(v - rv) >= vec4<f32>(0.5) - min(margin, vec4<f32>(0.25));
  return Rounded(r, near & (v > vec4<f32>(lo)) & (v < vec4<f32>(hi)));
}

// The bits of n (x: bit 0 ... w: bit 3): the rare path's list of values to decide.
fn near_bits(n: vec4<bool>) -> u32 {
  return dot(select(vec4<u32>(0u), vec4<u32>(1u, 2u, 4u, 8u), n), vec4<u32>(1u));
}

// The flags of 4 vectors in one mask: bit 4*j + i is n<j>'s component i.
fn near_bits16(n0: vec4<bool>, n1: vec4<bool>, n2: vec4<bool>, n3: vec4<bool>) -> u32 {
  return near_bits(n0) | (near_bits(n1) << 4u) | (near_bits(n2) << 8u) | (near_bits(n3) << 12u);
}

fn add64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
  let lo = a.x + b.x;
  return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}

fn neg64(a: vec2<u32>) -> vec2<u32> {
  return vec2<u32>(0u - a.x, ~a.y + select(0u, 1u, a.x == 0u));
}

// x * m exactly, as 64 bits (16-bit limbs: every partial product fits u32).
fn mul_wide(x: i32, m: u32) -> vec2<u32> {
  let a = u32(abs(x));  // |x| < 2^31
  let a0 = a & 0xffffu;
  let a1 = a >> 16u;
  let m0 = m & 0xffffu;
  let m1 = m >> 16u;
  let p00 = a0 * m0;
  let p01 = a0 * m1;
  let p10 = a1 * m0;
  let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
  let prod = vec2<u32>((p00 & 0xffffu) | (mid << 16u), a1 * m1 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u));
  return select(prod, neg64(prod), x < 0);
}

// a * 2^s, 0 <= s <= 63 (bits past 64 dropped).
fn shl64(a: vec2<u32>, s: u32) -> vec2<u32> {
  if (s == 0u) { return a; }
  if (s < 32u) { return vec2<u32>(a.x << s, (a.y << s) | (a.x >> (32u - s))); }
  return vec2<u32>(0u, a.x << (s - 32u));
}

// -1, 0 or 1: the sign of a.
fn sign64(a: vec2<u32>) -> i32 {
  if (bitcast<i32>(a.y) < 0) { return -1; }
  return select(1, 0, a.x == 0u && a.y == 0u);
}

// rint(bi + n * 2^-e) exactly, half to even, 1 <= e <= 62 (the result must fit i32).
fn round_shifted(n: vec2<u32>, e: u32, bi: i32) -> i32 {
  var t: u32;  // the low word of floor(n / 2^e): the result is small, so it is enough
  var half: bool;  // bit e-1 of n: the remainder is at least half of 2^e
  var below: bool;  // a bit under it: the remainder is more than half
  if (e < 32u) {
    t = (n.x >> e) | (n.y << (32u - e));
    half = ((n.x >> (e - 1u)) & 1u) != 0u;
    below = (n.x & ((1u << (e - 1u)) - 1u)) != 0u;
  } else if (e == 32u) {
    t = n.y;
    half = (n.x >> 31u) != 0u;
    below = (n.x & 0x7fffffffu) != 0u;
  } else {
    let s = e - 32u;
    t = bitcast<u32>(bitcast<i32>(n.y) >> s);
    half = ((n.y >> (s - 1u)) & 1u) != 0u;
    below = n.x != 0u || (n.y & ((1u << (s - 1u)) - 1u)) != 0u;
  }
  let q = bi + bitcast<i32>(t);
  return q + select(0, 1, half && (below || (q & 1) != 0));
}

// rint(v) for v in (f, f + 1), from s = the sign of v - (f + 0.5): a tie goes to the even one.
fn round_by_sign(s: i32, f: i32) -> i32 {
  if (s == 0) { return f + (f & 1); }
  return f + select(0, 1, s > 0);
}

// rint(v) exactly, v = n / d (d > 0), given f = floor(v) (float32 decided it: v is within margin
// < 0.5 of f + 0.5): the sign of 2n - (2f + 1) * d says on which side of f + 0.5 v lies.
fn round_ratio_near(n: vec2<u32>, d_factor: u32, d_shift: u32, f: i32) -> i32 {
  let mid = shl64(mul_wide(2 * f + 1, d_factor), d_shift);  // (2f + 1) * d, d = d_factor * 2^d_shift
  return round_by_sign(sign64(add64(shl64(n, 1u), neg64(mid))), f);
}
