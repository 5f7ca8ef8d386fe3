// dot4_peak.wgsl -- throughput anchor for dot4I8Packed: each thread runs ITERS steps of 64
// independent accumulator chains, chain (i, j) adding dot(a_i, b_j) for 8 fixed a_i and 8 b_j
// that change every step (xor with the step). Every product is distinct, so a compiler can
// neither merge two chains nor reuse a product. (An earlier version fed 32 chains from 16
// products, which the compiler could share: it read 196 TOPS on the H100 against this loop's
// 79.) One store per thread keeps every chain live.
// MACs = threads * ITERS * 64 * 4.
// #include "dot4.wgsl"
override WG: u32 = 256u;
override ITERS: u32 = 1024u;

@group(0) @binding(0) var<storage, read_write> o: array<i32>;

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
  var b1 = seed ^ 0xb7a3d32au;
  var b2 = seed ^ 0x1375bcbfu;
  var b3 = seed ^ 0x6f47a654u;
  var b4 = seed ^ 0xcb198fe9u;
  var b5 = seed ^ 0x26eb797eu;
  var b6 = seed ^ 0x82bd6313u;
  var b7 = seed ^ 0xde8f4ca8u;
  var c00 = 0; var c01 = 0; var c02 = 0; var c03 = 0; var c04 = 0; var c05 = 0; var c06 = 0; var c07 = 0;
  var c10 = 0; var c11 = 0; var c12 = 0; var c13 = 0; var c14 = 0; var c15 = 0; var c16 = 0; var c17 = 0;
  var c20 = 0; var c21 = 0; var c22 = 0; var c23 = 0; var c24 = 0; var c25 = 0; var c26 = 0; var c27 = 0;
  var c30 = 0; var c31 = 0; var c32 = 0; var c33 = 0; var c34 = 0; var c35 = 0; var c36 = 0; var c37 = 0;
  var c40 = 0; var c41 = 0; var c42 = 0; var c43 = 0; var c44 = 0; var c45 = 0; var c46 = 0; var c47 = 0;
  var c50 = 0; var c51 = 0; var c52 = 0; var c53 = 0; var c54 = 0; var c55 = 0; var c56 = 0; var c57 = 0;
  var c60 = 0; var c61 = 0; var c62 = 0; var c63 = 0; var c64 = 0; var c65 = 0; var c66 = 0; var c67 = 0;
  var c70 = 0; var c71 = 0; var c72 = 0; var c73 = 0; var c74 = 0; var c75 = 0; var c76 = 0; var c77 = 0;
  for (var it = 0u; it < ITERS; it++) {
    b0 = b0 ^ it;
    c00 = dot4I8Packed(a0, b0) + c00;
    c10 = dot4I8Packed(a1, b0) + c10;
    c20 = dot4I8Packed(a2, b0) + c20;
    c30 = dot4I8Packed(a3, b0) + c30;
    c40 = dot4I8Packed(a4, b0) + c40;
    c50 = dot4I8Packed(a5, b0) + c50;
    c60 = dot4I8Packed(a6, b0) + c60;
    c70 = dot4I8Packed(a7, b0) + c70;
    b1 = b1 ^ it;
    c01 = dot4I8Packed(a0, b1) + c01;
    c11 = dot4I8Packed(a1, b1) + c11;
    c21 = dot4I8Packed(a2, b1) + c21;
    c31 = dot4I8Packed(a3, b1) + c31;
    c41 = dot4I8Packed(a4, b1) + c41;
    c51 = dot4I8Packed(a5, b1) + c51;
    c61 = dot4I8Packed(a6, b1) + c61;
    c71 = dot4I8Packed(a7, b1) + c71;
    b2 = b2 ^ it;
    c02 = dot4I8Packed(a0, b2) + c02;
    c12 = dot4I8Packed(a1, b2) + c12;
    c22 = dot4I8Packed(a2, b2) + c22;
    c32 = dot4I8Packed(a3, b2) + c32;
    c42 = dot4I8Packed(a4, b2) + c42;
    c52 = dot4I8Packed(a5, b2) + c52;
    c62 = dot4I8Packed(a6, b2) + c62;
    c72 = dot4I8Packed(a7, b2) + c72;
    b3 = b3 ^ it;
    c03 = dot4I8Packed(a0, b3) + c03;
    c13 = dot4I8Packed(a1, b3) + c13;
    c23 = dot4I8Packed(a2, b3) + c23;
    c33 = dot4I8Packed(a3, b3) + c33;
    c43 = dot4I8Packed(a4, b3) + c43;
    c53 = dot4I8Packed(a5, b3) + c53;
    c63 = dot4I8Packed(a6, b3) + c63;
    c73 = dot4I8Packed(a7, b3) + c73;
    b4 = b4 ^ it;
    c04 = dot4I8Packed(a0, b4) + c04;
    c14 = dot4I8Packed(a1, b4) + c14;
    c24 = dot4I8Packed(a2, b4) + c24;
    c34 = dot4I8Packed(a3, b4) + c34;
    c44 = dot4I8Packed(a4, b4) + c44;
    c54 = dot4I8Packed(a5, b4) + c54;
    c64 = dot4I8Packed(a6, b4) + c64;
    c74 = dot4I8Packed(a7, b4) + c74;
    b5 = b5 ^ it;
    c05 = dot4I8Packed(a0, b5) + c05;
    c15 = dot4I8Packed(a1, b5) + c15;
    c25 = dot4I8Packed(a2, b5) + c25;
    c35 = dot4I8Packed(a3, b5) + c35;
    c45 = dot4I8Packed(a4, b5) + c45;
    c55 = dot4I8Packed(a5, b5) + c55;
    c65 = dot4I8Packed(a6, b5) + c65;
    c75 = dot4I8Packed(a7, b5) + c75;
    b6 = b6 ^ it;
    c06 = dot4I8Packed(a0, b6) + c06;
    c16 = dot4I8Packed(a1, b6) + c16;
    c26 = dot4I8Packed(a2, b6) + c26;
    c36 = dot4I8Packed(a3, b6) + c36;
    c46 = dot4I8Packed(a4, b6) + c46;
    c56 = dot4I8Packed(a5, b6) + c56;
    c66 = dot4I8Packed(a6, b6) + c66;
    c76 = dot4I8Packed(a7, b6) + c76;
    b7 = b7 ^ it;
    c07 = dot4I8Packed(a0, b7) + c07;
    c17 = dot4I8Packed(a1, b7) + c17;
    c27 = dot4I8Packed(a2, b7) + c27;
    c37 = dot4I8Packed(a3, b7) + c37;
    c47 = dot4I8Packed(a4, b7) + c47;
    c57 = dot4I8Packed(a5, b7) + c57;
    c67 = dot4I8Packed(a6, b7) + c67;
    c77 = dot4I8Packed(a7, b7) + c77;
  }
  o[gid.x] = c00 + c01 + c02 + c03 + c04 + c05 + c06 + c07
           + c10 + c11 + c12 + c13 + c14 + c15 + c16 + c17
           + c20 + c21 + c22 + c23 + c24 + c25 + c26 + c27
           + c30 + c31 + c32 + c33 + c34 + c35 + c36 + c37
           + c40 + c41 + c42 + c43 + c44 + c45 + c46 + c47
           + c50 + c51 + c52 + c53 + c54 + c55 + c56 + c57
           + c60 + c61 + c62 + c63 + c64 + c65 + c66 + c67
           + c70 + c71 + c72 + c73 + c74 + c75 + c76 + c77;
}
