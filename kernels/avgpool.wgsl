// avgpool.wgsl -- avg_pool2d and adaptive_avg_pool2d of an int8 tensor (PT2E float path:
// average the dequantized values, quantize), windows and divisors exactly as PyTorch's CPU
// kernels take them.
// In:  `x`, int8 [N, C, H, W] packed in any layout (see layout.wgsl), described by `xd`
//      (zero point zp_in = xd.zp).
// Out: `o`, every word of the packed output [N, C, H_out, W_out] described by `od` (any layout;
//      zero point zp_out = od.zp).
// Thread t writes exactly one output word, (n, h, c4, w) = decode of t over
// [N, H_out, C4, od.w_alloc]: channels 4*c4..4*c4+3 of output pixel (n, h, w). Slots past C,
// and words of widths >= W_out (4W4C's padded widths), hold zp_out.
// Window per axis (rows shown; columns alike):
//   p.adaptive = 0: h0 = h*stride_h - pad_h, h1 = min(h0 + kh, H + pad_h), pool_h = h1 - h0,
//                   then h0, h1 clipped to [0, H];
//   p.adaptive = 1: h0 = floor(h*H/H_out), h1 = ceil((h+1)*H/H_out), pool_h = h1 - h0.
// divisor = p.divisor if != 0 (divisor_override), else pool_h*pool_w (count_include_pad), else
// (h1 - h0)*(w1 - w0); an empty window gives zp_out (PyTorch's 0).
//   sum = sum over the window of (x - zp_in) in i32 (taps outside the input contribute 0);
//   v = sum * M / divisor in output steps (M = s_in/s_out: p.m in float32, p.fix_m * 2^-fix_e in
//   fixed point); q = clamp(rint(v) + zp_out, q_min, q_max) with rint exact, half to even
//   (exact_round.wgsl: float32 where it decides, else the sign of 2*sum*fix_m - (2*floor(v) + 1)
//   * divisor * 2^fix_e); q_min, q_max: -128, 127, or relu's / relu6's bounds quantized by the
//   host (rounding is monotonic, so clamping q equals clamping the real value first).
// Overflow: |x - zp_in| <= 255, and the host keeps window taps * 255 < 2^31, so the i32 sums
// are exact; the host keeps divisor * 2^fix_e < 2^48, so the 64-bit comparison cannot wrap. The
// float32 rounded value is clamped to +-512 before the int conversion. float32's error (4
// roundings and a division of up to 2.5 ULP) and the fixed-point form's are below
// |v| * p.margin_rel + 2^-20 (the host's bound).
// #include "layout.wgsl"
// #include "struct_pool_params.wgsl"
// #include "exact_round.wgsl"

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> o: array<u32>;
@group(0) @binding(2) var<uniform> xd: TensorDesc;
@group(0) @binding(3) var<uniform> od: TensorDesc;
@group(0) @binding(4) var<uniform> p: PoolParams;

// The window [lo, hi) of output index i along an axis of `size` inputs and `out` outputs,
// clipped to the input, and its pool extent (before clipping): vec3(lo, hi, pool).
fn window(i: u32, size: u32, out: u32, k: u32, stride: u32, pad: u32) -> vec3<i32> {
  if (p.adaptive != 0u) {
    let lo = i32((i * size) / out);
    let hi = i32(((i + 1u) * size + out - 1u) / out);
    return vec3<i32>(lo, hi, hi - lo);
  }
  let lo = i32(i * stride) - i32(pad);
  let hi = min(lo + i32(k), i32(size + pad));
  return vec3<i32>(max(lo, 0), min(hi, i32(size)), hi - lo);
}

// The next width's (w / wb, w % wb) from this width's.
fn tap_step(q: u32, r: u32) -> vec2<u32> {
  let wrap = r + 1u == xd.wb;
  return vec2<u32>(select(q, q + 1u, wrap), select(r + 1u, 0u, wrap));
}

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
    let wh = window(h, xd.h, od.h, p.kh, p.stride_h, p.pad_h);
    let ww = window(w, xd.w, od.w, p.kw, p.stride_w, p.pad_w);
    var sum = vec4<i32>(0);
    // Word indices stepped along a row (word_index less its division by wb per tap), and the
    // row's taps 4 at a time: their loads are issued together, not one latency after another
    // (global pools: 49 taps a thread, few threads).
    let w_lo = u32(ww.x);  // (window clips it to >= 0)
    let q0 = w_lo / xd.wb;
    let r0 = w_lo - q0 * xd.wb;
    for (var ih = wh.x; ih < wh.y; ih++) {
      let row = n * xd.s_n + u32(ih) * xd.s_h + c4 * xd.s_c4 - xd.base;
      var q = q0;
      var r = r0;
      var iw = ww.x;
      for (; iw + 4 <= ww.y; iw += 4) {
        let i0 = row + q * xd.s_wb + r * xd.s_wi;
        let s1 = tap_step(q, r);
        let i1 = row + s1.x * xd.s_wb + s1.y * xd.s_wi;
        let s2 = tap_step(s1.x, s1.y);
        let i2 = row + s2.x * xd.s_wb + s2.y * xd.s_wi;
        let s3 = tap_step(s2.x, s2.y);
        let i3 = row + s3.x * xd.s_wb + s3.y * xd.s_wi;
        let s4 = tap_step(s3.x, s3.y);
        q = s4.x;
        r = s4.y;
        let v0 = x[i0];
        let v1 = x[i1];
        let v2 = x[i2];
        let v3 = x[i3];
        sum += (unpack4xI8(v0) + unpack4xI8(v1)) + (unpack4xI8(v2) + unpack4xI8(v3));
      }
      for (; iw < ww.y; iw++) {
        sum += unpack4xI8(x[row + q * xd.s_wb + r * xd.s_wi]);
        let s = tap_step(q, r);
        q = s.x;
        r = s.y;
      }
    }
    let taps = max(wh.y - wh.x, 0) * max(ww.y - ww.x, 0);
    sum -= vec4<i32>(taps * xd.zp);
    var divisor = (wh.y - wh.x) * (ww.y - ww.x);
    if (p.divisor != 0) {
      divisor = p.divisor;
    } else if (p.count_include_pad != 0u) {
      divisor = wh.z * ww.z;
    }
    if (taps > 0 && divisor != 0) {
      let v = vec4<f32>(sum) * p.m / f32(divisor);
      let f = round_fast(v, abs(v) * p.margin_rel + EXACT_REL, f32(p.q_min - od.zp) - 1.0, f32(p.q_max - od.zp) + 1.0);
      var r = f.r;
      var near = near_bits(f.near);
      while (near != 0u) {  // rare: where float32 cannot decide (|v| < 260 there)
        let i = firstTrailingBit(near);
        near &= near - 1u;
        // v = sum * M / divisor = (-sum) * M / |divisor| for a negative divisor_override.
        let n = select(sum[i], -sum[i], divisor < 0);
        r[i] = round_ratio_near(mul_wide(n, p.fix_m), u32(abs(divisor)), p.fix_e, i32(floor(v[i])));
      }
      let c = vec4<u32>(c4 * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
      q = select(q, clamp(r + vec4<i32>(od.zp), vec4<i32>(p.q_min), vec4<i32>(p.q_max)), c < vec4<u32>(od.c));
    }
  }
  o[word_index(od, n, c4, h, w)] = pack4xI8(q);
}
