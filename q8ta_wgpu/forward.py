"""A network's forward pass as data: the op protocol a step runs (`NetOp`, with `ConvOp` and
`FlattenOp` adapting the conv and the flatten to it), the `Step`s, and `compile_forward`, which
makes, for one input shape, every value's buffer (reused once the value is dead), every pass
(pipelines, uniforms, bind groups) and the input and output conversions (`Compiled`). `Net`
(net.py) caches these per shape and runs them."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from . import tuning
from .conv import QConv2d, QTensor
from .layouts import pack_pass, packed_words, unpack, unpack_4w4c_one_width, unpack_pass
from .ops import QAdd, quantize_params, quantize_pass
from .planner import (
    DeviceLimits,
    GemmConfig,
    QuantizedInput,
    Residual,
    check_buffer,
    default_gemm_config,
    kernel_geometry,
    resolve_method,
    valid_methods,
)
from .runtime import Device, Pass


class NetOp(Protocol):
    """What a step runs: its output's NCHW shape for its inputs' shapes, and the GPU passes that
    write its output QTensor (buffer preallocated) from its input QTensors."""

    def output_shape(self, *input_shapes: tuple[int, int, int, int]) -> tuple[int, int, int, int]: ...

    def passes(self, inputs: Sequence[QTensor], out: QTensor) -> list[Pass]: ...


# Whether a step that can run beside the one before it (`side_steps`) writes a buffer of its
# own (not one a dead value left: writing that needs a barrier, which waits for all work before).
SIDE_OUTPUTS_FRESH = True

# Whether a net's output of one pixel a sample (a classifier's [N, classes]) is read packed (4x
# its bytes) and unpacked on the host (`Compiled.output_array`) instead of by an unpack pass. Off:
# on the H200 (bench/probes/output_read.py, in turns) it saved 3 to 12 us of GPU time a call but
# cost 2 to 24 us of wall time at batch 1: that host's unpack (5 to 8 us) and recording took
# longer than the dispatch it saved.
READ_ONE_PIXEL_PACKED = False

# Whether `Net.fuse` also fuses each depthwise conv into the 1x1 conv that alone reads its
# output (`fuse_depthwise`: an inverted residual's depthwise and projection convs, one dispatch;
# the same bytes). Off: on the H200 (bench/probes/depthwise_fusion.py, two runs) MobileNetV2
# took 1.14x-1.17x the GPU time of the separate dispatches at batch 1 and 0.98x-1.03x at batch
# 8, wall time alike: the fused GEMM's workgroups compute the depthwise output again for each
# tile of output channels, with fewer threads than the depthwise kernel has.
FUSE_DEPTHWISE = False

# Whether a residual add fused into a step runs in the epilogue of a conv on the patch kernel;
# if not, such a step runs as the conv's pass and the add's (ConvOp._two_passes). The GEMM
# kernels' epilogues take it always. H200 (bench/probes/net_schedule.py): with the epilogue's
# 4 residual words and 4 stores indexed as 4W4C lays them out (8e145dd) ResNet-18 took 250.2 /
# 740.5 us with the adds in the epilogue against 251.7 / 751.5 us as passes (batch 1 / 8), in
# 8 dispatches fewer; before that change the passes were faster (252.0 against 257.3 us).
ADD_IN_PATCH_EPILOGUE = True


class ConvOp:
    """A QConv2d as a net op (a linear layer is a 1x1 conv over [N, K, 1, 1]); with `residual`,
    an add fused into its epilogue: inputs (x, the residual), output the add's. `add` (the
    QAdd fused, the conv computing its operand a when conv_is_a): run as two passes where the
    residual's layout is not the output's (a QTensor input of another layout, `Net.run`)."""

    def __init__(
        self, conv: QConv2d, residual: Residual | None = None, add: QAdd | None = None, conv_is_a: bool = True
    ) -> None:
        self.conv = conv
        self.residual = residual
        self.add, self.conv_is_a = add, conv_is_a
        self._scratch: dict[tuple[int, ...], QTensor] = {}  # the conv's output, for the two passes

    def output_shape(self, *input_shapes: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        return self.conv.geometry(input_shapes[0]).output_shape

    def method(self, shape: tuple[int, int, int, int], layout: str = "4W4C") -> str:
        """The method the conv runs on inputs of `shape`: its plan's when one exists, else the
        rule's (a tuned choice may differ until the plan is made)."""
        for (s, lay, _, res, _qi, dw), plan in self.conv._plans.items():
            if s == tuple(shape) and lay == layout and res == self.residual and dw is None:
                return plan.method
        return resolve_method(self.conv.method, kernel_geometry(self.conv.geometry(shape), layout), layout)

    def passes(self, inputs: Sequence[QTensor], out: QTensor) -> list[Pass]:
        x = inputs[0]
        if out.layout != self.conv.output_layout:
            raise ValueError(f"the conv writes {self.conv.output_layout}, out is {out.layout}")
        if self.residual is None:
            return self.conv.plan(x.shape, x.layout, False).passes(self.conv.device, x.buffer, out.buffer)
        r = inputs[1]
        if r.layout != out.layout and self.add is not None and r.shape == out.shape:
            return self._two_passes(x, r, out)
        if (
            not ADD_IN_PATCH_EPILOGUE
            and self.add is not None
            and r.shape == out.shape
            and self.conv.chosen_method(x.shape, x.layout) == "patch_4w4c"
        ):
            return self._two_passes(x, r, out)
        res = self.residual
        r_scale = res.scale
        if (r.shape, r.layout, r.zero_point, r.scale) != (out.shape, out.layout, res.zero_point, r_scale):
            raise ValueError(
                f"the residual {list(r.shape)} {r.layout} scale {r.scale} zero point {r.zero_point} must "
                f"have the output's shape {list(out.shape)} and layout {out.layout}, and the add's "
                f"scale {r_scale} and zero point {res.zero_point} for it"
            )
        plan = self.conv.plan(x.shape, x.layout, False, self.residual)
        return plan.passes(self.conv.device, x.buffer, out.buffer, r.buffer)

    def _two_passes(self, x: QTensor, r: QTensor, out: QTensor) -> list[Pass]:
        """The conv into a scratch tensor, then the add pass (any layouts): the fused bytes."""
        assert self.add is not None
        conv = self.conv
        y = _scratch_output(self._scratch, conv, conv.geometry(x.shape).output_shape, "conv before its add")
        passes = conv.plan(x.shape, x.layout, False).passes(conv.device, x.buffer, y.buffer)
        return passes + self.add.passes([y, r] if self.conv_is_a else [r, y], out)


def _scratch_output(
    cache: dict[tuple[int, ...], QTensor], conv: QConv2d, shape: tuple[int, int, int, int], label: str
) -> QTensor:
    """An op's own tensor for `conv`'s output of `shape` before a second pass reads it (made
    once per shape, kept in `cache`)."""
    y = cache.get(shape)
    if y is None:
        dev = conv.device
        buf = dev.buffer(4 * packed_words(shape, conv.output_layout), label=label)
        y = cache[shape] = QTensor(
            buf, shape, conv.output_layout, conv.output_scale, conv.output_zero_point, dev
        )
    return y


class FlattenOp:
    """[N, C, H, W] -> [N, C*H*W, 1, 1] (torch.flatten(x, 1), and the views that equal it): the
    NCHW bytes of both are the same, so the GPU unpacks to NCHW and packs again. With H = W = 1
    both packed tensors are the same bytes too: a view (`is_view`), no pass."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self._scratch: dict[int, Any] = {}

    def output_shape(self, *input_shapes: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        n, c, h, w = input_shapes[0]
        return (n, c * h * w, 1, 1)

    @staticmethod
    def is_view(shape: tuple[int, int, int, int]) -> bool:
        """For a 4W4C input (a net's values): the same packed bytes in and out."""
        return shape[2] == shape[3] == 1

    def passes(self, inputs: Sequence[QTensor], out: QTensor) -> list[Pass]:
        x = inputs[0]
        nbytes = int(np.prod(x.shape))
        scratch = self._scratch.get(nbytes)
        if scratch is None:
            scratch = self._scratch[nbytes] = self.device.buffer(nbytes, label="flatten nchw")
        return [
            unpack_pass(self.device, x.buffer, scratch, x.shape, x.layout),
            pack_pass(self.device, scratch, out.buffer, out.shape, out.layout, out.zero_point),
        ]


class DepthwiseIntoPointwiseOp:
    """A depthwise conv and the 1x1 conv (ConvOp, with or without its fused add) that alone
    reads its output, as one op: inputs (the depthwise conv's input[, the add's residual]). The
    1x1 conv's GEMM computes the depthwise output as it stages its A tiles (planner.DwInput,
    kernels/dw_in.wgsl): the same bytes, one dispatch fewer and no depthwise output in memory.
    Where that plan cannot be made (a 1x1 conv not on the tiled pointwise GEMM, tensors over one
    binding, another layout), the two convs run as before through a tensor of this op's own."""

    def __init__(self, dw: QConv2d, pw: ConvOp) -> None:
        self.dw, self.pw = dw, pw
        self._scratch: dict[tuple[int, ...], QTensor] = {}  # the depthwise output, where not fused

    def output_shape(self, *input_shapes: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        return self.pw.output_shape(self.dw.geometry(input_shapes[0]).output_shape, *input_shapes[1:])

    def fused(self, x_shape: tuple[int, ...], x_layout: str = "4W4C") -> bool:
        """Whether inputs of `x_shape` run as one dispatch (the plan can be made)."""
        return self._fused_plan(x_shape, x_layout) is not None

    def _fused_plan(self, x_shape: tuple[int, ...], x_layout: str) -> Any:
        """The 1x1 conv's plan computing the depthwise output, or None where it cannot be made."""
        shape = self.dw_output_shape(x_shape)
        if x_layout != "4W4C" or self.pw.conv.chosen_method(shape, "4W4C") != "pointwise":
            return None
        try:
            return self.pw.conv.plan(shape, "4W4C", False, self.pw.residual, dw=(self.dw, tuple(x_shape)))
        except ValueError:  # the planner's rules for the pair (binding sizes, a tiled GEMM)
            return None

    def dw_output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        return self.dw.geometry(x_shape).output_shape

    def passes(self, inputs: Sequence[QTensor], out: QTensor) -> list[Pass]:
        x = inputs[0]
        r = inputs[1] if len(inputs) > 1 else None
        same_layouts = out.layout == self.pw.conv.output_layout and (r is None or r.layout == out.layout)
        plan = self._fused_plan(x.shape, x.layout) if same_layouts else None
        if plan is not None:
            return plan.passes(self.dw.device, x.buffer, out.buffer, None if r is None else r.buffer)
        y = _scratch_output(self._scratch, self.dw, self.dw_output_shape(x.shape), "depthwise output")
        first = self.dw.plan(x.shape, x.layout, False).passes(self.dw.device, x.buffer, y.buffer)
        return first + self.pw.passes([y, *inputs[1:]], out)


@dataclass
class Step:
    """One GPU op of a net: `op` reads the values named `inputs` and writes the value `output`,
    quantized with (scale, zero_point); `rank` is the rank PyTorch gives the value (2 after a
    flatten or a linear layer, else 4); `source` names the graph node(s) it came from."""

    kind: str
    op: Any
    inputs: tuple[str, ...]
    output: str
    scale: float
    zero_point: int
    rank: int = 4
    source: str = ""
    detail: str = ""


def _plain_conv(step: Step) -> bool:
    """A conv step without a fused add (one that can take one)."""
    return isinstance(step.op, ConvOp) and step.op.residual is None


def fuse_residual_adds(steps: Sequence[Step], keep: str, prefer: str = "main") -> list[Step]:
    """`steps` with each add of a conv's output that only the add reads (not value `keep`, the
    net's output) made one step: the conv with the add in its epilogue (planner.Residual: the
    same bytes), at the add's place, reading the conv's input and the add's other operand. Of
    two such convs, `prefer` "main" fuses the one whose input was computed later (a block's
    main branch; the shortcut's conv, e.g. a downsample, then runs on its own, early, beside
    the main branch: `side_steps`), "later" the later one in the graph."""
    if prefer not in ("main", "later"):
        raise ValueError(f"prefer must be 'main' or 'later', got {prefer!r}")
    uses = Counter(v for s in steps for v in s.inputs)
    producer = {s.output: i for i, s in enumerate(steps)}
    fused: dict[int, Step] = {}
    gone: set[int] = set()

    def rank(j: int) -> tuple[int, int]:
        made = max((producer.get(v, -1) for v in steps[j].inputs), default=-1)
        return (made, j) if prefer == "main" else (j, made)

    for i, s in enumerate(steps):
        if not isinstance(s.op, QAdd):
            continue
        # An operand read once (by this add alone) cannot have been fused into another add.
        convs = [
            (producer[v], k)
            for k, v in enumerate(s.inputs)
            if v in producer and uses[v] == 1 and v != keep and _plain_conv(steps[producer[v]])
        ]
        if not convs:
            continue
        j, k = max(convs, key=lambda jk: rank(jk[0]))
        c = steps[j]
        op = ConvOp(c.op.conv, s.op.residual(conv_is_a=k == 0), s.op, conv_is_a=k == 0)
        detail = f"{c.detail} + add{'' if s.op.activation == 'none' else ' ' + s.op.activation}"
        fused[i] = Step(f"{c.kind}+add", op, (c.inputs[0], s.inputs[1 - k]), s.output, s.scale,
                        s.zero_point, rank=s.rank, source=f"{c.source} + {s.source}", detail=detail)  # fmt: skip
        gone.add(j)
    return [fused.get(i, s) for i, s in enumerate(steps) if i not in gone]


def _depthwise(step: Step) -> bool:
    """A conv step, no add fused, whose conv is depthwise (one channel a group, C_out == C_in)."""
    if not _plain_conv(step):
        return False
    conv = step.op.conv
    c_out, cpg = conv.weight.shape[:2]
    return cpg == 1 and conv.groups == c_out


def _pointwise(step: Step) -> bool:
    """A conv step (an add fused or not) whose conv is 1x1, stride 1, no padding, one group."""
    if not isinstance(step.op, ConvOp):
        return False
    conv = step.op.conv
    geometry = (tuple(conv.weight.shape[2:]), conv.stride, conv.dilation, conv.padding)
    return conv.groups == 1 and geometry == ((1, 1), (1, 1), (1, 1), (0, 0))


def fuse_depthwise(steps: Sequence[Step], keep: str) -> list[Step]:
    """`steps` with each depthwise conv whose output only a 1x1 conv reads (as its input; not
    value `keep`, the net's output) made one step with that conv (DepthwiseIntoPointwiseOp), at
    the 1x1 conv's place, reading the depthwise conv's input (and the 1x1 conv's residual)."""
    uses = Counter(v for s in steps for v in s.inputs)
    producer = {s.output: i for i, s in enumerate(steps)}
    fused: dict[int, Step] = {}
    gone: set[int] = set()
    for i, s in enumerate(steps):
        if not _pointwise(s) or s.inputs[0] not in producer:
            continue
        j = producer[s.inputs[0]]
        d = steps[j]
        if not _depthwise(d) or uses[d.output] != 1 or d.output == keep:
            continue
        op = DepthwiseIntoPointwiseOp(d.op.conv, s.op)
        fused[i] = Step(f"depthwise+{s.kind}", op, (d.inputs[0], *s.inputs[1:]), s.output, s.scale, s.zero_point,
                        rank=s.rank, source=f"{d.source} ; {s.source}", detail=f"{d.detail} ; {s.detail}".strip(" ;"))  # fmt: skip
        gone.add(j)
    return [fused.get(i, s) for i, s in enumerate(steps) if i not in gone]


@dataclass
class Compiled:
    """A net's forward pass for one input shape: each value's QTensor (buffers reused once a
    value is dead), the passes of each step, the input and output conversions."""

    shapes: dict[str, tuple[int, int, int, int]]
    values: dict[str, QTensor]
    step_passes: list[list[Pass]]
    x_float: Any = None  # float32 NCHW input buffer and its quantize pass (numpy calls)
    upload: Any = None  # mappable buffer a numpy call's input is written to, copied to x_float
    upload_ptr: Any = None  # where upload is mapped for writing (None: not mapped now)
    quantize: list[Pass] = field(default_factory=list)
    y_nchw: Any = None  # int8 NCHW readback buffer and its unpack pass
    unpack: list[Pass] = field(default_factory=list)
    free_outputs: list = field(default_factory=list)  # run()'s output buffers, reused when dead
    readback: tuple[Any, int] = (None, 0)  # what a numpy call reads: (buffer, bytes)
    staging: Any = None  # mappable buffer the readback is copied to (None: wgpu-py's reads)
    read_bytes: int = 0  # bytes copied there (the readback's, rounded up to 4)
    ahead: Any = None  # the next numpy call's work, recorded while the GPU ran the last one
    _passes: list[Pass] | None = field(default=None, repr=False)

    def passes(self) -> list[Pass]:
        """Every pass of a numpy call, in order (made once: a call's hot path reads it)."""
        if self._passes is None:
            self._passes = [*self.quantize, *(p for ps in self.step_passes for p in ps), *self.unpack]
        return self._passes

    def output_array(self, data: Any, shape: tuple[int, ...]) -> np.ndarray:
        """The int8 NCHW output of `shape` from the bytes a numpy call read (`readback`): as
        they are, or, where the output is read packed (no unpack pass), unpacked here."""
        if self.y_nchw is None:
            words = np.frombuffer(data, np.uint32)
            if tuple(shape[2:]) == (1, 1):  # a classifier's output: its layout's fast path, unchecked
                return unpack_4w4c_one_width(words[: self.readback[1] // 4], shape[0], shape[1], 1)
            return unpack(words, "4W4C", shape)
        return np.frombuffer(data, np.int8).reshape(shape)  # writable: `data` is the call's own copy


def compile_forward(
    steps: Sequence[Step],
    shapes: dict[str, tuple[int, int, int, int]],
    *,
    input_name: str,
    input_scale: float,
    input_zero_point: int,
    quantize_scale: float,
    device: Device,
    in_layout: str | None,
    quantize_in_conv: bool = True,
) -> Compiled:
    """The forward pass of `steps` for the value shapes `shapes` (`Net.shapes`): float32 numpy
    input quantized on the GPU with `quantize_scale` when in_layout is None, else a caller's
    QTensor in `in_layout` bound per call (`Net.run`). With `quantize_in_conv`, where the input's
    one reader is a conv on the patch kernel, that conv quantizes the float input as it loads it
    (`input_quantizing_conv`): the same bytes, no quantize pass."""
    dev = device
    output = steps[-1]
    last_use = {input_name: -1}
    for i, s in enumerate(steps):
        for v in s.inputs:
            last_use[v] = i
    views = {
        s.output: s.inputs[0]
        for s in steps[:-1]
        if isinstance(s.op, FlattenOp)
        and s.inputs[0] != input_name
        and FlattenOp.is_view(shapes[s.inputs[0]])
    }

    def root(v: str) -> str:
        while v in views:
            v = views[v]
        return v

    for v, u in list(last_use.items()):
        r = root(v)
        last_use[r] = max(last_use.get(r, -1), u)

    free: dict[int, list[Any]] = {}
    values: dict[str, QTensor] = {}
    beside = side_steps(steps, root) if SIDE_OUTPUTS_FRESH else set()

    def tensor(name: str, scale: float, zp: int, what: str, fresh: bool = False) -> QTensor:
        nbytes = 4 * packed_words(shapes[name], "4W4C")
        check_buffer(DeviceLimits.of(dev), f"{what}: its output {list(shapes[name])}", nbytes)
        pool = None if fresh else free.get(nbytes)
        buf = pool.pop() if pool else dev.buffer(nbytes, label=name)
        return QTensor(buf, shapes[name], "4W4C", scale, zp, dev)

    step_passes: list[list[Pass]] = []
    x_float = None
    quantizing = -1  # the step whose conv quantizes the float input itself (-1: none)
    if in_layout is None:
        x_float = dev.buffer(4 * int(np.prod(shapes[input_name])), label="x float32")
        if quantize_in_conv:
            quantizing = input_quantizing_conv(steps, shapes, input_name)
        if quantizing < 0:  # (else no int8 input exists: the conv reads the floats)
            values[input_name] = tensor(input_name, input_scale, input_zero_point, "input")
    for i, s in enumerate(steps):
        if s.output in views:
            src = values[s.inputs[0]]
            values[s.output] = QTensor(src.buffer, shapes[s.output], "4W4C", s.scale, s.zero_point, dev)
            step_passes.append([])
            continue
        out = tensor(s.output, s.scale, s.zero_point, f"{s.kind} ({s.source})", fresh=i in beside)
        values[s.output] = out
        if in_layout is not None and input_name in s.inputs:
            step_passes.append([])  # bound per call to the caller's tensor (run)
        elif i == quantizing:
            assert isinstance(s.op, ConvOp)
            qi = QuantizedInput(shapes[input_name][1], tuple(int(w) for w in quantize_params(quantize_scale)))
            plan = s.op.conv.plan(shapes[input_name], "4W4C", False, None, qi)
            step_passes.append(plan.passes(dev, x_float, out.buffer))
        else:
            try:
                step_passes.append(s.op.passes([values[v] for v in s.inputs], out))
            except ValueError as e:
                raise ValueError(f"{s.kind} ({s.source}): {e}") from None
        for r in {root(v) for v in s.inputs}:  # dead after this step: its buffer serves later values
            caller_owns = r == input_name and in_layout is not None
            if last_use[r] == i and not caller_owns and r != root(output.output) and r in values:
                t = values[r]
                free.setdefault(4 * packed_words(t.shape, "4W4C"), []).append(t.buffer)
    compiled = Compiled(shapes, values, step_passes, x_float=x_float)
    x_in = values.get(input_name)
    if in_layout is None and x_in is not None and quantizing < 0:
        compiled.quantize = [
            quantize_pass(dev, x_float, x_in.buffer, x_in.shape, "4W4C", quantize_scale, x_in.zero_point)
        ]
    y = values[output.output]
    n_out = int(np.prod(y.shape))
    one_pixel = READ_ONE_PIXEL_PACKED and tuple(y.shape[2:]) == (1, 1)
    if max(n_out, y.nbytes) <= dev.max_binding_size and not one_pixel:
        compiled.y_nchw = dev.buffer(n_out, label="y nchw")
        compiled.unpack = [unpack_pass(dev, y.buffer, compiled.y_nchw, y.shape, "4W4C")]
    # An output over one binding, or of one pixel a sample (READ_ONE_PIXEL_PACKED), has no unpack
    # pass: its packed words are read and unpacked on the host (`Compiled.output_array`).
    compiled.readback = (y.buffer, y.nbytes) if compiled.y_nchw is None else (compiled.y_nchw, n_out)
    if in_layout is None and dev._submitter is not None:
        compiled.read_bytes = (compiled.readback[1] + 3) // 4 * 4
        compiled.staging = dev.staging_buffer(compiled.read_bytes, "net output")
        compiled.upload = dev.upload_buffer(compiled.x_float.size, "net input")
    return compiled


def side_steps(steps: Sequence[Step], root: Callable[[str], str]) -> set[int]:
    """The steps that can run beside the step before them: none of their inputs is that step's
    output, and each has been read since it was written (so its buffer needs no barrier to be
    read). Given an output buffer that no earlier pass touched, such a step's first pass needs no
    barrier, and the GPU runs it while the one before runs (wgpu puts a barrier before a
    dispatch only where a buffer changes use; one waits for all work before it, on NVIDIA's
    Vulkan ~2.3 us). `root` maps a view to the value it views. E.g. a ResNet block's downsample
    conv, after the block's first conv (fuse_residual_adds puts it there)."""
    read: set[str] = set()  # values read since written
    out: set[int] = set()
    prev_out: str | None = None
    for i, s in enumerate(steps):
        ins = {root(v) for v in s.inputs}
        if i > 0 and prev_out is not None and prev_out not in ins and ins <= read:
            out.add(i)
        read |= ins
        if root(s.output) != s.output:  # a view: no pass, the step before stays the last
            continue
        prev_out = s.output
    return out


def input_quantizing_conv(
    steps: Sequence[Step], shapes: dict[str, tuple[int, int, int, int]], input_name: str
) -> int:
    """The index of the step that can quantize the net's float input as it loads it, or -1: the
    input's only reader, a conv with no fused add whose measured or default choice is the patch
    kernel and that takes the float input in one binding."""
    readers = [i for i, s in enumerate(steps) if input_name in s.inputs]
    if len(readers) != 1:
        return -1
    s = steps[readers[0]]
    if not isinstance(s.op, ConvOp) or s.op.residual is not None or list(s.inputs) != [input_name]:
        return -1
    shape = shapes[input_name]
    if s.op.conv.chosen_method(shape, "4W4C") != "patch_4w4c":
        return -1
    if 4 * int(np.prod(shape)) > s.op.conv.device.max_binding_size:
        return -1
    return readers[0]


def step_lines(steps: Sequence[Step], shapes: dict[str, tuple[int, int, int, int]]) -> list[str]:
    """One line per step for `print(net)`: kind, shapes (value names where `shapes` is empty),
    detail and method, output quantization, graph source."""
    lines = []
    for i, s in enumerate(steps):
        ins = ", ".join(str(list(shapes[v])) if shapes else v for v in s.inputs)
        out = str(list(shapes[s.output])) if shapes else s.output
        detail = s.detail
        if isinstance(s.op, ConvOp) and shapes:
            detail = f"{detail} {s.op.method(shapes[s.inputs[0]])}".strip()
        elif isinstance(s.op, DepthwiseIntoPointwiseOp) and shapes:
            detail = f"{detail} {'one dispatch' if s.op.fused(shapes[s.inputs[0]]) else 'two convs'}".strip()
        lines.append(
            f"  {i:3d} {s.kind:<20} {ins} -> {out}  {detail}  "
            f"out scale {s.scale:.6g} zp {s.zero_point}  [{s.source}]"
        )
    return lines


def tune_steps(
    steps: Sequence[Step], shapes: dict[str, tuple[int, int, int, int]], *, force: bool = False
) -> list[dict[str, Any]]:
    """Each conv step's method and GEMM configuration for its input of `shapes`, measured on its
    device (`tuning.tune`: kept in the per-user cache, so later plans and processes take it;
    `force`: measured again where a choice is cached or shipped); returns each conv's choice."""
    convs = []
    for s in steps:
        if isinstance(s.op, ConvOp):
            geo = kernel_geometry(s.op.conv.geometry(shapes[s.inputs[0]]), "4W4C")
            key = tuning.shape_key(s.op.conv, geo, "4W4C")
            # what each shape had before any is measured (convs of one shape share a choice)
            convs.append((s, geo, key, tuning.lookup(s.op.conv.device, key)))
    out = []
    for s, geo, key, previous in convs:
        conv = s.op.conv
        choice = tuning.tune(conv, geo, "4W4C", force_measure=force)
        conv._plans.clear()  # planned again: QConv2d.plan takes the cached choice
        out.append({"step": s.source, "kind": s.kind, **choice, "key": key, "previous": previous})
    return out


def store_choice(key: str, choice: dict[str, Any] | None, convs: Sequence[QConv2d]) -> None:
    """`choice` (None: none, the planner's default) as the cached choice of shape `key`, and
    `convs` (that shape's) planned again with it."""
    tuning.store(convs[0].device, key, choice)
    for c in convs:
        c._plans.clear()


def restore_choices(steps: Sequence[Step], tuned: Sequence[dict[str, Any]]) -> None:
    """Put back the choices `tune_steps` found before it measured (`tuned`, its result; where
    there was none, none), so the convs plan as they did before."""
    convs = [s.op.conv for s in steps if isinstance(s.op, ConvOp)]
    for conv, t in zip(convs, tuned, strict=True):
        store_choice(t["key"], t["previous"], [conv])


# The methods `refine_in_context` tries in place of one another (im2col_generic, which the H200's
# tuner chose for none of 95 shapes, is left out).
CONTEXT_METHODS = ("pointwise", "im2col_4w4c", "implicit_4w4c")


def context_alternatives(conv: QConv2d, geo: Any, key: str) -> list[dict[str, Any] | None]:
    """What `refine_in_context` tries for one conv shape instead of its choice now (cached,
    shipped or none): the planner's default (None) where a measured choice is in effect; with
    method "auto", the other GEMM methods (`CONTEXT_METHODS`) with the same GEMM configuration
    and the patch kernel with its default configuration (not for 1x1 stride-1 convs);
    and, where the GEMM splits K on a device that can reduce inside it, the choice with the
    slices reduced each way ("gemm", "pass"; one of them is what "auto" does now)."""
    current = tuning.lookup(conv.device, key)
    out: list[dict[str, Any] | None] = [None] if current is not None else []
    method = current["method"] if current else resolve_method(conv.method, geo, "4W4C")
    if method == "depthwise_4w4c":
        return out
    gemm = current["gemm"] if current else None
    limits = DeviceLimits.of(conv.device)
    cfg = GemmConfig.from_dict(gemm) if gemm else default_gemm_config(geo, geo.m_blocks, limits)
    if conv.method == "auto" and cfg.tiled:
        valid = valid_methods(geo, "4W4C")
        for m in CONTEXT_METHODS:
            if m != method and m in valid:
                out.append({"method": m, "gemm": cfg.to_dict(), "context": True})
        if method != "patch_4w4c" and "patch_4w4c" in valid and not geo.is_pointwise:
            out.append({"method": "patch_4w4c", "gemm": None, "context": True})  # its default
    if cfg.splits > 1 and cfg.tiled and conv.device.reduce_in_gemm:
        for mode in ("gemm", "pass"):
            if mode != cfg.reduce:
                alt = dataclasses.replace(cfg, reduce=mode).to_dict()
                out.append({"method": method, "gemm": alt, "context": True})
    return out


def refine_in_context(
    steps: Sequence[Step],
    shapes: dict[str, tuple[int, int, int, int]],
    forward_s: Callable[[], float],
    *,
    rounds: int = 3,
    min_gain: float = 0.01,
    sweeps: int = 2,
) -> list[dict[str, Any]]:
    """Greedy, one conv shape at a time in the order the network runs them: each of its
    `context_alternatives` timed in the whole forward pass (`forward_s`: the median GPU time of
    the network as compiled now) in turns with the choice before it, `rounds` times each; kept
    (stored as that shape's choice in the tuning cache) where the forward pass's median gets
    faster by `min_gain` or more (1%: on the H200 two nets planned alike measured up to 0.9%
    apart in turns), else the choice before it is put back. Convs of one shape share
    a choice. Up to `sweeps` sweeps over the shapes, the next only where the last kept something
    (what pays for one layer depends on its neighbours' choices: on the H200 a second sweep made
    ResNet-18 at batch 1 another 9% faster). Returns what was tried: {"key", "choice",
    "before_s", "after_s", "kept", "sweep"}."""
    seen: dict[str, tuple[QConv2d, Any]] = {}
    users: dict[str, list[QConv2d]] = {}
    for s in steps:
        if isinstance(s.op, ConvOp):
            conv = s.op.conv
            geo = kernel_geometry(conv.geometry(shapes[s.inputs[0]]), "4W4C")
            key = tuning.shape_key(conv, geo, "4W4C")
            seen.setdefault(key, (conv, geo))
            users.setdefault(key, []).append(conv)

    tried: list[dict[str, Any]] = []
    for sweep in range(sweeps):
        if sweep and not any(t["kept"] for t in tried if t["sweep"] == sweep - 1):
            break
        for key, (conv, geo) in seen.items():
            for alt in context_alternatives(conv, geo, key):
                before = tuning.lookup(conv.device, key)
                t_before, t_alt = [], []
                for _ in range(rounds):
                    store_choice(key, before, users[key])
                    t_before.append(forward_s())
                    store_choice(key, alt, users[key])
                    t_alt.append(forward_s())
                b, a = float(np.median(t_before)), float(np.median(t_alt))
                kept = a <= b * (1.0 - min_gain)
                if not kept:
                    store_choice(key, before, users[key])
                tried.append(
                    {"key": key, "choice": alt, "before_s": b, "after_s": a, "kept": kept, "sweep": sweep}
                )
    return tried


def whole_gpu_times(device: Device, c: Compiled, *, repeats: int, warm_s: float) -> np.ndarray:
    """GPU times (s, `repeats` of them) of compiled forward `c`, all its passes in one compute
    pass as a call runs them (`Net.gpu_times`' whole_s, what `Net.tune` compares)."""
    return device.time_passes(c.passes(), repeats=repeats, warm_s=warm_s, whole=True)[:, 0]


def forward_gpu_times(
    device: Device, steps: Sequence[Step], c: Compiled, *, repeats: int, warm_s: float
) -> dict[str, Any]:
    """GPU time of compiled forward `c` (see `Net.gpu_times`)."""
    whole = whole_gpu_times(device, c, repeats=repeats, warm_s=warm_s)
    each = device.time_passes(c.passes(), repeats=max(3, repeats // 4))
    med = np.median(each, axis=0)
    i = len(c.quantize)
    per_step = []
    for s, ps in zip(steps, c.step_passes, strict=True):
        per_step.append({"kind": s.kind, "source": s.source, "s": float(med[i : i + len(ps)].sum())})
        i += len(ps)
    return {
        "whole_s": float(np.median(whole)),
        "whole_min_s": float(whole.min()),
        "whole_max_s": float(whole.max()),
        "quantize_s": float(med[: len(c.quantize)].sum()),
        "unpack_s": float(med[i:].sum()),
        "steps_s": per_step,
    }
