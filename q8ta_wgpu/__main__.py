"""Command line: `python -m q8ta_wgpu {info,demo,verify,bench}` (also installed as `q8ta-wgpu`).

    info     adapter, backend, driver, features, limits, whether dot4I8Packed is native (--json)
    demo     one conv (spec config 4, bias + relu) checked against the reference, and timed
    verify   the spec's configs and depthwise layers with every applicable method against the
             reference (a table)
    bench    GPU-timestamp benchmark against copy / dot4 anchors (bench/run.py adds cuDNN and ncnn)

Exit codes (the same for every command):
    0  success
    1  a result check failed: some output differs from the reference (the requantization rounds
       exactly, so every adapter gives the reference's bytes)
    2  bad command-line usage (unknown command or option, bad value)
    3  no usable WebGPU adapter (install a driver, e.g. mesa-vulkan-drivers; or --adapter /
       --backend matched none)
    4  error: a kernel failed to compile or validate on this adapter, or another unexpected
       failure (the traceback is printed)
    130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE, EXIT_NO_ADAPTER, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
BACKENDS = ("Vulkan", "Metal", "D3D12", "OpenGL")


def _device(args: argparse.Namespace):
    from .runtime import Device

    return Device(args.adapter, backend=args.backend)


def cmd_info(args: argparse.Namespace) -> int:
    from .runtime import list_adapters

    dev = _device(args)
    info = dev.info()
    if args.json:
        info["adapters"] = list_adapters()
        print(json.dumps(info, indent=2))
        return EXIT_OK
    print(f"adapter      {info['adapter']}  ({info['adapter_type']})")
    print(f"backend      {info['backend']}")
    print(f"driver       {info['driver']}")
    print(
        f"dot4I8Packed {info['dot4I8Packed']} (WGSL builtin exact on this adapter: {info['dot4I8Packed'] == 'builtin'})"
    )
    print(f"dot product  {info['dot_product']}: {info['dot_product_detail']}")
    print(f"timestamps   {info['timestamps']} ({info['timestamp_period_ns']:g} ns a tick)")
    print(f"wgpu         {info['wgpu']}")
    print("limits")
    for k, v in info["limits"].items():
        print(f"  {k:40s} {v}")
    print(f"features     {', '.join(info['features'])}")
    others = [f"{a['name']} ({a['backend']}, {a['type']})" for a in list_adapters()]
    print(f"all adapters {'; '.join(others)}")
    return EXIT_OK


def _max_err(y: np.ndarray, ref: np.ndarray) -> tuple[int, int]:
    d = np.abs(y.astype(np.int32) - ref.astype(np.int32))
    return int(d.max(initial=0)), int(np.count_nonzero(d))


def cmd_demo(args: argparse.Namespace) -> int:
    if args.model:
        return demo_network(args)
    from . import reference
    from .configs import SPEC_CONFIGS, make_case
    from .conv import QConv2d

    dev = _device(args)
    cfg = next(c for c in SPEC_CONFIGS if c.name == "spec4")
    case = make_case(cfg, seed=0, activation="relu")
    x, w, ws, b = case["args"]
    conv = QConv2d(w, ws, b, device=dev, **case["kwargs"])
    t0 = time.perf_counter()
    y = conv(x)
    first = time.perf_counter() - t0
    ref = reference.conv2d(x, w, ws, b, **case["kwargs"])
    err, count = _max_err(y, ref)
    print(f"adapter   {dev.name} ({dev.backend}); dot4I8Packed: {dev.dot4_mode}")
    print(f"conv      x {x.shape} int8 * w {w.shape} int8 -> y {y.shape} int8  ({cfg.label()}, bias, relu)")
    print(f"method    {conv.plan(x.shape, '4W4C', True).method}")
    print(f"check     max |gpu - reference| = {err} LSB, {count} of {y.size} elements differ")
    walls = []
    for _ in range(5):
        t0 = time.perf_counter()
        conv(x)
        walls.append(time.perf_counter() - t0)
    line = f"time      first call {first * 1e3:.1f} ms, cached call {np.median(walls) * 1e3:.2f} ms wall (median of 5)"
    if dev.has_timestamps:
        _, passes, _ = conv.passes(x)
        t = dev.time_passes(passes, warmup=1, repeats=5)
        gpu = np.median(t.sum(axis=1))
        line += f", {gpu * 1e3:.2f} ms GPU ({2 * cfg.geometry().macs / gpu / 1e9:.1f} GOPS)"
    print(line)
    ok = err == 0
    print("result    OK" if ok else f"result    MISMATCH ({err} LSB)")
    return EXIT_OK if ok else EXIT_MISMATCH


def demo_network(args: argparse.Namespace) -> int:
    """A built-in network (random weights) quantized through PT2E with Q8taQuantizer, run on the
    GPU, checked against PyTorch's int8 result of the same graph, and timed."""
    try:
        import torch

        from .quantizer import quantize_pt2e
    except ImportError as e:
        print(f"demo --model needs torch and torchao (pip install 'q8ta_wgpu[torch]'): {e}", file=sys.stderr)
        return EXIT_USAGE
    from . import models, reference
    from .torch_import import from_torch

    dev = _device(args)
    hw, batch = args.hw, args.batch
    model = models.build(args.model, seed=0)
    gen = torch.Generator().manual_seed(0)
    calib = [torch.randn(2, 3, hw, hw, generator=gen) for _ in range(2)]
    t0 = time.perf_counter()
    m = quantize_pt2e(model, calib)
    t_quant = time.perf_counter() - t0
    t0 = time.perf_counter()
    net = from_torch(m, device=dev)
    x = torch.randn(batch, 3, hw, hw, generator=gen).numpy()
    got = net.run_int8(x)
    first = time.perf_counter() - t0
    with torch.no_grad():
        y = m(torch.from_numpy(x)).numpy()
    want = reference.quantize_per_tensor(y, net.output_scale, net.output_zero_point)
    err, count = _max_err(got.reshape(want.shape), want)
    top1 = float(np.mean(got.reshape(batch, -1).argmax(1) == want.reshape(batch, -1).argmax(1)))
    print(f"adapter   {dev.name} ({dev.backend}); dot4I8Packed: {dev.dot4_mode}")
    print(f"model     {args.model} (random weights), input [{batch}, 3, {hw}, {hw}], PT2E with Q8taQuantizer "
          f"({t_quant:.1f} s to export, calibrate on 2 random batches, convert)")  # fmt: skip
    if args.verbose:
        print(net)
    kinds: dict[str, int] = {}
    for s in net.steps:
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
    print(f"net       {len(net.steps)} GPU ops: " + ", ".join(f"{v} {k}" for k, v in kinds.items()))
    print(f"check     int8 output vs PyTorch's int8 graph: max {err} LSB, {count} of {want.size} elements differ; "
          f"top-1 agrees on {100 * top1:.0f}% of {batch} inputs")  # fmt: skip
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        net(x)
        walls.append(time.perf_counter() - t0)
    line = f"time      first call {first:.2f} s (compile), then {np.median(walls) * 1e3:.1f} ms wall per call (median of 3)"
    if dev.has_timestamps:
        g = net.gpu_times(x.shape, repeats=3, warm_s=0.0)
        line += f", {g['whole_s'] * 1e3:.2f} ms GPU"
    print(line)
    if args.tune and not dev.has_timestamps:
        print(f"tune      not run: {dev.name} has no GPU timestamps (timestamp-query), which tuning needs")
    elif args.tune:  # per conv on this adapter, kept where the whole net gets faster (Net.tune)
        t0 = time.perf_counter()
        tuned = net.tune(x.shape)
        print(
            f"tune      {len(tuned['choices'])} convs measured in {time.perf_counter() - t0:.0f} s: whole net "
            f"{tuned['before_s'] * 1e3:.3f} -> {tuned['after_s'] * 1e3:.3f} ms GPU, "
            + ("kept (in the tuning cache)" if tuned["kept"] else "not faster: what ran before is kept")
        )
        # Then each conv shape's alternatives inside the whole net (Net.refine).
        t0 = time.perf_counter()
        refined = net.refine(x.shape)
        kept = sum(t["kept"] for t in refined["tried"])
        print(
            f"refine    {len(refined['tried'])} alternatives tried in the whole net in {time.perf_counter() - t0:.0f} s, "
            f"{kept} kept: {refined['before_s'] * 1e3:.3f} -> {refined['after_s'] * 1e3:.3f} ms GPU"
        )
        # Every method rounds exactly, so the tuned net must give the same bytes as before.
        same = bool(np.array_equal(net.run_int8(x), got))
        print(
            "tune      the tuned net gives the same bytes"
            if same
            else "tune      MISMATCH: the tuned net's bytes differ"
        )
        if not same:
            return EXIT_MISMATCH
    ok = err <= 2 and top1 >= 0.99
    print("result    OK" if ok else "result    MISMATCH (over 2 LSB, or top-1 differs)")
    return EXIT_OK if ok else EXIT_MISMATCH


def cmd_verify(args: argparse.Namespace) -> int:
    from . import reference
    from .configs import MOBILENET_DW_CONFIGS, POINTWISE_CONFIGS, SPEC_CONFIGS, make_case
    from .conv import QConv2d
    from .planner import valid_methods

    dev = _device(args)
    cfgs = SPEC_CONFIGS + POINTWISE_CONFIGS + MOBILENET_DW_CONFIGS
    if args.quick:
        n_all = len(cfgs)
        cfgs = [c for c in cfgs if c.geometry().macs <= 50_000_000]
        print(f"--quick: {len(cfgs)} of {n_all} configs (those up to 50 M MACs)")
    print(f"adapter {dev.name} ({dev.backend}); every output must equal the reference's")
    print(f"{'config':16s} {'shape':48s} {'method':15s} {'max':>4s} {'differ':>8s} {'of':>10s}")
    bad = 0
    for cfg in cfgs:
        case = make_case(cfg, seed=1, activation="relu" if int(cfg.name[-1]) % 2 else "none")
        x, w, ws, b = case["args"]
        ref = reference.conv2d(x, w, ws, b, **case["kwargs"])
        for m in valid_methods(cfg.geometry()):
            conv = QConv2d(w, ws, b, method=m, device=dev, **case["kwargs"])
            err, count = _max_err(conv(x), ref)
            bad += err > 0
            flag = "" if err == 0 else "  FAIL"
            print(f"{cfg.name:16s} {cfg.label():48s} {m:15s} {err:4d} {count:8d} {ref.size:10d}{flag}")
    print("all equal to the reference" if not bad else f"{bad} runs differ from the reference")
    return EXIT_OK if not bad else EXIT_MISMATCH


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import main as bench_main

    return bench_main(args)


EXIT_CODES_HELP = """exit codes:
  0    success
  1    a result check failed (an output differs from the reference)
  2    bad command-line usage
  3    no usable WebGPU adapter (or none matches --adapter / --backend)
  4    a kernel failed to compile or validate, or another unexpected error
  130  interrupted"""


def _backend(value: str) -> str:
    for b in BACKENDS:
        if value.lower() == b.lower():
            return b
    raise argparse.ArgumentTypeError(f"unknown backend {value!r}; choose from {', '.join(BACKENDS)}")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    fmt = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(
        prog="q8ta-wgpu",
        description="int8 quantized conv2d on WebGPU: adapter facts, a demo, checks and benchmarks.\n"
        "Run `q8ta-wgpu COMMAND --help` for a command's options.",
        epilog=EXIT_CODES_HELP,
        formatter_class=fmt,
    )
    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--adapter",
        metavar="NAME",
        help="use the adapter whose name contains NAME, case-insensitive (default: $Q8TA_WGPU_ADAPTER, "
        "else the best: discrete GPU, integrated, virtual, then CPU such as lavapipe)",
    )
    common.add_argument(
        "--backend",
        type=_backend,
        help=f"one of {', '.join(BACKENDS)} (default: $WGPU_BACKEND_TYPE, else any; Vulkan preferred)",
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "info",
        parents=[common],
        formatter_class=fmt,
        epilog=EXIT_CODES_HELP,
        help="adapter, backend, features, limits, dot4I8Packed support",
        description="Show the WebGPU adapter q8ta_wgpu would use: name, backend, driver, whether the\n"
        "WGSL builtin dot4I8Packed compiles and is exact here (else a by-hand fallback is used),\n"
        "GPU timestamps, the limits that matter (storage binding size, ...) and all adapters.",
    )
    p.add_argument("--json", action="store_true", help="print the same facts as one JSON object")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser(
        "demo",
        parents=[common],
        formatter_class=fmt,
        epilog=EXIT_CODES_HELP,
        help="run one conv, check it against the reference, time it",
        description="Run one conv (spec config 4: 64x32 channels, 64x64, 3x3, padding 1, with bias and\n"
        "relu) on the GPU, compare it with the numpy reference (equal bytes) and time it\n"
        "(first call, cached calls, and GPU time where timestamps exist).",
    )
    p.add_argument("--model", choices=["resnet18", "resnet50", "mobilenet_v2", "tiny_resnet", "tiny_mobilenet_v2"],
                   help="run a whole built-in network instead (random weights; needs torch and torchao): "
                   "quantized through PT2E with Q8taQuantizer, checked against PyTorch's int8 result")  # fmt: skip
    p.add_argument("--hw", type=int, default=224, help="with --model: input height and width (default 224)")
    p.add_argument("--batch", type=int, default=1, help="with --model: batch size (default 1)")
    p.add_argument(
        "--verbose", "-v", action="store_true", help="with --model: print the net, one line per op"
    )
    p.add_argument("--tune", action="store_true", help="with --model: then tune it on this adapter (Net.tune, "
                   "then Net.refine; needs GPU timestamps; the choices go to the per-user tuning cache)")  # fmt: skip
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser(
        "verify",
        parents=[common],
        formatter_class=fmt,
        epilog=EXIT_CODES_HELP,
        help="run the spec's configs and depthwise layers against the reference",
        description="Run the spec's conv and pointwise configs and the bench's depthwise layers\n"
        "with every method that applies (im2col_generic; im2col_4w4c and implicit_4w4c with\n"
        "groups == 1 or C_in/groups % 4 == 0; pointwise for 1x1 convs; depthwise_4w4c for\n"
        "groups == C_in == C_out) and compare each with the numpy reference. Prints one row per\n"
        "run: the largest difference in LSB and how many outputs differ. Exit code 1 if any output\n"
        "differs from the reference.",
    )
    p.add_argument("--quick", action="store_true", help="only configs up to 50 M MACs (seconds on lavapipe)")
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser(
        "bench",
        parents=[common],
        formatter_class=fmt,
        epilog=EXIT_CODES_HELP,
        help="benchmark kernels against copy/dot4 anchors, standalone and per layer in a chain",
        description="Time each conv with GPU timestamps, standalone and per layer in a chain of convs\n"
        "in one compute pass (as a network runs it), and rate its kernels against anchors measured\n"
        "in the same process: copy bandwidth (im2col) and the dot4I8Packed peak (GEMM). Writes\n"
        "bench/results/<adapter>.json only (see notebooks/performance.ipynb). Comparisons with\n"
        "other libraries (cuDNN fp16 under CUDA graphs, ncnn int8 on Vulkan) run from a clone of\n"
        "the repository: python bench/run.py (same options), which also writes BENCHMARKS.md and\n"
        "the plots; python bench/report.py rewrites them from the results.",
    )
    from .bench import add_arguments

    add_arguments(p)
    p.set_defaults(func=cmd_bench)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    from .runtime import KernelError, NoAdapterError

    args = build_parser().parse_args(argv)  # exits 2 on bad usage
    try:
        return args.func(args)
    except NoAdapterError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_NO_ADAPTER
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KernelError as e:
        print(f"error: a kernel failed on this adapter: {e}", file=sys.stderr)
        return EXIT_ERROR
    except Exception:  # noqa: BLE001 - anything else: show it, and do not look like exit code 1
        import traceback

        traceback.print_exc()
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
