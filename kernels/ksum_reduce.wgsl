// ksum_reduce.wgsl -- included by the kernels that split K into slices and reduce them
// themselves (REDUCE; no entry point): the int32 sums of a slice's tiles added into `ksum`, the
// arrival count of a workgroup tile's slices, and the tile's sums taken and requantized by the
// slice that arrives last. The includer includes epilogue.wgsl and declares `ksum`
// (array<atomic<i32>>: 16 sums a tile position, m_count x c4_out positions, then one arrival
// counter a workgroup tile; all zero before and after each dispatch) and `p` (GemmParams).
// Channel 4*c4+j's sum at width i of m-block mb is word ((4*j + i)*m_count + mb)*c4_out + c4 (a
// warp's adds to one (j, i) are consecutive words). The sums and counters are atomics (coherent
// across workgroups), ordered by storageBarrier, which naga emits as a device-scope
// acquire-release barrier on Vulkan (the planner reduces in a kernel on Vulkan only: WGSL itself
// orders memory within a workgroup only).

var<workgroup> wg_last: u32;  // 1 in the workgroup of a tile's last slice

// After this slice's add_partial calls: count it in arrival counter `counter` (word of `ksum`);
// true, in every thread of the workgroup, where it is the tile's last slice (which also puts the
// counter back to 0). Called in uniform control flow.
fn arrived_last(li: u32, counter: u32) -> bool {
  storageBarrier();  // this slice's adds before its arrival (release)
  if (li == 0u) {
    let last = atomicAdd(&ksum[counter], 1) == i32(p.splits) - 1;
    if (last) { atomicStore(&ksum[counter], 0); }
    wg_last = select(0u, 1u, last);
  }
  storageBarrier();  // the other slices' adds before the sums are taken (acquire)
  return workgroupUniformLoad(&wg_last) != 0u;
}

// REDUCE: add a finished partial tile (m-block mb, channel block c4) into ksum.
fn add_partial(mb: u32, c4: u32, c4_end: u32, a0: vec4<i32>, a1: vec4<i32>, a2: vec4<i32>, a3: vec4<i32>) {
  if (mb >= p.m_count || c4 >= c4_end) { return; }
  let plane = p.m_count * p.c4_out;
  let at = mb * p.c4_out + c4;
  add_sums(at, plane, 0u, a0);
  add_sums(at, plane, 1u, a1);
  add_sums(at, plane, 2u, a2);
  add_sums(at, plane, 3u, a3);
}

fn add_sums(at: u32, plane: u32, j: u32, a: vec4<i32>) {
  atomicAdd(&ksum[(4u * j) * plane + at], a.x);
  atomicAdd(&ksum[(4u * j + 1u) * plane + at], a.y);
  atomicAdd(&ksum[(4u * j + 2u) * plane + at], a.z);
  atomicAdd(&ksum[(4u * j + 3u) * plane + at], a.w);
}

// Channel 4*c4+j's sums at the tile's 4 widths, taken (left 0 for the next dispatch).
fn take_sums(at: u32, plane: u32, j: u32) -> vec4<i32> {
  return vec4<i32>(atomicExchange(&ksum[(4u * j) * plane + at], 0),
                   atomicExchange(&ksum[(4u * j + 1u) * plane + at], 0),
                   atomicExchange(&ksum[(4u * j + 2u) * plane + at], 0),
                   atomicExchange(&ksum[(4u * j + 3u) * plane + at], 0));
}

// REDUCE, in the last slice: the tile's summed slices, requantized and stored.
fn store_reduced(mb: u32, c4: u32, c4_end: u32) {
  if (mb >= p.m_count || c4 >= c4_end) { return; }
  let plane = p.m_count * p.c4_out;
  let at = mb * p.c4_out + c4;
  store_tile(mb, c4, take_sums(at, plane, 0u), take_sums(at, plane, 1u), take_sums(at, plane, 2u),
             take_sums(at, plane, 3u));
}
