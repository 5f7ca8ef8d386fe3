"""End-to-end network latency: whole int8 networks on q8ta_wgpu against PyTorch, in one run.

    python bench/networks.py --models resnet18,resnet50,mobilenet_v2 --batches 1,8 \\
        [--out bench/results/<adapter>-networks.json] [--repeats 30] [--quantizer q8ta|xnnpack]
    python bench/networks.py --models tiny_resnet,tiny_mobilenet_v2 --hw 32   # CI-size, no torchvision
    python bench/networks.py --weights digits --hw 32 [--digits digits.npz] [--train-epochs 3]

--weights digits (bench/trained.py): each model built with 10 classes and trained (on CUDA where
there is one) on scikit-learn's digits upscaled to --hw, so its weights and BN statistics come from
real data; PT2E calibrates on training digits and the exactness check runs on the held-out digits
(all of them by default), rows adding the int8 accuracies. The digits come from --digits or
$Q8TA_DIGITS (an .npz: `python bench/trained.py --save-digits digits.npz` where scikit-learn is
installed), else from scikit-learn. Every row records its "weights".

Per model: the float model (torchvision.models.<name>(weights=None): random weights; or a small
built-in one of q8ta_wgpu.models), its BN running statistics measured on noise (--bn-stats data, the default: with
torchvision's initial ones, mean 0 and variance 1, activations do not stay normalized and
MobileNetV2's int8 output was one value for every input and class, which any implementation
matches), quantized through PT2E (torch.export with a dynamic batch, prepare_pt2e with q8ta_wgpu's
Q8taQuantizer, or XNNPACK's where that is not importable or `--quantizer xnnpack`, calibration on
a few batches of normal noise, convert_pt2e), imported with `q8.from_torch`. Per (model, batch):

- gpu_s: GPU time of the whole forward pass (`net.gpu_times`: timestamps, input quantize and output
  unpack included), with a per-op profile (`steps`; each op's passes timed alone);
- wall_s: median wall time of `net(x)` after warm-up (numpy float32 in and out: upload, quantize,
  every op, readback, host work), host_s = wall_s - gpu_s;
- exactness: `net.run_int8` against PyTorch's int8 output of the same PT2E graph (the converted
  module on the CPU, its float output quantized with the net's output scale and zero point):
  max_lsb, within_1lsb, top1_agree, on --check inputs (8; at least the largest batch) of normal
  noise: at batch 1 each input runs through the GPU alone, at batch B in batches of B; PyTorch
  runs them as one batch (top1_classes, top1_tied, top1_margin_lsb say how much the top-1
  agreement means). per_op_max_lsb: each GPU op run alone on PyTorch's int8 inputs against
  PyTorch's int8 output of that node (the models' "per_op" list): it tells one op that is off
  from rare 1-LSB differences that grow through a deep network's layers;
- peers, each null where it is not available: torch_fp16_graph_s (PyTorch fp16 on CUDA, BN folded,
  the fastest of channels_last and NCHW, each with cuDNN's autotuner over every algorithm and with
  its heuristic, one forward captured in a CUDA graph, replays timed between CUDA events; the
  figure starts from fp16 input on the GPU and ends at its fp16 output, while q8ta's gpu_s also
  counts its float32 input quantize and output unpack, quantize_s and unpack_s in the row),
  torch_fp16_eager_wall_s (the same model called eagerly, in the faster of the two layouts,
  host included: the float32 input copied to the GPU, the output copied back, as net(x) does),
  torch_cpu_int8_s (torchvision's quantizable model with the same weights, torch.ao eager
  fuse / prepare / calibrate / convert, x86 or fbgemm engine, at the best of all, half and a
  quarter of the CPU threads); that eager model imported with `q8.from_torch` is checked against
  its own output (`eager_import`); ncnn_int8_wall_s (bench/peers/ncnn_net.py: the same int8
  network written as an ncnn model, int8 convs on ncnn's Vulkan path, median wall time of one
  inference with upload and download, as net(x); ncnn's Python API cannot time the GPU alone,
  so ncnn_int8_s, a GPU time, stays null).

A model that fails (an unsupported op, out of memory) records its error in its rows and the run
goes on. bench/report.py writes these results into BENCHMARKS.md's "Whole networks" section.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import q8ta_wgpu as q8  # noqa: E402
from bench.peers.ncnn_net import ncnn_available, ncnn_int8  # noqa: E402
from bench.peers.torch_cuda import cuda_graph_seconds  # noqa: E402
from bench.trained import DIGITS_ENV, accuracy, digits_split, train  # noqa: E402
from bench.wall_time import median_wall  # noqa: E402
from q8ta_wgpu.bench import slug, stats  # noqa: E402
from q8ta_wgpu.forward import whole_gpu_times  # noqa: E402
from q8ta_wgpu.net import ConvOp  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=FutureWarning)

TINY = ("tiny_resnet", "tiny_mobilenet_v2")  # q8ta_wgpu.models' CI-size ones
CHECK_INPUTS = 8  # inputs the exactness check runs at least (top-1 agreement over these): --check
CALIB_BATCHES, CALIB_SIZE = 2, 2  # PT2E calibration: batches of normal noise, each of this size
DIGITS_CALIB_BATCHES, DIGITS_CALIB_SIZE = 4, 64  # with --weights digits: batches of training digits
TRAIN_EPOCHS = 3  # --weights digits: epochs of training
GRAPH_REPLAYS = 20  # CUDA-graph replays between two events (one measurement)
FUSION_ROUNDS = 3  # turns of timing the fused and the unfused net, alternated
WARM_S = 0.2  # seconds of running a peer before timing it (clocks up)
CPU_REPEATS = 10  # most timed calls of the CPU int8 peer


def float_model(name: str, seed: int, classes: int | None = None) -> Any:
    """The float model `name`, in eval mode: a built-in small one (10 classes), or torchvision's
    with random weights (its own initialization: BN weight 1, bias 0, running mean 0, variance 1)
    and `classes` outputs (None: its default, 1000)."""
    import torch

    torch.manual_seed(seed)
    if name in TINY:
        if classes not in (None, 10):
            raise ValueError(f"{name} has 10 classes, not {classes}")
        return q8.models.build(name, seed)
    import torchvision

    kw = {} if classes is None else {"num_classes": classes}
    return getattr(torchvision.models, name)(weights=None, **kw).eval()


def set_bn_stats(model: Any, batches: list[Any]) -> int:
    """Every BN's running statistics measured on `batches` (train-mode forwards, a cumulative
    average), as training would leave them: each BN then normalizes its input, and a random
    network's output depends on its input (with torchvision's initial statistics, mean 0 and
    variance 1, MobileNetV2's int8 output was one value for every input and class). Returns the
    number of BN layers; the model is left in eval mode."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [b.momentum for b in bns]
    for b in bns:
        b.reset_running_stats()
        b.momentum = None  # cumulative average over the batches
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    for b, m in zip(bns, momenta, strict=True):
        b.momentum = m
    model.eval()
    return len(bns)


# ---- PT2E ------------------------------------------------------------------------------------
def make_quantizer(which: str) -> tuple[Any, str]:
    """(quantizer, what it is): Q8taQuantizer, or XNNPACK's (per-channel symmetric weights) where
    asked for or where Q8taQuantizer cannot be imported."""
    note = ""
    if which == "q8ta":
        try:
            return getattr(q8, "Q8taQuantizer")(), "q8ta"  # noqa: B009 - may not exist yet
        except (ImportError, AttributeError) as e:
            note = f" (Q8taQuantizer unavailable: {type(e).__name__}: {e})"
    from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    return quantizer, "xnnpack" + note


def calibration(hw: int, seed: int, batches: int = CALIB_BATCHES, size: int = CALIB_SIZE) -> list[Any]:
    import torch

    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(size, 3, hw, hw, generator=gen) for _ in range(batches)]


# ---- exactness -------------------------------------------------------------------------------
def torch_int8_out(y: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """PyTorch's int8 output: its float output (the last dequantize of int8 values) quantized
    again with the same parameters gives back those int8 values exactly."""
    return q8.reference.quantize_per_tensor(y, scale, zero_point)


def torch_forward(m: Any, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return m(torch.from_numpy(x)).float().numpy()


def gpu_int8(net: q8.Net, x: np.ndarray, batch: int) -> np.ndarray:
    """`net.run_int8` over x in batches of `batch` (the plan a batch-B inference runs)."""
    outs = [net.run_int8(x[i : i + batch]) for i in range(0, len(x), batch)]
    return np.concatenate(outs).reshape(len(x), -1)


def compare(got: np.ndarray, want: np.ndarray) -> dict[str, Any]:
    """int8 outputs [n, ...]: max |diff| in LSB, the fraction within 1 LSB, top-1 agreement."""
    got, want = got.reshape(len(got), -1), want.reshape(len(want), -1)
    d = np.abs(got.astype(np.int32) - want.astype(np.int32))
    top1 = float(np.mean(got.argmax(1) == want.argmax(1)))
    top2 = np.sort(want.astype(np.int32), 1)[:, -2:]
    margin = float(np.median(top2[:, 1] - top2[:, 0])) if want.shape[1] > 1 else None
    return {
        "max_lsb": int(d.max()),
        "within_1lsb": float(np.mean(d <= 1)),
        "differ": int(np.count_nonzero(d)),
        "elements": int(d.size),
        "top1_agree": top1,
        # How much top-1 agreement says: the distinct classes PyTorch's int8 output picks over the
        # inputs (random networks tend to give every input the same one), and the inputs whose
        # largest int8 output is shared by several classes (a tie argmax breaks by index).
        "top1_classes": int(len(np.unique(want.argmax(1)))),
        "top1_tied": int(np.sum((want == want.max(1, keepdims=True)).sum(1) > 1)),
        "out_levels": int(len(np.unique(want))),  # distinct int8 values in PyTorch's output
        # PyTorch's largest output less its second largest, in LSB (median over the inputs): at
        # 2 or more, outputs within 1 LSB cannot swap the top-1 class.
        "top1_margin_lsb": margin,
    }


def torch_int8_values(m: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every int8 tensor of a PT2E graph run on x: the output of each quantize_per_tensor node, by
    node name, and the graph input's (by the placeholder's name, as the net calls it)."""
    import torch
    import torch.fx

    values: dict[str, np.ndarray] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n: Any) -> Any:
            out = super().run_node(n)
            if (
                n.op == "call_function"
                and "quantize_per_tensor" in str(n.target)
                and "dequantize" not in str(n.target)
            ):
                q = out.numpy().astype(np.int8)
                values[n.name] = q
                src = n.args[0]
                if isinstance(src, torch.fx.Node) and src.op == "placeholder":
                    values[src.name] = q
            return out

    with torch.no_grad():
        Recorder(m).run(torch.from_numpy(x))
    return values


def torch_float64_forward(m: Any, x: np.ndarray, chunk: int = 64) -> np.ndarray:
    """A PT2E graph's float output computed in float64: every dequantize exact ((q - zp) * scale),
    every float op (conv, linear, add, pools, clamps) in float64, every quantize rounding the
    float64 value. The same int8 network as PyTorch's float32 run, with another rounding: how far
    two faithful evaluations of it lie apart (a network that amplifies rare 1-LSB differences
    shows it on PyTorch against itself, not only on the GPU). x runs in batches of `chunk`."""
    import torch
    import torch.fx

    def f64(t: Any) -> Any:
        return t.double() if isinstance(t, torch.Tensor) and t.is_floating_point() else t

    class Float64(torch.fx.Interpreter):
        def call_function(self, target: Any, args: Any, kwargs: Any) -> Any:
            name = str(target)
            if "quantized_decomposed" not in name:
                args, kwargs = torch.utils._pytree.tree_map(f64, (args, kwargs))
                return f64(target(*args, **kwargs))
            if name.endswith("dequantize_per_tensor.default"):
                q, scale, zp = args[:3]
                return (q.double() - zp) * scale
            if name.endswith("dequantize_per_channel.default"):
                q, scales, zps, axis = args[:4]
                shape = [-1 if d == axis % q.dim() else 1 for d in range(q.dim())]
                return (q.double() - zps.double().view(shape)) * scales.double().view(shape)
            if name.endswith(".quantize_per_tensor.default"):
                v, scale, zp, lo, hi, dtype = args
                return torch.clamp(torch.round(v / scale) + zp, lo, hi).to(dtype)
            raise NotImplementedError(f"float64 evaluation of {name}")

    with torch.no_grad():
        return np.concatenate(
            [
                Float64(m).run(torch.from_numpy(x[i : i + chunk]).double()).numpy()
                for i in range(0, len(x), chunk)
            ]
        )


def per_op_check(net: q8.Net, values: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Each GPU op run alone on PyTorch's int8 inputs (teacher forcing), its output compared with
    PyTorch's int8 output of the same node: where a network's output differs by more than 1 LSB,
    this tells one op off by more from 1-LSB differences that grow through the layers. Values the
    graph has no quantize node for (a flatten's, a max pool's before its requantize) are the
    GPU's own."""
    from q8ta_wgpu.layouts import packed_words

    dev = net.device

    def as4(a: np.ndarray) -> np.ndarray:
        return a.reshape(*a.shape, *([1] * (4 - a.ndim)))

    vals = {k: as4(v) for k, v in values.items()}
    scales = {net.input_name: (net.input_scale, net.input_zero_point)}
    out = []
    for i, st in enumerate(net.graph_steps):  # each graph op on its own (a fused add too)
        scales[st.output] = (st.scale, st.zero_point)
        if any(v not in vals for v in st.inputs):
            out.append({"step": i, "kind": st.kind, "source": st.source, "max_lsb": None})
            continue
        ins = [q8.QTensor.from_numpy(vals[v], *scales[v], device=dev) for v in st.inputs]
        shape = tuple(st.op.output_shape(*(t.shape for t in ins)))
        buf = dev.buffer(4 * packed_words(shape, "4W4C"), label="per-op check")
        y = q8.QTensor(buf, shape, "4W4C", st.scale, st.zero_point, dev)
        dev.run(st.op.passes(ins, y))
        got = y.numpy()
        row: dict[str, Any] = {"step": i, "kind": st.kind, "source": st.source, "max_lsb": None}
        if st.output in vals:
            d = np.abs(got.astype(np.int32) - vals[st.output].reshape(got.shape).astype(np.int32))
            row.update(max_lsb=int(d.max()), differ=float(np.mean(d > 0)))
        else:
            vals[st.output] = got
        out.append(row)
    return out


class TorchCuda:
    """PyTorch fp16 on the first CUDA device (None fields without CUDA)."""

    def __init__(self, enabled: bool = True) -> None:
        self.torch: Any = None
        if not enabled:
            return
        import torch

        if torch.cuda.is_available():
            self.torch = torch
            torch.backends.cudnn.benchmark_limit = 0  # the autotuner tries every algorithm

    def info(self) -> dict[str, Any] | None:
        if self.torch is None:
            return None
        torch = self.torch
        return {
            "device": torch.cuda.get_device_name(0),
            "cudnn": torch.backends.cudnn.version(),
            "graph_replays_per_measurement": GRAPH_REPLAYS,
        }

    def prepare(self, model: Any) -> tuple[Any, bool]:
        """The model with BN folded into the convs (torch.fx), fp16, on the GPU; whether folded."""
        import copy

        m = copy.deepcopy(model).eval()
        folded = False
        try:
            from torch.fx.experimental.optimization import fuse

            m, folded = fuse(m), True
        except Exception:  # noqa: BLE001 - a model torch.fx cannot trace runs unfolded
            pass
        return m.half().cuda(), folded

    def graph_time(self, model: Any, x: Any, repeats: int) -> dict[str, float]:
        """Seconds per forward: one forward captured in a CUDA graph, GRAPH_REPLAYS replays timed
        between CUDA events, divided; median (min, max) of `repeats` such measurements."""
        with self.torch.no_grad():
            v = cuda_graph_seconds(
                self.torch, lambda: model(x), calls=1, replays=GRAPH_REPLAYS, repeats=repeats, warm_s=WARM_S
            )
        return stats(v)

    def measure(self, model16: Any, x: np.ndarray, repeats: int, warm_s: float) -> dict[str, Any]:
        """PyTorch fp16 at its best, as bench/peers/torch_cuda.py takes a conv: the CUDA-graph
        time of each layout (channels_last, NCHW) with cuDNN's autotuner over every algorithm and
        with its heuristic, the fastest the figure; the eager wall time in each layout with the
        algorithm choice that won its graph, the faster the figure, warmed as net(x) is."""
        torch = self.torch
        out: dict[str, Any] = {}
        xg = torch.from_numpy(x).cuda().half()
        per_variant: dict[str, dict[str, float]] = {}
        for layout, fmt in (("channels_last", torch.channels_last), ("nchw", torch.contiguous_format)):
            m = model16.to(memory_format=fmt)
            for choice, benchmark in (("autotuned", True), ("heuristic", False)):
                torch.backends.cudnn.benchmark = benchmark
                per_variant[f"{layout} {choice}"] = self.graph_time(
                    m, xg.contiguous(memory_format=fmt), max(5, repeats // 3)
                )
        best = min(per_variant, key=lambda k: per_variant[k]["median"])
        out["torch_fp16_graph_s"] = per_variant[best]["median"]
        out["torch_fp16_layout"] = best
        out["torch_fp16_graph_stats"] = per_variant
        xc = torch.from_numpy(x)
        eager_walls = {}
        for layout, fmt in (("channels_last", torch.channels_last), ("nchw", torch.contiguous_format)):
            m = model16.to(memory_format=fmt)
            won = min(
                (k for k in per_variant if k.startswith(layout)), key=lambda k: per_variant[k]["median"]
            )
            torch.backends.cudnn.benchmark = won.endswith("autotuned")

            def eager(m: Any = m, fmt: Any = fmt) -> Any:  # float32 host in, float32 host out, as net(x)
                with torch.no_grad():
                    y = m(xc.cuda().half().contiguous(memory_format=fmt))
                    return y.float().cpu()  # waits for the GPU

            eager_walls[layout] = median_wall(eager, repeats, warm_s=warm_s)
        fastest = min(eager_walls, key=lambda k: eager_walls[k]["median"])
        out["torch_fp16_eager_wall_s"] = eager_walls[fastest]["median"]
        out["torch_fp16_eager_layout"] = fastest
        out["torch_fp16_eager_wall_stats"] = eager_walls
        return out


def eager_int8(name: str, fmodel: Any, calib: list[Any], classes: int | None = None) -> tuple[Any, str]:
    """torchvision's quantizable `name` (`classes` outputs; None: its default) with `fmodel`'s
    weights, torch.ao eager-quantized (fuse, x86/fbgemm qconfig, prepare, calibrate, convert);
    (model, what was done)."""
    import torch
    import torchvision.models.quantization as tvq
    from torch.ao.quantization import convert, get_default_qconfig, prepare

    engines = torch.backends.quantized.supported_engines
    engine = "x86" if "x86" in engines else "fbgemm"
    torch.backends.quantized.engine = engine
    kw = {} if classes is None else {"num_classes": classes}
    m = getattr(tvq, name)(weights=None, quantize=False, **kw).eval()
    same = True
    try:
        m.load_state_dict(fmodel.state_dict())
    except RuntimeError:
        same = False
    m.fuse_model()
    m.qconfig = get_default_qconfig(engine)
    prepare(m, inplace=True)
    with torch.no_grad():
        for batch in calib:
            m(batch)
    convert(m, inplace=True)
    what = f"torchvision.models.quantization.{name}, {engine} qconfig, " + (
        "the PT2E model's float weights" if same else "its own random weights"
    )
    return m, what


# ---- the run ---------------------------------------------------------------------------------
def git_commit() -> dict[str, Any] | None:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def _err(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".strip()[:2000]


def _ms(v: float | None) -> str:
    return f"{v * 1e3:8.3f}" if v is not None else f"{'-':>8}"


HEADER = (
    f"{'model':<16} {'B':>3} {'ops':>4} {'gpu ms':>8} {'wall ms':>8} {'host ms':>8} "
    f"{'fp16 gr':>8} {'fp16 eg':>8} {'cpu i8':>8} {'lsb':>4} {'<=1lsb':>7} {'top1':>5}"
)


def table_line(r: dict[str, Any]) -> str:
    if r.get("gpu_s") is None and r.get("wall_s") is None:
        return f"{r['model']:<16} {r['batch']:>3}  error: {r.get('error', '?')[:120]}"
    lsb = "-" if r.get("max_lsb") is None else str(r["max_lsb"])
    within = "-" if r.get("within_1lsb") is None else f"{100 * r['within_1lsb']:.2f}%"
    top1 = "-" if r.get("top1_agree") is None else f"{r['top1_agree']:.2f}"
    return (
        f"{r['model']:<16} {r['batch']:>3} {r.get('ops') or '-':>4} {_ms(r.get('gpu_s'))} "
        f"{_ms(r.get('wall_s'))} {_ms(r.get('host_s'))} {_ms(r.get('torch_fp16_graph_s'))} "
        f"{_ms(r.get('torch_fp16_eager_wall_s'))} {_ms(r.get('torch_cpu_int8_s'))} {lsb:>4} {within:>7} {top1:>5}"
    )


def empty_row(model: str, batch: int, weights: str = "random") -> dict[str, Any]:
    return {
        "model": model,
        "batch": batch,
        "weights": weights,  # random, or digits (trained on them: bench/trained.py)
        "gpu_s": None,
        "gpu_unfused_s": None,  # the same net with residual adds and the input quantize as passes of their own
        "wall_s": None,
        "host_s": None,
        "torch_fp16_graph_s": None,
        "torch_fp16_eager_wall_s": None,
        "torch_cpu_int8_s": None,
        "ncnn_int8_s": None,
        "max_lsb": None,
        "within_1lsb": None,
        "top1_agree": None,
        "steps": None,
        "ops": None,
        "method_counts": None,
    }


class ModelBench:
    """One model: its float, PT2E int8 and GPU forms and its peers, made once; `row(batch)`."""

    def __init__(self, name: str, args: argparse.Namespace, dev: q8.Device, cuda: TorchCuda) -> None:
        self.name, self.args, self.dev, self.cuda = name, args, dev, cuda
        self.info: dict[str, Any] = {"model": name}
        self.errors: dict[str, str] = {}
        hw = args.hw
        self.info["weights"] = args.weights
        self.labels: np.ndarray | None = None
        t0 = time.perf_counter()
        if args.weights == "digits":
            calib = self._digits_model()
        else:
            self.fmodel = float_model(name, args.seed)
            if args.bn_stats == "data":
                bn_data = calibration(hw, args.seed + 4, args.bn_batches, args.bn_size)
                self.info["bn_layers_measured"] = set_bn_stats(self.fmodel, bn_data)
            calib = calibration(hw, args.seed + 1, args.calib_batches, args.calib_size)
            rng = np.random.default_rng(args.seed + 2)
            n = max(args.check, *args.batch_list)
            self.x_check = rng.standard_normal((n, 3, hw, hw)).astype(np.float32)
        self.info["float_model_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        quantizer, self.info["quantizer"] = make_quantizer(args.quantizer)
        self.qmodel = q8.quantize_pt2e(self.fmodel, calib, quantizer)
        self.info["pt2e_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.net = q8.from_torch(self.qmodel, device=dev)
        # The same graph with each residual add a pass of its own: the fusion measured against it.
        self.net_unfused = q8.from_torch(self.qmodel, device=dev, fuse=False)
        self.info["import_s"] = time.perf_counter() - t0
        n = len(self.x_check)
        t0 = time.perf_counter()
        y = torch_forward(self.qmodel, self.x_check)
        self.want = torch_int8_out(y, self.net.output_scale, self.net.output_zero_point)
        y_float = torch_forward(self.fmodel, self.x_check).reshape(n, -1)
        self.float_top1 = y_float.argmax(1)
        self.exact: np.ndarray | None = None  # --weights digits: the graph evaluated in float64
        if self.labels is not None:
            self.info["accuracy_float"] = accuracy(y_float, self.labels)
            self.info["accuracy_torch_int8"] = accuracy(self.want, self.labels)
        if self.labels is not None and args.float64:
            try:
                y64 = torch_float64_forward(self.qmodel, self.x_check).astype(np.float32)
                self.exact = torch_int8_out(y64, self.net.output_scale, self.net.output_zero_point)
                self.info["torch_vs_float64"] = compare(self.want, self.exact)
            except Exception as e:  # noqa: BLE001 - a diagnostic: its failure is recorded
                self.errors["float64"] = _err(e)
        self.info["torch_check_s"] = time.perf_counter() - t0
        try:  # each op alone on PyTorch's int8 inputs (two of the check inputs)
            ops = per_op_check(self.net, torch_int8_values(self.qmodel, self.x_check[:2]))
            checked = [o for o in ops if o["max_lsb"] is not None]
            self.info["per_op_max_lsb"] = max((o["max_lsb"] for o in checked), default=None)
            self.info["per_op_checked"] = len(checked)
            self.info["per_op_over_1lsb"] = [o for o in checked if o["max_lsb"] > 1]
            self.info["per_op"] = ops
        except Exception as e:  # noqa: BLE001 - a diagnostic: its failure is recorded
            self.errors["per_op_check"] = _err(e)
        # Peers, each optional.
        self.model16 = None
        if cuda.torch is not None:
            try:
                self.model16, self.info["bn_folded"] = cuda.prepare(self.fmodel)
            except Exception as e:  # noqa: BLE001 - a peer's failure is recorded, the run goes on
                self.errors["torch_fp16"] = _err(e)
        self.eager = None
        self.eager_import: dict[str, Any] | None = None
        if name not in TINY:
            try:
                classes = 10 if args.weights == "digits" else None
                self.eager, self.info["torch_cpu_int8"] = eager_int8(name, self.fmodel, calib, classes)
            except Exception as e:  # noqa: BLE001
                self.errors["torch_cpu_int8"] = _err(e)
        if self.eager is not None:
            self.eager_import = self._eager_import()

    def _digits_model(self) -> list[Any]:
        """--weights digits: the float model (10 classes) trained on the training digits, on CUDA
        where there is one; the held-out digits as the check inputs. Returns the PT2E calibration
        batches (training digits)."""
        import torch

        args, split = self.args, self.args.digits_split
        self.fmodel = float_model(self.name, args.seed, classes=10)
        where = "cuda" if torch.cuda.is_available() else "cpu"
        t0 = time.perf_counter()
        self.fmodel = train(self.fmodel, split, epochs=args.train_epochs, seed=args.seed, device=where)
        self.info.update(train_s=time.perf_counter() - t0, train_device=where, train_epochs=args.train_epochs)
        n = (
            len(split.x_test)
            if args.check is None
            else min(len(split.x_test), max(args.check, *args.batch_list))
        )
        self.x_check, self.labels = split.x_test[:n], split.y_test[:n]
        size = args.calib_size
        return [torch.from_numpy(split.x_train[i * size : (i + 1) * size]) for i in range(args.calib_batches)]

    def _eager_import(self) -> dict[str, Any]:
        """The torch.ao eager model on the GPU (`q8.from_torch`) against its own int8 output."""
        try:
            enet = q8.from_torch(self.eager, device=self.dev)
            n = len(self.x_check)
            got = gpu_int8(enet, self.x_check, n)
            y = torch_forward(self.eager, self.x_check)
            want = torch_int8_out(y, enet.output_scale, enet.output_zero_point)
            out = {"ops": len(enet.steps), **compare(got, want)}
            try:
                g = enet.gpu_times((n, 3, self.args.hw, self.args.hw), repeats=5, warm_s=0.1)
                out["gpu_s"], out["gpu_batch"] = g["whole_s"], n
            except Exception as e:  # noqa: BLE001
                out["gpu_error"] = _err(e)
            return out
        except Exception as e:  # noqa: BLE001
            return {"error": _err(e)}

    def row(self, batch: int) -> dict[str, Any]:
        args, net = self.args, self.net
        r = empty_row(self.name, batch, args.weights)
        shape = (batch, 3, args.hw, args.hw)
        x = np.random.default_rng(args.seed + 3 + batch).standard_normal(shape).astype(np.float32)
        r["ops"] = len(net.steps)
        shapes = net.shapes(shape)
        r["kind_counts"] = dict(Counter(s.kind for s in net.steps))
        # exactness
        got = gpu_int8(net, self.x_check, batch)
        r.update(compare(got, self.want))
        r["top1_vs_float"] = float(np.mean(got.argmax(1) == self.float_top1))
        if self.labels is not None:  # --weights digits: accuracies on the held-out digits
            r["accuracy_gpu_int8"] = accuracy(got, self.labels)
            r["accuracy_torch_int8"] = self.info["accuracy_torch_int8"]
            r["accuracy_float"] = self.info["accuracy_float"]
            if self.exact is not None:  # how far the GPU and PyTorch's float32 are from float64
                r["gpu_vs_float64"] = compare(got, self.exact)
                r["torch_vs_float64"] = self.info["torch_vs_float64"]
        methods = {  # the plans now made: a tuned choice shows
            i: s.op.method(shapes[s.inputs[0]]) for i, s in enumerate(net.steps) if isinstance(s.op, ConvOp)
        }
        r["method_counts"] = dict(Counter(methods.values()))
        # GPU time
        try:
            g = net.gpu_times(shape, repeats=args.repeats, warm_s=args.warm_s)
            r["gpu_s"], r["gpu_min_s"], r["gpu_max_s"] = g["whole_s"], g["whole_min_s"], g["whole_max_s"]
            r["quantize_s"], r["unpack_s"] = g["quantize_s"], g["unpack_s"]
            # the float input quantized by the first conv (no quantize pass: quantize_s is 0)
            r["input_quantized_in_conv"] = not net.compile(shape).quantize
            r["steps"] = [
                {**s, **({"method": methods[i]} if i in methods else {})} for i, s in enumerate(g["steps_s"])
            ]
            r["steps_sum_s"] = float(sum(s["s"] for s in g["steps_s"]))
        except Exception as e:  # noqa: BLE001 - e.g. no timestamp queries: gpu_s stays null
            r["gpu_error"] = _err(e)
        # the fusions measured: the same graph with its adds and its input quantize as passes of
        # their own (self.net_unfused), the two timed in turns so that drifting clocks hit both alike
        r["fused_adds"] = sum(s.kind.endswith("+add") for s in net.steps)
        if r["fused_adds"]:
            unfused = self.net_unfused
            try:
                r["fused_equal_unfused"] = bool(np.array_equal(gpu_int8(unfused, self.x_check, batch), got))
                if r["gpu_s"] is not None:
                    turns: dict[str, list[float]] = {"fused_s": [], "unfused_s": []}
                    for _ in range(FUSION_ROUNDS):
                        for k, n in (("fused_s", net), ("unfused_s", unfused)):
                            c = n.compile(shape)
                            turns[k] += list(
                                whole_gpu_times(self.dev, c, repeats=args.repeats, warm_s=args.warm_s)
                            )
                    r["fusion"] = {k: float(np.median(v)) for k, v in turns.items()} | {
                        "rounds": FUSION_ROUNDS
                    }
                    r["gpu_unfused_s"] = r["fusion"]["unfused_s"]
            except Exception as e:  # noqa: BLE001
                r["unfused_error"] = _err(e)
        # wall time of net(x)
        w = median_wall(lambda: net(x), args.repeats, warm_s=args.warm_s)
        r["wall_s"], r["wall_min_s"], r["wall_max_s"] = w["median"], w["min"], w["max"]
        if r["gpu_s"] is not None:
            r["host_s"] = r["wall_s"] - r["gpu_s"]
        # peers
        if self.model16 is not None:
            try:
                r.update(self.cuda.measure(self.model16, x, args.repeats, args.warm_s))
            except Exception as e:  # noqa: BLE001
                r["torch_fp16_error"] = _err(e)
                self.cuda.torch.cuda.empty_cache()
        if self.eager is not None:
            try:
                r.update(self._cpu_int8(x))
            except Exception as e:  # noqa: BLE001
                r["torch_cpu_int8_error"] = _err(e)
        # ---- ncnn int8 peer (bench/peers/ncnn_net.py): ncnn_int8_wall_s, or null and ncnn_int8_error
        use_ncnn = getattr(args, "ncnn", None)
        if use_ncnn is None:
            use_ncnn = ncnn_available()
        if use_ncnn:
            try:
                r.update(ncnn_int8(net, x, repeats=args.repeats, warm_s=args.warm_s))
            except Exception as e:  # noqa: BLE001 - ncnn_int8 records its own failures; this is a guard
                r["ncnn_int8_wall_s"], r["ncnn_int8_error"] = None, _err(e)
        else:
            r["ncnn_int8_wall_s"] = None
            r["ncnn_int8_error"] = "not run: --no-ncnn" if use_ncnn is False else "ncnn is not importable"
        # ---- end of the ncnn peer
        r["per_op_max_lsb"] = self.info.get("per_op_max_lsb")  # each op alone (models[...]["per_op"])
        if self.eager_import is not None:
            r["eager_import"] = self.eager_import
        for k, v in self.errors.items():
            r[f"{k}_error"] = v
        return r

    def _cpu_int8(self, x: np.ndarray) -> dict[str, Any]:
        import torch

        xt = torch.from_numpy(x)
        threads = torch.get_num_threads()
        n = os.cpu_count() or 1
        by_threads: dict[int, dict[str, float]] = {}
        try:
            for t in sorted({n, max(1, n // 2), max(1, n // 4)}, reverse=True):
                torch.set_num_threads(t)
                with torch.no_grad():
                    by_threads[t] = median_wall(
                        lambda: self.eager(xt), min(self.args.repeats, CPU_REPEATS), warm_s=WARM_S
                    )
        finally:
            torch.set_num_threads(threads)
        best = min(by_threads, key=lambda t: by_threads[t]["median"])
        return {
            "torch_cpu_int8_s": by_threads[best]["median"],
            "torch_cpu_int8_threads": best,
            "torch_cpu_int8_all_threads_s": by_threads[n]["median"],
            "torch_cpu_int8_by_threads": {str(t): w for t, w in by_threads.items()},
            "torch_cpu_engine": torch.backends.quantized.engine,
        }


def digits_method(args: argparse.Namespace) -> dict[str, str]:
    """The results' "method" entries that --weights digits changes."""
    split = args.digits_split
    where = args.digits or os.environ.get(DIGITS_ENV) or "scikit-learn"
    n_check = len(split.x_test) if args.check is None else f"max(--check {args.check}, largest batch)"
    return {
        "weights": (
            f"trained on the digits ({where}: {len(split.x_train)} training images, 8x8 upscaled "
            f"bilinearly to {args.hw}x{args.hw}, 3 channels, normalised; bench/trained.py), "
            f"{args.train_epochs} epochs of Adam, one-cycle learning rate, seed {args.seed}; 10 classes"
        ),
        "bn_stats": "from training on the digits (running statistics reset before training)",
        "calibration": f"{args.calib_batches} batches of {args.calib_size} training digits",
        "check": (
            f"{n_check} held-out digits (of {len(split.x_test)}): the GPU runs them in batches of the "
            "row's batch, PyTorch runs the same PT2E graph on the CPU as one batch; its float output is "
            "requantized with the net's output scale/zero point; accuracy_*: top-1 against the labels; "
            "gpu_vs_float64 / torch_vs_float64: the GPU's and PyTorch's int8 outputs against the same "
            "graph evaluated in float64 (torch_float64_forward: exact dequantize, float64 ops)"
        ),
    }


def _progress(jobs: list[Any]) -> tuple[Iterable[Any], Callable[[str], None]]:
    try:
        from tqdm import tqdm
    except ImportError:
        return jobs, lambda s: print(s, flush=True)
    return tqdm(jobs, desc="networks", unit="model", disable=None), tqdm.write


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="resnet18,resnet50,mobilenet_v2",
                   help=f"comma-separated: torchvision.models names, or the built-in {', '.join(TINY)}")  # fmt: skip
    p.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    p.add_argument("--hw", type=int, default=224, help="input height and width")
    p.add_argument("--repeats", type=int, default=30, help="timed calls (GPU timestamps, wall clock)")
    p.add_argument("--warm-s", type=float, default=0.5, help="seconds of running before each timing")
    p.add_argument("--quantizer", choices=("q8ta", "xnnpack"), default="q8ta")
    p.add_argument("--weights", choices=("random", "digits"), default="random",
                   help="random weights, or trained on scikit-learn's digits (bench/trained.py; 10 classes)")  # fmt: skip
    p.add_argument(
        "--digits", help=f"the digits .npz of --weights digits (default: ${DIGITS_ENV}, else sklearn)"
    )
    p.add_argument("--train-epochs", type=int, default=TRAIN_EPOCHS, help="--weights digits: training epochs")
    p.add_argument("--float64", action=argparse.BooleanOptionalAction, default=True,
                   help="--weights digits: also evaluate the PT2E graph in float64 on the check inputs (CPU)")  # fmt: skip
    p.add_argument("--calib-batches", type=int,
                   help=f"calibration batches (default {CALIB_BATCHES}; digits {DIGITS_CALIB_BATCHES})")  # fmt: skip
    p.add_argument("--calib-size", type=int,
                   help=f"their size (default {CALIB_SIZE}; digits {DIGITS_CALIB_SIZE})")  # fmt: skip
    p.add_argument("--bn-stats", choices=("data", "init"), default="data",
                   help="BN running statistics: measured on noise batches (data), or the models' own (init)")  # fmt: skip
    p.add_argument("--bn-batches", type=int, default=2, help="batches of normal noise for --bn-stats data")
    p.add_argument("--bn-size", type=int, default=8, help="their size")
    p.add_argument("--check", type=int,
                   help=f"inputs of the exactness check (at least; default {CHECK_INPUTS}; digits: every test image)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-torch", action="store_true", help="leave out the PyTorch peers")
    p.add_argument("--ncnn", action=argparse.BooleanOptionalAction, default=None,
                   help="the ncnn int8 Vulkan peer (bench/peers/ncnn_net.py; default: on when ncnn imports)")  # fmt: skip
    p.add_argument("--adapter", help="adapter name substring (default: the best)")
    p.add_argument("--backend", help="WebGPU backend (default: Vulkan first)")
    p.add_argument("--out", help="results JSON (default: bench/results/<adapter>-networks.json)")
    args = p.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    digits = args.weights == "digits"
    if args.check is None and not digits:
        args.check = CHECK_INPUTS
    if args.calib_batches is None:
        args.calib_batches = DIGITS_CALIB_BATCHES if digits else CALIB_BATCHES
    if args.calib_size is None:
        args.calib_size = DIGITS_CALIB_SIZE if digits else CALIB_SIZE
    bad_check = args.check is not None and args.check < 1
    if not models or not batches or min(batches) < 1 or args.repeats < 1 or args.hw < 8 or bad_check:
        p.error("need models, batches >= 1, --repeats >= 1, --check >= 1 and --hw >= 8")
    args.batch_list = batches
    args.digits_split = digits_split(args.hw, seed=args.seed, path=args.digits) if digits else None

    import torch

    torch.set_num_threads(os.cpu_count() or 1)  # PT2E calibration and the CPU checks
    dev = q8.Device(args.adapter, backend=args.backend)
    cuda = TorchCuda(enabled=not args.no_torch)
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"{slug(dev.name)}-networks.json"
    versions: dict[str, Any] = {"python": platform.python_version(), "numpy": np.__version__}
    versions["torch"] = torch.__version__
    for mod in ("torchvision", "torchao", "wgpu"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - absent or broken: not reported
            versions[mod] = None
    result: dict[str, Any] = {
        "adapter": dev.name,
        "backend": dev.backend,
        "code": git_commit(),
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": {"cpu_count": os.cpu_count(), "machine": platform.machine()},
        "versions": versions,
        "cuda": cuda.info(),
        "hw": args.hw,
        "repeats": args.repeats,
        "method": {
            "weights": "random (torchvision's initialization; the built-in models: random BN parameters)",
            "bn_stats": (
                f"measured: every BN's running mean and variance from {args.bn_batches} train-mode "
                f"batches of {args.bn_size} of standard normal noise (so activations stay normalized "
                "and outputs depend on the input)"
                if args.bn_stats == "data"
                else "the models' own (torchvision: mean 0, variance 1)"
            ),
            "calibration": f"{args.calib_batches} batches of {args.calib_size} of standard normal noise",
            "check": (
                f"max(--check {args.check}, largest batch) standard-normal inputs: the GPU runs them in "
                "batches of the row's batch (at batch 1, separate inferences), PyTorch runs the same PT2E "
                "graph on the CPU as one batch; its float output is requantized with the net's "
                "output scale/zero point. top1_agree: argmax agreement of the two int8 outputs "
                "(top1_classes: distinct classes PyTorch picks; top1_tied: inputs whose max is tied; "
                "top1_margin_lsb: median gap between PyTorch's two largest outputs; out_levels: "
                "distinct values in its output); top1_vs_float: GPU int8 vs the float model"
            ),
            "gpu_s": "net.gpu_times: median whole-forward GPU time from timestamps (quantize and unpack in)",
            "wall_s": "median perf_counter time of net(x), numpy float32 in and out, after warm-up",
            "torch_fp16_graph_s": (
                "BN folded (torch.fx), fp16, fastest of channels_last/NCHW x cuDNN autotuner (every "
                f"algorithm)/heuristic; one forward in a CUDA graph, {GRAPH_REPLAYS} replays between CUDA "
                "events, median; from fp16 input on the GPU to fp16 output (q8ta's gpu_s counts its input "
                "quantize and output unpack too: quantize_s, unpack_s)"
            ),
            "torch_fp16_eager_wall_s": (
                "eager fp16 call incl. float32 upload and output download, faster of the two layouts, median"
            ),
            "torch_cpu_int8_s": (
                "torch.ao eager int8 (torchvision quantizable model, same weights and BN statistics), "
                "median wall time at the best of all, half and a quarter of the CPU threads (the x86 "
                "engine ran MobileNetV2 at batch 1 2x slower on 16 threads than on 4 on the H200 machine)"
            ),
            "ncnn_int8_s": "not measured (ncnn's Python API has no GPU timing)",
            "ncnn_int8_wall_s": (
                "ncnn int8 on Vulkan (bench/peers/ncnn_net.py), median wall time of one inference, "
                "float input uploaded and output downloaded, batch N = N single-image inferences"
            ),
        },
        "models": {},
        "rows": [],
    }
    if digits:
        result["method"].update(digits_method(args))
    print(f"adapter {dev.name} ({dev.backend}); cuda: {result['cuda']}; out {out}", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    it, say = _progress(models)
    say(HEADER)
    for name in it:
        try:
            mb = ModelBench(name, args, dev, cuda)
            result["models"][name] = {**mb.info, "errors": mb.errors or None}
        except Exception as e:  # noqa: BLE001 - a model that fails is recorded; the run goes on
            result["models"][name] = {"error": _err(e), "traceback": traceback.format_exc()[-4000:]}
            for b in batches:
                row = {**empty_row(name, b), "error": _err(e)}
                result["rows"].append(row)
                say(table_line(row))
            out.write_text(json.dumps(result, indent=1))
            continue
        for b in batches:
            try:
                row = mb.row(b)
            except Exception as e:  # noqa: BLE001
                row = {**empty_row(name, b), "error": _err(e), "traceback": traceback.format_exc()[-4000:]}
                if cuda.torch is not None:
                    cuda.torch.cuda.empty_cache()
            result["rows"].append(row)
            say(table_line(row))
            out.write_text(json.dumps(result, indent=1))
        del mb
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
