"""A quantized network on the GPU: int8 ops in order, compiled once per input shape and run as
one submit (float32 in, float32 out, nothing read back in between).

A `Net` is a list of `Step`s over named int8 values (`q8ta_wgpu.from_torch` builds one from a
PyTorch graph). Each step's op has `output_shape(*input_shapes)` and `passes(inputs, out)`: the
GPU passes that compute its output QTensor from its input QTensors, into a buffer the net owns.
`Net.compile(shape)` makes, once per input shape, every value's buffer (reused once a value is
dead), every pass (pipelines, uniforms, bind groups) and the input and output conversions; a
call then writes the input, submits the whole forward pass at once and reads the output back.
The command buffer a numpy call submits was recorded by the call before, while the GPU ran:
recording costs the host about what the GPU spends on the work (bench/probes/net_host.py).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ._checks import check_scale, check_zero_point
from .conv import QConv2d, QTensor
from .layouts import pack_pass, packed_words, unpack, unpack_pass
from .ops import quantize_pass
from .planner import DeviceLimits, check_buffer, kernel_geometry, resolve_method
from .runtime import Device, Pass, get_device


class NetOp(Protocol):
    """What a step runs: its output's NCHW shape for its inputs' shapes, and the GPU passes that
    write its output QTensor (buffer preallocated) from its input QTensors."""

    def output_shape(self, *input_shapes: tuple[int, int, int, int]) -> tuple[int, int, int, int]: ...

    def passes(self, inputs: Sequence[QTensor], out: QTensor) -> list[Pass]: ...


class ConvOp:
    """A QConv2d as a net op (a linear layer is a 1x1 conv over [N, K, 1, 1])."""

    def __init__(self, conv: QConv2d) -> None:
        self.conv = conv

    def output_shape(self, *input_shapes: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        return self.conv.geometry(input_shapes[0]).output_shape

    def method(self, shape: tuple[int, int, int, int], layout: str = "4W4C") -> str:
        """The method the conv runs on inputs of `shape`: its plan's when one exists, else the
        rule's (a tuned choice may differ until the plan is made)."""
        for (s, lay, _), plan in self.conv._plans.items():
            if s == tuple(shape) and lay == layout:
                return plan.method
        return resolve_method(self.conv.method, kernel_geometry(self.conv.geometry(shape), layout), layout)

    def passes(self, inputs: Sequence[QTensor], out: QTensor) -> list[Pass]:
        x = inputs[0]
        if out.layout != self.conv.output_layout:
            raise ValueError(f"the conv writes {self.conv.output_layout}, out is {out.layout}")
        plan = self.conv.plan(x.shape, x.layout, False)
        return plan.passes(self.conv.device, x.buffer, out.buffer)


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


@dataclass
class _Compiled:
    """A net's forward pass for one input shape: each value's QTensor (buffers reused once a
    value is dead), the passes of each step, the input and output conversions."""

    shapes: dict[str, tuple[int, int, int, int]]
    values: dict[str, QTensor]
    step_passes: list[list[Pass]]
    x_float: Any = None  # float32 NCHW upload buffer and its quantize pass (numpy calls)
    quantize: list[Pass] = field(default_factory=list)
    y_nchw: Any = None  # int8 NCHW readback buffer and its unpack pass
    unpack: list[Pass] = field(default_factory=list)
    free_outputs: list = field(default_factory=list)  # run()'s output buffers, reused when dead
    staging: Any = None  # mappable buffer the output is copied to (None: wgpu-py's reads)
    read_bytes: int = 0  # bytes copied there (the output's, rounded up to 4)
    ahead: Any = None  # the next numpy call's work, recorded while the GPU ran the last one

    def passes(self) -> list[Pass]:
        return [*self.quantize, *(p for ps in self.step_passes for p in ps), *self.unpack]


class Net:
    """An int8 network on the GPU (see the module doc); usually made by `q8ta_wgpu.from_torch`.

    `net(x)`: numpy float32 NCHW -> numpy float32 (the graph's output, dequantized), the input
    quantized on the GPU with the graph's first quantize parameters. `net.run(qt)`: QTensor ->
    QTensor, nothing read back. `print(net)`: one line per GPU op.
    """

    PLAN_CACHE_SIZE = 4

    def __init__(
        self,
        steps: Sequence[Step],
        *,
        input_name: str,
        input_scale: float,
        input_zero_point: int,
        input_channels: int,
        device: Device | None = None,
        example_shape: tuple[int, ...] | None = None,
    ) -> None:
        if not steps:
            raise ValueError("a net needs at least one step")
        self.steps = list(steps)
        self.input_name = input_name
        self.input_scale = check_scale("input_scale", input_scale)
        # The graph's quantize divides by the scale as given (double), not its float32 rounding.
        self._quantize_scale = float(input_scale)
        self.input_zero_point = check_zero_point("input_zero_point", input_zero_point)
        self.input_channels = int(input_channels)
        self.device = get_device(device)
        self.example_shape = tuple(example_shape) if example_shape else None
        self.output = self.steps[-1]
        known = {input_name}
        for s in self.steps:
            missing = [v for v in s.inputs if v not in known]
            if missing:
                raise ValueError(f"step {s.kind} ({s.source}) reads {missing}, which no earlier step writes")
            known.add(s.output)
        self._compiled: OrderedDict[tuple, _Compiled] = OrderedDict()

    # ---- what it is ------------------------------------------------------------------------
    @property
    def output_scale(self) -> float:
        return self.output.scale

    @property
    def output_zero_point(self) -> int:
        return self.output.zero_point

    def shapes(self, shape: tuple[int, ...]) -> dict[str, tuple[int, int, int, int]]:
        """Every value's NCHW shape for an input of NCHW `shape` (each op checks its inputs)."""
        shape = self._check_shape(shape)
        shapes = {self.input_name: shape}
        for s in self.steps:
            try:
                shapes[s.output] = tuple(s.op.output_shape(*(shapes[v] for v in s.inputs)))
            except ValueError as e:
                raise ValueError(f"{s.kind} ({s.source}): {e}") from None
        return shapes

    def _check_shape(self, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        if len(shape) != 4:
            raise ValueError(f"x must be [N, C, H, W] (4 dimensions), got shape {tuple(shape)}")
        n, c, h, w = (int(v) for v in shape)
        if c != self.input_channels:
            raise ValueError(f"x has {c} channels; this net takes {self.input_channels} (x is [N, C, H, W])")
        if min(n, h, w) < 1:
            raise ValueError(f"x has an empty dimension: shape {tuple(shape)}")
        return (n, c, h, w)

    def __repr__(self) -> str:
        shape = self.example_shape
        shapes = self.shapes(shape) if shape else {}
        lines = [
            f"Net on {self.device.name} ({self.device.backend}): {len(self.steps)} GPU ops, input "
            f"{list(shape) if shape else '[N, C, H, W]'} quantized with scale {self.input_scale:.6g} zero point "
            f"{self.input_zero_point}"
        ]
        for i, s in enumerate(self.steps):
            ins = ", ".join(str(list(shapes[v])) if shapes else v for v in s.inputs)
            out = str(list(shapes[s.output])) if shapes else s.output
            detail = s.detail
            if isinstance(s.op, ConvOp) and shapes:
                detail = f"{detail} {s.op.method(shapes[s.inputs[0]])}".strip()
            lines.append(
                f"  {i:3d} {s.kind:<20} {ins} -> {out}  {detail}  "
                f"out scale {s.scale:.6g} zp {s.zero_point}  [{s.source}]"
            )
        return "\n".join(lines)

    # ---- compiling -------------------------------------------------------------------------
    def compile(self, shape: tuple[int, ...], in_layout: str | None = None) -> _Compiled:
        """The forward pass for inputs of NCHW `shape` (float32 numpy when in_layout is None,
        else QTensors in `in_layout`), made once and cached."""
        key = (tuple(int(v) for v in shape), in_layout)
        hit = self._compiled.get(key)
        if hit is not None:
            self._compiled.move_to_end(key)
            return hit
        dev = self.device
        shapes = self.shapes(shape)
        last_use = {self.input_name: -1}
        for i, s in enumerate(self.steps):
            for v in s.inputs:
                last_use[v] = i
        views = {
            s.output: s.inputs[0]
            for s in self.steps[:-1]
            if isinstance(s.op, FlattenOp)
            and s.inputs[0] != self.input_name
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

        def tensor(name: str, scale: float, zp: int, what: str) -> QTensor:
            nbytes = 4 * packed_words(shapes[name], "4W4C")
            check_buffer(DeviceLimits.of(dev), f"{what}: its output {list(shapes[name])}", nbytes)
            pool = free.get(nbytes)
            buf = pool.pop() if pool else dev.buffer(nbytes, label=name)
            return QTensor(buf, shapes[name], "4W4C", scale, zp, dev)

        step_passes: list[list[Pass]] = []
        if in_layout is None:
            values[self.input_name] = tensor(
                self.input_name, self.input_scale, self.input_zero_point, "input"
            )
        for i, s in enumerate(self.steps):
            if s.output in views:
                src = values[s.inputs[0]]
                values[s.output] = QTensor(src.buffer, shapes[s.output], "4W4C", s.scale, s.zero_point, dev)
                step_passes.append([])
                continue
            out = tensor(s.output, s.scale, s.zero_point, f"{s.kind} ({s.source})")
            values[s.output] = out
            if in_layout is not None and self.input_name in s.inputs:
                step_passes.append([])  # bound per call to the caller's tensor (run)
            else:
                try:
                    step_passes.append(s.op.passes([values[v] for v in s.inputs], out))
                except ValueError as e:
                    raise ValueError(f"{s.kind} ({s.source}): {e}") from None
            for r in {root(v) for v in s.inputs}:  # dead after this step: its buffer serves later values
                caller_owns = r == self.input_name and in_layout is not None
                if last_use[r] == i and not caller_owns and r != root(self.output.output):
                    t = values[r]
                    free.setdefault(4 * packed_words(t.shape, "4W4C"), []).append(t.buffer)
        compiled = _Compiled(shapes, values, step_passes)
        x_in = values.get(self.input_name)
        if in_layout is None and x_in is not None:
            n_float = int(np.prod(shapes[self.input_name]))
            compiled.x_float = dev.buffer(4 * n_float, label="x float32")
            compiled.quantize = [
                quantize_pass(
                    dev,
                    compiled.x_float,
                    x_in.buffer,
                    x_in.shape,
                    "4W4C",
                    self._quantize_scale,
                    x_in.zero_point,
                )
            ]
        y = values[self.output.output]
        n_out = int(np.prod(y.shape))
        if max(n_out, y.nbytes) <= dev.max_binding_size:
            compiled.y_nchw = dev.buffer(n_out, label="y nchw")
            compiled.unpack = [unpack_pass(dev, y.buffer, compiled.y_nchw, y.shape, "4W4C")]
        if in_layout is None and dev._submitter is not None:
            out_bytes = n_out if compiled.y_nchw is not None else y.nbytes
            compiled.read_bytes = (out_bytes + 3) // 4 * 4
            compiled.staging = dev.staging_buffer(compiled.read_bytes, "net output")
        self._compiled[key] = compiled
        while len(self._compiled) > self.PLAN_CACHE_SIZE:
            self._compiled.popitem(last=False)
        return compiled

    # ---- running ---------------------------------------------------------------------------
    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Float32 NCHW in, the network's float32 output out (dequantized as the graph's last
        dequantize says), as the PyTorch model it came from gives it."""
        return self._dequantize(self.run_int8(x))

    def run_int8(self, x: np.ndarray) -> np.ndarray:
        """Like `net(x)`, but the int8 output (before the last dequantize) as numpy NCHW."""
        x = self._float_input(x)
        dev = self.device
        with dev.lock:
            c = self.compile(x.shape)
            dev.write(c.x_float, x)
            y = c.values[self.output.output]
            src, nbytes = (y.buffer, y.nbytes) if c.y_nchw is None else (c.y_nchw, int(np.prod(y.shape)))
            work, c.ahead = c.ahead, None
            if work is None:
                work = dev.record(c.passes(), (src, c.staging, c.read_bytes)) if c.staging else None
            if work is None:  # wgpu-py's objects only
                dev.run(c.passes())
                data = dev.read(src, nbytes)
            else:
                dev.submit(work)
                try:  # the next call's work, recorded while the GPU runs this call's
                    c.ahead = dev.record(c.passes(), (src, c.staging, c.read_bytes))
                except Exception:  # the next call records it again, and raises what fails
                    c.ahead = None
                data = dev.read_mapped(c.staging, c.read_bytes)[:nbytes]
        if c.y_nchw is None:  # an output over one binding: read packed, unpacked here
            return unpack(np.frombuffer(data, np.uint32), "4W4C", y.shape)
        return np.frombuffer(data, np.int8).reshape(y.shape)  # a writable copy already

    def run(self, x: QTensor) -> QTensor:
        """QTensor in (quantized as the net's input: `net.input_scale`, `input_zero_point`),
        QTensor out, on the GPU: nothing is read back. The result keeps its buffer until it is
        garbage; later runs do not overwrite it."""
        if not isinstance(x, QTensor):
            raise TypeError(
                f"x must be a q8ta_wgpu.QTensor, got {type(x).__name__} (numpy input: call net(x))"
            )
        if x.device is not self.device:
            raise ValueError(
                f"x is a QTensor of another Device ({x.device!r}) than this net's ({self.device!r})"
            )
        if x.scale != self.input_scale or x.zero_point != self.input_zero_point:
            raise ValueError(
                f"x has scale {x.scale} and zero point {x.zero_point}; this net's input is quantized "
                f"with scale {self.input_scale} and zero point {self.input_zero_point}"
            )
        dev = self.device
        with dev.lock:
            c = self.compile(x.shape, x.layout)
            last = self.output
            y_ref = c.values[last.output]
            y_buf = c.free_outputs.pop() if c.free_outputs else dev.buffer(y_ref.nbytes, label="net output")
            y = QTensor(y_buf, y_ref.shape, "4W4C", y_ref.scale, y_ref.zero_point, dev)
            values = {**c.values, self.input_name: x, last.output: y}
            passes: list[Pass] = []
            for s, ps in zip(self.steps, c.step_passes, strict=True):
                if s is last or self.input_name in s.inputs:
                    passes += s.op.passes([values[v] for v in s.inputs], values[s.output])
                else:
                    passes += ps
            dev.run(passes)
        weakref.finalize(y, c.free_outputs.append, y_buf)
        return y

    def _float_input(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype != np.float32:
            if not np.issubdtype(x.dtype, np.floating):
                raise TypeError(f"x must be a float array (float32 NCHW), got dtype {x.dtype}")
            x = x.astype(np.float32)
        self._check_shape(x.shape)
        if not np.isfinite(x).all():
            raise ValueError("x has NaN or infinite values")
        return np.ascontiguousarray(x)

    def _dequantize(self, q: np.ndarray) -> np.ndarray:
        # As PyTorch's dequantize_per_tensor: (q - zp) * scale in float32.
        y = (q.astype(np.float32) - np.float32(self.output_zero_point)) * np.float32(self.output_scale)
        return y.reshape(y.shape[: self.output.rank]) if self.output.rank == 2 else y

    # ---- timing ----------------------------------------------------------------------------
    def gpu_times(self, shape: tuple[int, ...], *, repeats: int = 20, warm_s: float = 0.5) -> dict[str, Any]:
        """GPU time of the forward pass for inputs of `shape` (input quantize and output unpack
        included), from timestamps: `whole_s` (all passes in one compute pass, as a call runs
        them; median over `repeats`), and `steps_s` (each step's passes timed alone: per-op
        profile; the sum exceeds whole_s by the passes' separate starts)."""
        c = self.compile(shape)
        passes = c.passes()
        whole = self.device.time_passes(passes, repeats=repeats, warm_s=warm_s, whole=True)[:, 0]
        each = self.device.time_passes(passes, repeats=max(3, repeats // 4))
        med = np.median(each, axis=0)
        i = len(c.quantize)
        steps = []
        for s, ps in zip(self.steps, c.step_passes, strict=True):
            steps.append({"kind": s.kind, "source": s.source, "s": float(med[i : i + len(ps)].sum())})
            i += len(ps)
        return {
            "whole_s": float(np.median(whole)),
            "whole_min_s": float(whole.min()),
            "whole_max_s": float(whole.max()),
            "quantize_s": float(med[: len(c.quantize)].sum()),
            "unpack_s": float(med[i:].sum()),
            "steps_s": steps,
        }
