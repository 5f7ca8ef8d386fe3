// lut.wgsl -- included by the table kernels (no entry point): an elementwise int8 -> int8
// function as a table of 256 int8 outputs, one per input value. The including file declares
// `table`, 64 u32 words in a storage buffer: the output for the input value q (-128..127) is
// byte (q + 128) % 4 of word (q + 128) / 4 (the host's int8 [256] table, byte for byte).
// Exact: indexing only; every index is in [0, 255], so no read leaves the 64 words.
// #include "layout.wgsl"

// The table's outputs for four int8 values (each in [-128, 127]).
fn lookup4(v: vec4<i32>) -> vec4<i32> {
  let i = vec4<u32>(v + vec4<i32>(128));
  return vec4<i32>(
    byte_at(table[i.x >> 2u], i.x & 3u),
    byte_at(table[i.y >> 2u], i.y & 3u),
    byte_at(table[i.z >> 2u], i.z & 3u),
    byte_at(table[i.w >> 2u], i.w & 3u),
  );
}
