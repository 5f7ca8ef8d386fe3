"""The whole-network peer: a `q8ta_wgpu.Net` written as an ncnn int8 model (a .param text and a .bin
of int8 weights, ncnn's own formats) and run by the `ncnn` PyPI wheel on a Vulkan GPU, or on
ncnn's CPU path for checking.

    model = convert(net, (1, 3, 224, 224))      # NcnnModel: param text, model bytes, notes
    runner = NcnnNet(model)                     # Vulkan (NcnnNet(model, vulkan=False): CPU)
    y = runner(x)                               # float32 [N, ...], one ncnn inference per image
    t = runner.wall_time(x)                     # median wall time per call, see its doc
    ncnn_int8(net, x)                           # bench/networks.py's row fields, never raises

Each step of the net becomes the layer ncnn's own tools (ncnnoptimize, then ncnn2int8) would
write for it:

- conv2d, groups 1: `Convolution` with int8_scale_term 2 (per-output-channel weight scales);
  grouped / depthwise: `ConvolutionDepthWise` with int8_scale_term 1 (per-group weight scales);
  linear: `InnerProduct` with int8_scale_term 2. The weights are the net's int8 weights as they
  are; ncnn's weight scale is 1 / the net's (ncnn multiplies reals by its scales to get ints). A
  grouped conv with more than one output channel per group has one ncnn scale per group, so its
  weights are requantized to the group's largest scale (a note says so; depthwise convs and
  groups of one output channel keep their weights exactly). Biases are the net's float biases.
  relu / relu6 fused into an op are the layer's activation (activation_type 1; 3 = clip with
  [0, 6]), as ncnnoptimize fuses them. A conv whose output feeds only int8 convs gets +100
  (102 / 101): it requantizes and writes int8, as ncnn2int8's fuse_requantize lays it out.
- The activation scale of an int8 layer's input (its "bottom scale") comes from the net's scale
  and zero point of that tensor (`ncnn_scale`): ncnn quantizes symmetrically, q = round(x * s)
  clamped to [-127, 127], where the net's tensors are asymmetric (zero point z). Where the
  symmetric grid of the net's own step covers the tensor's range [(-128 - z) * scale,
  (127 - z) * scale] (z = 0 or -1) the ncnn scale is 1 / scale, the same grid; otherwise (a
  ReLU's output, z = -128: range [0, 255 * scale]) it is 127 / the range's largest magnitude, as
  ncnn's own calibration would pick, a step about twice the net's: ncnn's int8 cannot hold such
  a tensor at the net's resolution.
- add: `BinaryOp` (op_type 0) in float, then `ReLU` / `Clip` (0, 6) for a fused activation;
  max_pool2d, avg_pool2d: `Pooling` (pad_mode 1, PyTorch's floor; 0, ncnn's "full" tail padding,
  for ceil_mode, checked against the net's shapes); adaptive_avg_pool2d to 1x1: `Pooling` global
  (rank 2 out, ncnn's 1-D blob) or adaptive 1x1 (rank 4 out); other sizes adaptive; flatten:
  `Flatten`; a requantize is nothing in float (its consumers quantize with their own scale), or
  `ReLU` / `Clip` with its activation; an elementwise-function step (hardswish, hardsigmoid,
  sigmoid, tanh, hardtanh, relu, relu6, identity) is ncnn's layer of that function (`HardSwish` /
  `HardSigmoid` with alpha 1/6 and beta 1/2 as torch's, `Sigmoid`, `TanH`, `Clip`, `ReLU`, or
  nothing); cat along channels: `Concat` (axis 0). A value read by several layers goes through a
  `Split`.
  ncnn runs all of these in float (fp16 storage / arithmetic on the GPU where it has them): the
  only int8 tensors are conv inputs (and requantized conv outputs), so it is no bit-exact peer;
  `compare` measures how close it is.
- Every blob gets ncnn's shape hint (param 30, as ncnnoptimize writes them) for the input shape
  it is converted for, so ncnn can specialize its shaders on the shapes. ncnn has no batch
  dimension: a net of batch N runs as N inferences of one image each.

Options (`NcnnNet`): use_vulkan_compute and use_int8_inference on, and every speed option of
ncnn's at its default, on: fp16 packed / storage / arithmetic, int8 packed / storage /
arithmetic, packing layout, winograd (2x3, 4x3, 6x3), sgemm, subgroup ops; ncnn itself then drops
what the GPU lacks (the effective set is `NcnnNet.options`).
"""

from __future__ import annotations

import math
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.peers.ncnn_int8 import INT8_TAG, _gpu_count, _ncnn, ncnn_mat
from bench.wall_time import median_wall

#: ncnn Option flags set True (ncnn's defaults; the Vulkan ones it drops where the GPU lacks them).
SPEED_OPTIONS = (
    "use_int8_inference",
    "use_fp16_packed",
    "use_fp16_storage",
    "use_fp16_arithmetic",
    "use_int8_packed",
    "use_int8_storage",
    "use_int8_arithmetic",
    "use_packing_layout",
    "use_winograd_convolution",
    "use_winograd23_convolution",
    "use_winograd43_convolution",
    "use_winograd63_convolution",
    "use_sgemm_convolution",
    "use_subgroup_ops",
)
INT8_TYPES = ("Convolution", "ConvolutionDepthWise", "InnerProduct")  # the int8 layers written
REPORTED_OPTIONS = (*SPEED_OPTIONS, "use_vulkan_compute", "use_bf16_storage", "num_threads")

WALL_INCLUDES = (
    "median wall time (perf_counter) of one inference of each of the batch's N images, run one "
    "after the other (ncnn has no batch dimension), after warm-up, numpy float32 in and out as "
    "net(x): per image the host float32 copied into an ncnn Mat, a new extractor, input, extract "
    "of the output and its copy into numpy "
    "(ncnn records every layer's commands on the host, uploads the input, submits, waits for "
    "the GPU and downloads the output). The Python binding has no VkMat / VkCompute, so the "
    "input upload, the command recording and the output download are in the figure: it is no "
    "GPU time (ncnn_int8_s stays null). ncnn_int8_floor_wall_s is the same for a net of one "
    "trivial GPU layer on the same input (upload, submit, wait, download of a tiny output)"
)


# ---------------------------------------------------------------------------------------- scales


def ncnn_scale(scale: float, zero_point: int) -> float:
    """ncnn's symmetric int8 scale (q = round(x * s), clamped to [-127, 127]) for a tensor the net
    holds as int8 with (scale, zero_point), whose reals span [(-128 - z) * scale, (127 - z) * scale]:
    1 / scale (the net's grid) where that is within [-128, 128] steps (z = 0 or -1: at most the
    one end value clips), else 127 / the largest magnitude (a coarser step, the range kept)."""
    steps = max(128 + int(zero_point), 127 - int(zero_point))
    if steps <= 128:
        return 1.0 / float(scale)
    return 127.0 / (steps * float(scale))


# ---------------------------------------------------------------------------------------- model


@dataclass
class NcnnModel:
    """An ncnn model of a net for one input shape: the .param text, the .bin bytes, the input and
    output blob names, the ncnn output's shape (a Mat's: (c, h, w), or (w,) for 1-D), one line per
    ncnn layer saying which step it came from, and notes on where it departs from the net."""

    param: str
    model: bytes
    input_blob: str
    output_blob: str
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, ...]
    layers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Layer:
    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: list[str]
    data: list[bytes] = field(default_factory=list)
    source: str = ""
    int8: dict[str, Any] | None = None  # conv layers: term, bottom scale (set before writing)


class UnsupportedStep(ValueError):
    """A step of the net that this converter cannot write as ncnn layers."""


def _f(v: float) -> str:
    return f"{float(v):.9e}"


def _activation_params(activation: str) -> list[str]:
    """A conv / InnerProduct layer's fused activation (activation_type 9, params 10)."""
    if activation == "none":
        return []
    if activation == "relu":
        return ["9=1"]
    if activation == "relu6":
        return ["9=3", f"-23310=2,{_f(0.0)},{_f(6.0)}"]
    raise UnsupportedStep(f"activation {activation!r}")


def _int8_weights(w: np.ndarray) -> bytes:
    """Weights as ncnn's ModelBin reads an int8 blob: the tag, the bytes, zero padding to 4."""
    wb = np.ascontiguousarray(w, dtype=np.int8).tobytes()
    return struct.pack("<I", INT8_TAG) + wb + b"\0" * (-len(wb) % 4)


def _floats(v: Any) -> bytes:
    return np.ascontiguousarray(np.asarray(v, dtype=np.float64).astype("<f4")).tobytes()


def _hint(shape: tuple[int, ...]) -> str:
    """An ncnn shape hint entry (dims, w, h, d, c) for a blob of Mat shape (c, h, w) or (w,)."""
    if len(shape) == 1:
        return f"1,{shape[0]},1,1,1"
    c, h, w = shape
    return f"3,{w},{h},1,{c}"


class _Converter:
    def __init__(self, net: Any, shape: tuple[int, int, int, int], requantize: bool) -> None:
        from q8ta_wgpu.net import ConvOp

        self.net = net
        self.conv_cls = ConvOp
        self.requantize = requantize
        self.shapes = net.shapes((1, *shape[1:]))
        self.layers: list[_Layer] = []
        self.blob: dict[str, str] = {}  # our value -> its ncnn blob
        self.mat: dict[str, tuple[int, ...]] = {}  # ncnn blob -> its Mat shape
        self.notes: list[str] = []
        self._n = 0

    def new_blob(self, shape: tuple[int, ...]) -> str:
        name = f"b{self._n}"
        self._n += 1
        self.mat[name] = shape
        return name

    def mat_shape(self, value: str, rank: int) -> tuple[int, ...]:
        n, c, h, w = self.shapes[value]
        return (c * h * w,) if rank == 2 else (c, h, w)

    def add(
        self, type_: str, bottoms: list[str], top_shape: tuple[int, ...], params: list[str], **kw: Any
    ) -> str:
        top = self.new_blob(top_shape)
        name = f"{type_.lower()}_{len(self.layers)}"
        self.layers.append(_Layer(type_, name, bottoms, [top], params, **kw))
        return top

    def activation_layer(
        self, bottom: str, activation: str, source: str, bounds: tuple[float, float] = (-1.0, 1.0)
    ) -> str:
        """The float layer of an elementwise function (a fused activation, a requantize's, a
        lookup step's): nothing for none / identity."""
        shape = self.mat[bottom]
        if activation in ("none", "identity"):
            return bottom
        if activation in ("relu6", "hardtanh"):
            lo, hi = (0.0, 6.0) if activation == "relu6" else bounds
            return self.add("Clip", [bottom], shape, [f"0={_f(lo)}", f"1={_f(hi)}"], source=source)
        if activation in ("hardswish", "hardsigmoid"):  # torch's: alpha 1/6, beta 1/2
            type_ = "HardSwish" if activation == "hardswish" else "HardSigmoid"
            return self.add(type_, [bottom], shape, [f"0={_f(1 / 6)}", f"1={_f(0.5)}"], source=source)
        types = {"relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "TanH"}
        if activation in types:
            return self.add(types[activation], [bottom], shape, [], source=source)
        raise UnsupportedStep(f"activation {activation!r}")

    # ---- steps ---------------------------------------------------------------------------
    def run(self) -> NcnnModel:
        net = self.net
        _, c, h, w = self.shapes[net.input_name]
        x = self.new_blob((c, h, w))
        self.layers.append(_Layer("Input", "input", [], [x], [f"0={w}", f"1={h}", f"2={c}"], source="input"))
        self.blob[net.input_name] = x
        for i, s in enumerate(net.graph_steps):  # the graph's ops (ncnn runs its adds as BinaryOp)
            src = f"step {i} {s.kind} ({s.source})"
            try:
                self.blob[s.output] = self.step(s, src)
            except UnsupportedStep as e:
                raise UnsupportedStep(f"{src}: {e}") from None
            want = self.mat_shape(s.output, s.rank)
            got = self.mat[self.blob[s.output]]
            if got != want:
                raise UnsupportedStep(f"{src}: ncnn's output would be {got}, the net's is {want}")
        out = self.blob[net.output.output]
        self._requantize_fusion(out)
        self._splits()
        param, model, lines = self._write()
        return NcnnModel(
            param=param,
            model=model,
            input_blob=x,
            output_blob=out,
            input_shape=(c, h, w),
            output_shape=self.mat[out],
            layers=lines,
            notes=self.notes,
        )

    def step(self, s: Any, src: str) -> str:
        ins = [self.blob[v] for v in s.inputs]
        act = getattr(s.op, "activation", "none")
        if isinstance(s.op, self.conv_cls):
            return self.conv(s, ins[0], src)
        if s.kind == "add":
            a, b = (self.mat[v] for v in ins)
            if a != b:
                raise UnsupportedStep(f"add of ncnn blobs of shapes {a} and {b}")
            y = self.add("BinaryOp", ins, a, ["0=0"], source=src)
            return self.activation_layer(y, act, src)
        if s.kind in ("requantize", "lookup"):  # in float only the function: consumers quantize
            fn = getattr(s.op, "function", act)  # an elementwise table step, or an average of 1
            bounds = (float(getattr(s.op, "min_val", -1.0)), float(getattr(s.op, "max_val", 1.0)))
            return self.activation_layer(ins[0], fn, src, bounds)
        if s.kind == "cat":
            shapes = [self.mat[v] for v in ins]
            if any(len(sh) != len(shapes[0]) or sh[1:] != shapes[0][1:] for sh in shapes):
                raise UnsupportedStep(f"cat of ncnn blobs of shapes {shapes}")
            total = (sum(sh[0] for sh in shapes), *shapes[0][1:])
            y = self.add("Concat", ins, total, ["0=0"], source=src)  # axis 0: channels (w of 1-D)
            return self.activation_layer(y, act, src)
        if s.kind == "flatten":
            return self.add("Flatten", ins, self.mat_shape(s.output, 2), [], source=src)
        if s.kind == "max_pool2d":
            op = s.op
            if tuple(op.dilation) != (1, 1):
                raise UnsupportedStep(f"ncnn's Pooling has no dilation (got {op.dilation})")
            return self.pool(s, ins[0], 0, op.kernel_size, op.stride, op.padding, op.ceil_mode, [], src)
        if s.kind == "avg_pool2d":
            op = s.op
            if op.divisor_override:
                raise UnsupportedStep("ncnn's Pooling has no divisor_override")
            extra = [f"6={int(op.count_include_pad)}"]
            y = self.pool(s, ins[0], 1, op.kernel_size, op.stride, op.padding, op.ceil_mode, extra, src)
            return self.activation_layer(y, act, src)
        if s.kind == "adaptive_avg_pool2d":
            _, c, oh, ow = self.shapes[s.output]
            if (oh, ow) == (1, 1) and s.rank == 2:
                y = self.add("Pooling", ins, (c,), ["0=1", "4=1"], source=src)
            else:
                y = self.add("Pooling", ins, (c, oh, ow), ["0=1", "7=1", f"8={ow}", f"18={oh}"], source=src)
            return self.activation_layer(y, act, src)
        raise UnsupportedStep(f"no ncnn layer for a {s.kind} step ({type(s.op).__name__})")

    def pool(
        self, s: Any, x: str, kind: int, k: Any, st: Any, pad: Any, ceil: bool, extra: list[str], src: str
    ) -> str:
        (kh, kw), (sh, sw), (ph, pw) = k, st, pad
        params = [f"0={kind}", f"1={kw}", f"11={kh}", f"2={sw}", f"12={sh}", f"3={pw}", f"14={pw}",
                  f"13={ph}", f"15={ph}", f"5={0 if ceil else 1}", *extra]  # fmt: skip
        if ceil:  # ncnn's "full" padding pads the tail to a whole stride: check it gives torch's size
            _, c, h, w = self.shapes[s.inputs[0]]
            oh = (h + 2 * ph - kh + sh - 1) // sh + 1
            ow = (w + 2 * pw - kw + sw - 1) // sw + 1
            if (oh, ow) != tuple(self.shapes[s.output][2:]):
                raise UnsupportedStep(
                    f"ceil_mode pooling: ncnn would give {oh}x{ow}, the net {self.shapes[s.output][2:]}"
                )
        return self.add("Pooling", [x], self.mat_shape(s.output, 4), params, source=src)

    def conv(self, s: Any, x: str, src: str) -> str:
        conv = s.op.conv
        w = np.asarray(conv.weight, dtype=np.int8)
        wscale = np.asarray(conv.weight_scales, dtype=np.float64)
        bias = None if conv.bias is None else np.asarray(conv.bias, dtype=np.float32)
        c_out, cpg, kh, kw = w.shape
        g = int(conv.groups)
        bottom = ncnn_scale(conv.input_scale, conv.input_zero_point)
        act = _activation_params(conv.activation)
        if s.kind == "linear":
            params = [f"0={c_out}", f"1={int(bias is not None)}", f"2={w.size}", *act]
            data = [_int8_weights(w.reshape(c_out, cpg * kh * kw))]
            if bias is not None:
                data.append(_floats(bias))
            data += [_floats(1.0 / wscale), _floats([bottom])]
            y = self.add(
                "InnerProduct", [x], self.mat_shape(s.output, 2), params + ["8=2"], data=data, source=src
            )
            return y
        (sh, sw), (ph, pw), (dh, dw) = conv.stride, conv.padding, conv.dilation
        params = [f"0={c_out}", f"1={kw}", f"11={kh}", f"2={dw}", f"12={dh}", f"3={sw}", f"13={sh}",
                  f"4={pw}", f"15={pw}", f"14={ph}", f"16={ph}", f"5={int(bias is not None)}",
                  f"6={w.size}"]  # fmt: skip
        if g == 1:
            type_, scales = "Convolution", 1.0 / wscale
        else:
            type_ = "ConvolutionDepthWise"
            params.append(f"7={g}")
            per = c_out // g
            if per == 1:
                scales = 1.0 / wscale
            else:  # one ncnn scale per group: requantize each group's weights to its largest scale
                real = w.astype(np.float64) * wscale[:, None, None, None]
                gmax = np.abs(real.reshape(g, -1)).max(1)
                gscale = np.where(gmax > 0, gmax / 127.0, 1.0)
                q = np.rint(real / np.repeat(gscale, per)[:, None, None, None])
                w = np.clip(q, -127, 127).astype(np.int8)
                scales = 1.0 / gscale
                self.notes.append(
                    f"{src}: {per} output channels per group, weights requantized to one scale per group"
                )
        data = [_int8_weights(w)]
        if bias is not None:
            data.append(_floats(bias))
        data.append(_floats(scales))
        shape = self.mat_shape(s.output, 4)
        top = self.add(type_, [x], shape, params + act, data=data, source=src)
        self.layers[-1].int8 = {"term": 2 if g == 1 else 1, "bottom": bottom, "top": None}
        return top

    # ---- graph passes ----------------------------------------------------------------------
    def _requantize_fusion(self, out: str) -> None:
        """ncnn2int8's fuse_requantize: a conv whose output only int8 convs read (directly or through
        a split) requantizes to their (common) input scale and writes int8."""
        if not self.requantize:
            return
        convs = ("Convolution", "ConvolutionDepthWise")
        for layer in self.layers:
            if layer.int8 is None or layer.type not in convs or layer.tops[0] == out:
                continue
            readers = [r for r in self.layers if layer.tops[0] in r.bottoms]
            if not readers or any(r.type not in convs or r.int8 is None for r in readers):
                continue
            tops = {r.int8["bottom"] for r in readers if r.int8 is not None}
            if len(tops) == 1:
                layer.int8["top"] = tops.pop()

    def _splits(self) -> None:
        """A Split after every blob that several layers read, each reader its own copy."""
        readers: dict[str, list[_Layer]] = {}
        for layer in self.layers:
            for b in layer.bottoms:
                readers.setdefault(b, []).append(layer)
        out: list[_Layer] = []
        for layer in self.layers:
            out.append(layer)
            for t in layer.tops:
                rs = readers.get(t, [])
                if len(rs) < 2:
                    continue
                copies = [self.new_blob(self.mat[t]) for _ in rs]
                out.append(_Layer("Split", f"split_{t}", [t], copies, [], source=layer.source))
                for r, cpy in zip(rs, copies, strict=True):  # a layer reading t twice: two copies
                    r.bottoms[r.bottoms.index(t)] = cpy
        self.layers = out

    def _write(self) -> tuple[str, bytes, list[str]]:
        blobs = {t for layer in self.layers for t in layer.tops}
        lines = ["7767517", f"{len(self.layers)} {len(blobs)}"]
        model: list[bytes] = []
        summary = []
        for layer in self.layers:
            params = list(layer.params)
            data = list(layer.data)
            if layer.int8 is not None:
                term = layer.int8["term"] + (100 if layer.int8["top"] is not None else 0)
                params.append(f"8={term}")
                data.append(_floats([layer.int8["bottom"]]))
                if layer.int8["top"] is not None:
                    data.append(_floats([layer.int8["top"]]))
            hints = ",".join(_hint(self.mat[t]) for t in layer.tops)
            params.append(f"-23330={5 * len(layer.tops)},{hints}")
            head = f"{layer.type:<22} {layer.name:<24} {len(layer.bottoms)} {len(layer.tops)}"
            lines.append(" ".join([head, *layer.bottoms, *layer.tops, *params]))
            model += data
            keys = ("7=", "8=", "9=") if layer.int8 is not None or layer.type == "InnerProduct" else ()
            fused = " ".join(p for p in params if p.startswith(keys)) if keys else ""
            summary.append(f"{layer.type:<22} {fused:<14} <- {layer.source}")
        return "\n".join(lines) + "\n", b"".join(model), summary


def convert(net: Any, shape: tuple[int, ...], *, requantize: bool = True) -> NcnnModel:
    """The ncnn int8 model of `net` (a q8ta_wgpu.Net) for inputs of NCHW `shape` (N is ignored:
    ncnn runs one image at a time). requantize=False leaves every int8 conv's output in float
    (no fuse_requantize). Raises UnsupportedStep naming a step ncnn cannot run as written here."""
    if len(shape) != 4:
        raise ValueError(f"shape must be NCHW, got {shape}")
    return _Converter(net, tuple(int(v) for v in shape), requantize).run()  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- running


def _gpu_for(ncnn: Any, name: str | None) -> int:
    """The ncnn GPU whose device name is `name` (the q8ta_wgpu adapter's), else ncnn's default."""
    if name:
        for i in range(_gpu_count(ncnn)):
            if ncnn.get_gpu_info(i).device_name() == name:
                return i
    return int(ncnn.get_default_gpu_index())


class NcnnNet:
    """An `NcnnModel` loaded into ncnn: on the GPU (vulkan=True; gpu_index None: the GPU named
    `gpu_name`, else ncnn's default) or on ncnn's CPU path (int8 too: use_int8_inference on).
    `options`: ncnn Option flags to set other than SPEED_OPTIONS' True (for checks: on x86, ncnn's
    packed int8 depthwise conv dequantizes with an approximate reciprocal, _mm_rcp_ps, relative
    error up to 2**-11; use_packing_layout False avoids it). Raises RuntimeError where ncnn is missing, sees no GPU, fails to load, or turned Vulkan off."""

    def __init__(
        self,
        model: NcnnModel,
        *,
        vulkan: bool = True,
        gpu_index: int | None = None,
        gpu_name: str | None = None,
        num_threads: int | None = None,
        options: dict[str, bool] | None = None,
    ) -> None:
        ncnn = _ncnn()
        if ncnn is None:
            raise RuntimeError("ncnn is not importable (pip install ncnn)")
        self._ncnn = ncnn
        self.model = model
        net = ncnn.Net()
        net.opt.use_vulkan_compute = bool(vulkan)
        for name, value in {**dict.fromkeys(SPEED_OPTIONS, True), **(options or {})}.items():
            setattr(net.opt, name, value)
        if num_threads:
            net.opt.num_threads = int(num_threads)
        self.gpu: str | None = None
        if vulkan:
            count = _gpu_count(ncnn)
            idx = _gpu_for(ncnn, gpu_name) if gpu_index is None else int(gpu_index)
            if not 0 <= idx < count:
                raise RuntimeError(f"ncnn sees {count} Vulkan GPU(s); no GPU {idx}")
            net.set_vulkan_device(idx)
            self.gpu = ncnn.get_gpu_info(idx).device_name()
        with tempfile.TemporaryDirectory() as tmp:
            pp, mp = Path(tmp) / "net.param", Path(tmp) / "net.bin"
            pp.write_text(model.param)
            mp.write_bytes(model.model)
            if net.load_param(str(pp)) != 0:
                raise RuntimeError("ncnn load_param failed")
            if net.load_model(str(mp)) != 0:
                raise RuntimeError("ncnn load_model failed")
        if vulkan and not net.opt.use_vulkan_compute:
            raise RuntimeError("ncnn turned Vulkan compute off (no valid Vulkan device)")
        self.net = net
        self.vulkan = bool(vulkan)
        self.options = {k: getattr(net.opt, k) for k in REPORTED_OPTIONS}
        # Layers ncnn runs on the CPU inside a Vulkan net (it downloads and uploads around them).
        self.cpu_layers = [la.name for la in net.layers() if not la.support_vulkan] if vulkan else []

    def run_mat(self, m: Any) -> Any:
        """One inference: a new extractor, input, extract (the output as an ncnn Mat)."""
        ex = self.net.create_extractor()
        if ex.input(self.model.input_blob, m) != 0:
            raise RuntimeError("ncnn extractor input failed")
        ret, out = ex.extract(self.model.output_blob)
        if ret != 0:
            raise RuntimeError(f"ncnn extract failed ({ret})")
        return out

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """float32 NCHW [N, C, H, W] -> float32 [N, *output] (N inferences, one image each)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.model.input_shape:
            raise ValueError(f"x must be [N, {', '.join(map(str, self.model.input_shape))}], got {x.shape}")
        outs = [np.array(self.run_mat(ncnn_mat(self._ncnn, img)), dtype=np.float32) for img in x]
        return np.stack(outs).reshape(len(x), *self.model.output_shape)

    def wall_time(self, x: np.ndarray, *, repeats: int = 30, warmup: int = 3, warm_s: float = 0.2) -> dict:
        """Median (min, max) wall time of one call on x's N images, each its own inference,
        numpy float32 in and out as net(x) (`__call__`); see WALL_INCLUDES for what it includes
        (no GPU timestamps: the Python API has none)."""
        return median_wall(lambda: self(x), repeats, warmup, warm_s)


def floor_model(shape: tuple[int, ...]) -> NcnnModel:
    """A net of one trivial GPU layer (global average pooling) on an input of NCHW `shape`: its
    wall time is ncnn's fixed cost of an inference (upload, one dispatch, submit, wait, download)."""
    c, h, w = (int(v) for v in shape[1:])
    param = (
        f"7767517\n2 2\nInput input 0 1 in0 0={w} 1={h} 2={c} -23330=5,3,{w},{h},1,{c}\n"
        f"Pooling pool 1 1 in0 out0 0=1 4=1 -23330=5,1,{c},1,1,1\n"
    )
    return NcnnModel(param, b"", "in0", "out0", (c, h, w), (c,))


# ---------------------------------------------------------------------------------------- checking


def on_output_grid(y: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """y quantized as the graph's last quantize does it (round, add the zero point, clamp to
    [-128, 127]) and dequantized again: a float output on the net's output grid. ncnn's output is
    an InnerProduct's float, which no calibration clamps; the int8 graph's output saturates at
    (127 - zero_point) * scale, so without this a clipped logit reads as ncnn's error."""
    from q8ta_wgpu.reference import quantize_per_tensor

    q = quantize_per_tensor(np.asarray(y, dtype=np.float32), scale, zero_point)
    return (q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def compare(got: np.ndarray, want: np.ndarray) -> dict[str, float]:
    """Float outputs [N, ...] of two implementations: top-1 agreement, relative error
    ||got - want|| / ||want|| over all, the worst input's, and the max |diff| / max |want|."""
    g = np.asarray(got, dtype=np.float64).reshape(len(got), -1)
    w = np.asarray(want, dtype=np.float64).reshape(len(want), -1)
    per = np.linalg.norm(g - w, axis=1) / np.maximum(np.linalg.norm(w, axis=1), 1e-30)
    return {
        "top1_agree": float(np.mean(g.argmax(1) == w.argmax(1))),
        "rel_err": float(np.linalg.norm(g - w) / max(np.linalg.norm(w), 1e-30)),
        "rel_err_max": float(per.max()),
        "max_abs_rel": float(np.abs(g - w).max() / max(np.abs(w).max(), 1e-30)),
        "inputs": int(len(g)),
    }


# ---------------------------------------------------------------------------------------- bench


def ncnn_available() -> bool:
    """Whether the ncnn module imports (bench/networks.py's default for its --ncnn flag)."""
    return _ncnn() is not None


def ncnn_int8(net: Any, x: np.ndarray, *, repeats: int = 30, warm_s: float = 0.2) -> dict[str, Any]:
    """bench/networks.py's ncnn fields for one (model, batch) row: `net` converted (for x's shape),
    run on the GPU named as net's adapter (else ncnn's default), timed on x (ncnn_int8_wall_s, see
    WALL_INCLUDES) and compared with net(x) (ncnn_int8_vs_net: ncnn's float output put on the
    net's output grid, `on_output_grid`, against the net's dequantized output). Never raises: a
    failure gives ncnn_int8_wall_s None and ncnn_int8_error, the reason. ncnn_int8_s is always
    None: the Python binding cannot time the GPU alone."""
    out: dict[str, Any] = {"ncnn_int8_s": None, "ncnn_int8_wall_s": None}
    try:
        ncnn = _ncnn()
        if ncnn is None:
            raise RuntimeError("ncnn is not importable (pip install ncnn)")
        model = convert(net, x.shape)
        name = getattr(getattr(net, "device", None), "name", None)
        runner = NcnnNet(model, gpu_name=name)
        got = runner(x)
        want = np.asarray(net(x), dtype=np.float32)
        t = runner.wall_time(x, repeats=repeats, warm_s=warm_s)
        floor = NcnnNet(floor_model(x.shape), gpu_name=name).wall_time(x, repeats=repeats, warm_s=warm_s)
        out.update(
            ncnn_int8_wall_s=t["median"],
            ncnn_int8_wall_stats=t,
            ncnn_int8_floor_wall_s=floor["median"],
            ncnn_int8_includes=WALL_INCLUDES,
            ncnn_int8_vs_net=compare(
                on_output_grid(got, net.output_scale, net.output_zero_point), want.reshape(got.shape)
            ),
            ncnn_int8_info={
                "ncnn": ncnn.__version__,
                "gpu": runner.gpu,
                "options": runner.options,
                "cpu_layers": runner.cpu_layers,
                "layers": len(model.layers),
                "int8_layers": sum(ln.split()[0] in INT8_TYPES for ln in model.layers),
                "notes": model.notes,
            },
        )
        if not all(math.isfinite(v) for v in t.values()):
            raise RuntimeError(f"non-finite timing {t}")
    except Exception as e:  # noqa: BLE001 - a peer's failure is recorded, never raised
        out["ncnn_int8_wall_s"] = None
        out["ncnn_int8_error"] = f"{type(e).__name__}: {e}"[:2000]
    return out
