"""What a dispatch costs before it does any work, as the timestamps see it: an empty compute pass,
one with a trivial dispatch (one that writes a buffer, one that binds only a uniform, so wgpu has
no buffer state to change before it), the peak microkernel with a growing loop (intercept and
slope), and a GEMM's passes timed one pass each vs all in one pass (as a call runs them).

Run on a GPU (the H100 figures in bench/results/archive/2026-11-24_analysis_H100.md came from this):
    python bench/probes/dispatch_floor.py
"""

from __future__ import annotations

import numpy as np

# A dispatch that binds one uniform and writes nothing: no storage buffer whose state wgpu must
# change (and fence with a barrier) between submits or dispatches.
_READ_ONLY = """
@group(0) @binding(0) var<uniform> u: vec4<u32>;
var<workgroup> sink: u32;
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) i: u32) {
  if (i == u.x) { sink = u.y; }
}
"""


def _inline_pass(dev, code: str, resources: list, label: str):
    from q8ta_wgpu.runtime import Pass

    module = dev.device.create_shader_module(code=code)
    pipe = dev.device.create_compute_pipeline(
        layout="auto", compute={"module": module, "entry_point": "main"}
    )
    return Pass(pipe, dev.bind_group(pipe, resources), (1, 1, 1), label)


def median_us(dev, passes, whole: bool = False) -> list[float]:
    t = dev.time_passes(passes, warmup=3, repeats=30, warm_s=0.2, whole=whole)
    return [float(np.median(t[:, i])) * 1e6 for i in range(t.shape[1])]


def main() -> None:
    import q8ta_wgpu as q8
    from q8ta_wgpu.bench import peak_pass, warm_up
    from q8ta_wgpu.configs import RESNET50_CONFIGS, make_case
    from q8ta_wgpu.runtime import Pass

    dev = q8.default_device()
    print(dev.name, flush=True)
    warm_up(dev, 1.0)
    # No dispatches: Device.run still opens (and times) the one compute pass.
    print(f"empty compute pass: {median_us(dev, [], whole=True)[0]:.1f} us", flush=True)
    src, dst = dev.buffer(4096), dev.buffer(4096)
    copy = dev.pipeline("copy_bw.wgsl", {"WG": 64})
    p = Pass(copy, dev.bind_group(copy, [src, dst]), (1, 1, 1), "copy")
    print(f"copy of 4 KiB, 1 workgroup: {median_us(dev, [p])[0]:.1f} us; "
          f"8 such dispatches in one pass: {median_us(dev, [p] * 8, whole=True)[0]:.1f} us", flush=True)  # fmt: skip
    ro = _inline_pass(dev, _READ_ONLY, [dev.uniform(np.array([1 << 30, 0, 0, 0], np.uint32))], "uniform only")
    print(f"a dispatch binding only a uniform, 1 workgroup: {median_us(dev, [ro])[0]:.1f} us; "
          f"8 in one pass: {median_us(dev, [ro] * 8, whole=True)[0]:.1f} us", flush=True)  # fmt: skip
    # Per dispatch in a run of 32 in one pass: each reading what the one before wrote (wgpu puts
    # a barrier before each), each writing its own buffer from one source (no hazard), and each
    # binding only a uniform. The difference is what a barrier between dispatches costs.
    bufs = [dev.buffer(4096) for _ in range(33)]
    chain = [
        Pass(copy, dev.bind_group(copy, [bufs[i % 2], bufs[1 - i % 2]]), (1, 1, 1), "copy") for i in range(32)
    ]
    fan = [Pass(copy, dev.bind_group(copy, [bufs[32], bufs[i]]), (1, 1, 1), "copy") for i in range(32)]
    one = median_us(dev, [], whole=True)[0]
    for name, run in (("dependent copies", chain), ("independent copies", fan), ("uniform-only", [ro] * 32)):
        t = median_us(dev, run, whole=True)[0]
        print(f"32 {name} in one pass: {t:.1f} us, {(t - one) / 32:.2f} us a dispatch", flush=True)
    for iters in (1, 16, 64, 256, 1024):
        t = median_us(dev, [peak_pass(dev, 32, 132, iters)[0]])[0]
        print(f"peak kernel, 132 x 32 threads, {iters:5d} steps of 64 dots: {t:7.1f} us", flush=True)
    cfg = {c.name: c for c in RESNET50_CONFIGS}["r50.l4.c2"].with_batch(8)
    case = make_case(cfg)
    x, w, ws, b = case["args"]
    kw = case["kwargs"]
    conv = q8.QConv2d(w, ws, b, device=dev, method="im2col_4w4c", **kw)
    xt = q8.QTensor.from_numpy(x, kw["input_scale"], kw["input_zero_point"], device=dev)
    for splits in (1, 4, 8):
        conv.gemm_override = {
            "kernel": "gemm_q8_tiled.wgsl",
            "constants": {"WG_M": 8, "WG_N": 8, "BK": 16},
            "splits": splits,
        }
        conv._plans.clear()
        _, passes, _ = conv.passes(xt)
        gemm = [p for p in passes if p.label.startswith("gemm")]
        each = median_us(dev, gemm)
        one = median_us(dev, gemm, whole=True)[0]
        print(f"{cfg.name} GEMM, split {splits}: passes {' + '.join(f'{e:.1f}' for e in each)} us; "
              f"in one pass {one:.1f} us", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
