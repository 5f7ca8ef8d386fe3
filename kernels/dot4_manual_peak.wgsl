// dot4_manual_peak.wgsl -- the same loop as dot4_peak.wgsl with the packed dot product unpacked by
// hand (sign-extending extracts and 4 multiply-adds). Comparing the two tells whether
// dot4I8Packed compiles to a native packed-dot instruction on this adapter (native: several
// times faster than this).
// MACs = threads * ITERS * 64 * 4.
override WG: u32 = 256u;
override ITERS: u32 = 1024u;

@group(0) @binding(0) var<storage, read_write> o: array<i32>;

fn dot4m(a: u32, b: u32) -> i32 {
  let x = bitcast<i32>(a);
  let y = bitcast<i32>(b);
  return extractBits(x, 0u, 8u) * extractBits(y, 0u, 8u) + extractBits(x, 8u, 8u) * extractBits(y, 8u, 8u)
       + extractBits(x, 16u, 8u) * extractBits(y, 16u, 8u) + extractBits(x, 24u, 8u) * extractBits(y, 24u, 8u);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let seed = gid.x * 2654435761u;
  let a0 = seed + 0u * 0x01010101u;
  let a1 = seed + 1u * 0x01010101u;
  let a2 = seed + 2u * 0x01010101u;
  let a3 = seed + 3u * 0x01010101u;
  let a4 = seed + 4u * 0x01010101u;
  let a5 = seed + 5u * 0x01010101u;
  let a6 = seed + 6u * 0x01010101u;
  let a7 = seed + 7u * 0x01010101u;
  var b0 = seed ^ 0x5bd1e995u;
  var b1 = seed ^ 0x1b873593u;
  var c0 = 0;
  var c1 = 0;
  var c2 = 0;
  var c3 = 0;
  var c4 = 0;
  var c5 = 0;
  var c6 = 0;
  var c7 = 0;
  var c8 = 0;
  var c9 = 0;
  var c10 = 0;
  var c11 = 0;
  var c12 = 0;
  var c13 = 0;
  var c14 = 0;
  var c15 = 0;
  var c16 = 0;
  var c17 = 0;
  var c18 = 0;
  var c19 = 0;
  var c20 = 0;
  var c21 = 0;
  var c22 = 0;
  var c23 = 0;
  var c24 = 0;
  var c25 = 0;
  var c26 = 0;
  var c27 = 0;
  var c28 = 0;
  var c29 = 0;
  var c30 = 0;
  var c31 = 0;
  for (var it = 0u; it < ITERS; it++) {
    b0 = b0 ^ it;
    c0 = dot4m(a0, b0) + c0;
    c1 = dot4m(a1, b0) + c1;
    c2 = dot4m(a2, b0) + c2;
    c3 = dot4m(a3, b0) + c3;
    c4 = dot4m(a4, b0) + c4;
    c5 = dot4m(a5, b0) + c5;
    c6 = dot4m(a6, b0) + c6;
    c7 = dot4m(a7, b0) + c7;
    c8 = dot4m(a0, b0) + c8;
    c9 = dot4m(a1, b0) + c9;
    c10 = dot4m(a2, b0) + c10;
    c11 = dot4m(a3, b0) + c11;
    c12 = dot4m(a4, b0) + c12;
    c13 = dot4m(a5, b0) + c13;
    c14 = dot4m(a6, b0) + c14;
    c15 = dot4m(a7, b0) + c15;
    c16 = dot4m(a0, b0) + c16;
    c17 = dot4m(a1, b0) + c17;
    c18 = dot4m(a2, b0) + c18;
    c19 = dot4m(a3, b0) + c19;
    c20 = dot4m(a4, b0) + c20;
    c21 = dot4m(a5, b0) + c21;
    c22 = dot4m(a6, b0) + c22;
    c23 = dot4m(a7, b0) + c23;
    c24 = dot4m(a0, b0) + c24;
    c25 = dot4m(a1, b0) + c25;
    c26 = dot4m(a2, b0) + c26;
    c27 = dot4m(a3, b0) + c27;
    c28 = dot4m(a4, b0) + c28;
    c29 = dot4m(a5, b0) + c29;
    c30 = dot4m(a6, b0) + c30;
    c31 = dot4m(a7, b0) + c31;
    b1 = b1 ^ it;
    c0 = dot4m(a0, b1) + c0;
    c1 = dot4m(a1, b1) + c1;
    c2 = dot4m(a2, b1) + c2;
    c3 = dot4m(a3, b1) + c3;
    c4 = dot4m(a4, b1) + c4;
    c5 = dot4m(a5, b1) + c5;
    c6 = dot4m(a6, b1) + c6;
    c7 = dot4m(a7, b1) + c7;
    c8 = dot4m(a0, b1) + c8;
    c9 = dot4m(a1, b1) + c9;
    c10 = dot4m(a2, b1) + c10;
    c11 = dot4m(a3, b1) + c11;
    c12 = dot4m(a4, b1) + c12;
    c13 = dot4m(a5, b1) + c13;
    c14 = dot4m(a6, b1) + c14;
    c15 = dot4m(a7, b1) + c15;
    c16 = dot4m(a0, b1) + c16;
    c17 = dot4m(a1, b1) + c17;
    c18 = dot4m(a2, b1) + c18;
    c19 = dot4m(a3, b1) + c19;
    c20 = dot4m(a4, b1) + c20;
    c21 = dot4m(a5, b1) + c21;
    c22 = dot4m(a6, b1) + c22;
    c23 = dot4m(a7, b1) + c23;
    c24 = dot4m(a0, b1) + c24;
    c25 = dot4m(a1, b1) + c25;
    c26 = dot4m(a2, b1) + c26;
    c27 = dot4m(a3, b1) + c27;
    c28 = dot4m(a4, b1) + c28;
    c29 = dot4m(a5, b1) + c29;
    c30 = dot4m(a6, b1) + c30;
    c31 = dot4m(a7, b1) + c31;
  }
  o[gid.x] = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11 + c12 + c13 + c14 + c15 + c16 + c17 + c18 + c19 + c20 + c21 + c22 + c23 + c24 + c25 + c26 + c27 + c28 + c29 + c30 + c31;
}
