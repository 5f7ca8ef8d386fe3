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
from typing import Any

import numpy as np

from . import forward
from ._checks import check_scale, check_zero_point
from .conv import QTensor
from .forward import (
    Compiled,
    ConvOp,
    FlattenOp,
    NetOp,
    Step,
    compile_forward,
    forward_gpu_times,
    fuse_depthwise,
    fuse_residual_adds,
    refine_in_context,
    restore_choices,
    step_lines,
    tune_steps,
    whole_gpu_times,
)
from .layouts import packed_words
from .runtime import Device, Pass, get_device

__all__ = ["ConvOp", "FlattenOp", "Net", "NetOp", "Step"]  # the op adapters live in forward.py


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
        fuse: bool = True,
    ) -> None:
        if not steps:
            raise ValueError("a net needs at least one step")
        self.graph_steps = list(steps)  # the graph's ops, one step each
        self.steps = self.graph_steps  # the steps the GPU runs (see `fuse`)
        self.input_name = input_name
        self.input_scale = check_scale("input_scale", input_scale)
        # The graph's quantize divides by the scale as given (double), not its float32 rounding.
        self._quantize_scale = float(input_scale)
        self.input_zero_point = check_zero_point("input_zero_point", input_zero_point)
        self.input_channels = int(input_channels)
        self.device = get_device(device)
        self.example_shape = tuple(example_shape) if example_shape else None
        known = {input_name}
        for s in self.graph_steps:
            missing = [v for v in s.inputs if v not in known]
            if missing:
                raise ValueError(f"step {s.kind} ({s.source}) reads {missing}, which no earlier step writes")
            known.add(s.output)
        self._compiled: OrderedDict[tuple, Compiled] = OrderedDict()
        self._fits: dict[tuple, int] = {}  # batch_that_fits per (sample shape, binding size)
        self._fuse = False
        self.fuse = fuse

    @property
    def output(self) -> Step:
        """The step that writes the net's output (of the steps that run: a fused one where the
        graph's last op is a fused add)."""
        return self.steps[-1]

    @property
    def fuse(self) -> bool:
        """Whether each residual add runs in the epilogue of the conv that computes one of its
        operands (forward.fuse_residual_adds), and a float input is quantized by its first conv
        where that runs the patch kernel (forward.input_quantizing_conv): the same bytes, a pass
        fewer each. Settable: the forward passes are made again."""
        return self._fuse

    @fuse.setter
    def fuse(self, on: bool) -> None:
        self._fuse = bool(on)
        g = self.graph_steps
        self.steps = fuse_residual_adds(g, g[-1].output) if on else list(g)
        if on and forward.FUSE_DEPTHWISE:
            self.steps = fuse_depthwise(self.steps, g[-1].output)
        self._compiled.clear()

    # ---- what it is ------------------------------------------------------------------------
    @property
    def output_scale(self) -> float:
        return self.output.scale

    @property
    def output_zero_point(self) -> int:
        return self.output.zero_point

    def shapes(self, shape: tuple[int, ...]) -> dict[str, tuple[int, int, int, int]]:
        """Every value's NCHW shape for an input of NCHW `shape` (each graph op checks its
        inputs: a fused add too; the values fusion removes are included)."""
        shape = self._check_shape(shape)
        shapes = {self.input_name: shape}
        for s in self.graph_steps:
            try:
                shapes[s.output] = tuple(s.op.output_shape(*(shapes[v] for v in s.inputs)))
            except ValueError as e:
                raise ValueError(f"{s.kind} ({s.source}): {e}") from None
        return shapes

    def _check_shape(self, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        if len(shape) != 4:
            raise ValueError(f"x must be [N, C, H, W] (4 dimensions), got shape {tuple(shape)}")
        n, c, h, w = (int(v) for v in shape)
        if self.input_channels and c != self.input_channels:  # 0: not known (any; the ops check)
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
        lines += step_lines(self.steps, shapes)
        return "\n".join(lines)

    # ---- compiling -------------------------------------------------------------------------
    def compile(self, shape: tuple[int, ...], in_layout: str | None = None) -> Compiled:
        """The forward pass for inputs of NCHW `shape` (float32 numpy when in_layout is None,
        else QTensors in `in_layout`), made once and cached (`forward.compile_forward`)."""
        key = (tuple(int(v) for v in shape), in_layout)
        hit = self._compiled.get(key)
        if hit is not None:
            self._compiled.move_to_end(key)
            return hit
        compiled = compile_forward(
            self.steps,
            self.shapes(shape),
            input_name=self.input_name,
            input_scale=self.input_scale,
            input_zero_point=self.input_zero_point,
            quantize_scale=self._quantize_scale,
            device=self.device,
            in_layout=in_layout,
            quantize_in_conv=self.fuse,
        )
        self._compiled[key] = compiled
        while len(self._compiled) > self.PLAN_CACHE_SIZE:
            self._compiled.popitem(last=False)
        return compiled

    def batch_that_fits(self, shape: tuple[int, ...]) -> int:
        """The most samples of NCHW `shape` one forward pass takes: each value (and the float
        input) of that many fits one storage binding, so that every op can bind it whole; a
        numpy call runs a bigger batch in parts. At least 1: where one sample's value is over a
        binding, convs still split it (row windows), other ops raise naming themselves."""
        key = (tuple(shape[1:]), self.device.max_binding_size)
        fits = self._fits.get(key)
        if fits is None:  # once per sample shape: a call's hot path asks
            one = self.shapes((1, *shape[1:]))
            per_sample = max(4 * packed_words(s, "4W4C") for s in one.values())
            per_sample = max(per_sample, 4 * int(np.prod(shape[1:])))
            fits = self._fits[key] = max(1, self.device.max_binding_size // per_sample)
        return fits

    # ---- running ---------------------------------------------------------------------------
    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Float32 NCHW in, the network's float32 output out (dequantized as the graph's last
        dequantize says), as the PyTorch model it came from gives it."""
        return self._dequantize(self.run_int8(x))

    def run_int8(self, x: np.ndarray) -> np.ndarray:
        """Like `net(x)`, but the int8 output (before the last dequantize) as numpy NCHW."""
        x = self._float_input(x)
        n_fit = self.batch_that_fits(x.shape)
        if n_fit < x.shape[0]:  # samples are independent: run the batch in parts that fit
            return np.concatenate([self._run_int8(x[i : i + n_fit]) for i in range(0, x.shape[0], n_fit)])
        return self._run_int8(x)

    def _run_int8(self, x: np.ndarray) -> np.ndarray:
        """run_int8 of a checked float32 input whose batch fits (`batch_that_fits`)."""
        dev = self.device
        with dev.lock:
            c = self.compile(x.shape)
            src, nbytes = c.readback
            if c.staging is None:  # wgpu-py's objects only
                self._check_finite(x)
                dev.write(c.x_float, x)
                dev.run(c.passes())
                data = dev.read(src, nbytes)
            else:
                # The input goes to a buffer mapped since the last call's work was done, and the
                # recorded work copies it in first (one host copy: a queue write makes two).
                if c.upload_ptr is None:  # the first call, or one that raised
                    c.upload_ptr = dev.map_for_write(c.upload, x.nbytes)
                ptr, c.upload_ptr = c.upload_ptr, None
                dev.write_mapped(ptr, x)
                dev.unmap(c.upload)
                copy = (src, c.staging, c.read_bytes)
                copy_in = (c.upload, c.x_float, x.nbytes)
                work, c.ahead = c.ahead, None
                dev.submit(work if work is not None else dev.record(c.passes(), copy, copy_in))
                # While the GPU runs: the input check (a NaN or inf gives some int8 there, never
                # returned: the call completes, then raises) and the next call's work.
                finite = bool(np.isfinite(x).all())
                try:
                    c.ahead = dev.record(c.passes(), copy, copy_in)
                except Exception:  # the next call records it again, and raises what fails
                    c.ahead = None
                data = dev.read_mapped(c.staging, c.read_bytes)[:nbytes]
                c.upload_ptr = dev.map_for_write(c.upload, x.nbytes)  # its reader is done: at once
                if not finite:
                    self._check_finite(x)
        return c.output_array(data, c.values[self.output.output].shape)

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
        return np.ascontiguousarray(x)

    @staticmethod
    def _check_finite(x: np.ndarray) -> None:
        if not np.isfinite(x).all():
            raise ValueError("x has NaN or infinite values")

    def _dequantize(self, q: np.ndarray) -> np.ndarray:
        # As PyTorch's dequantize_per_tensor: (q - zp) * scale in float32.
        y = (q.astype(np.float32) - np.float32(self.output_zero_point)) * np.float32(self.output_scale)
        return y.reshape(y.shape[: self.output.rank]) if self.output.rank == 2 else y

    # ---- tuning ----------------------------------------------------------------------------
    def tune(self, shape: tuple[int, ...], *, force: bool = False, repeats: int = 20) -> dict[str, Any]:
        """Measure, for inputs of NCHW `shape` on this adapter, each conv's method and GEMM
        configuration (every candidate timed with GPU timestamps: seconds to minutes) and keep
        them if the whole forward pass runs faster with them than before (median of `repeats`
        timings each; choices fastest alone can lose inside a network: on the H200 the untuned
        defaults beat them by up to 10% at batch 1, bench/probes/untuned.py), else put back
        what ran before. Choices live in the per-user tuning cache (q8ta_wgpu.tuning: keyed by
        adapter, driver and package version), so later nets and processes take them without
        measuring. `force`: measure again where a choice is cached or shipped. Returns
        {"choices": each conv's ({"step", "kind", "method", "gemm", "time_s", ...}),
        "before_s", "after_s" (whole forward GPU time), "kept"}."""
        with self.device.lock:
            before = self._whole_s(shape, repeats)
            choices = tune_steps(self.steps, self.shapes(shape), force=force)
            self._compiled.clear()
            after = self._whole_s(shape, repeats)
            kept = after <= before
            if not kept:
                restore_choices(self.steps, choices)
                self._compiled.clear()
        return {"choices": choices, "before_s": before, "after_s": after, "kept": kept}

    def refine(
        self,
        shape: tuple[int, ...],
        *,
        rounds: int = 3,
        repeats: int = 10,
        min_gain: float = 0.01,
        sweeps: int = 2,
    ) -> dict[str, Any]:
        """Try, for inputs of NCHW `shape`, each conv shape's alternatives in the whole forward
        pass, one shape at a time in the order the net runs them (`forward.refine_in_context`):
        the planner's default instead of a measured choice, the other GEMM methods, and the
        split-K slices reduced the other way (inside the GEMM or by a reduce pass). An
        alternative is kept, in the per-user tuning cache as `tune`'s choices are, where the
        forward pass's median GPU time (of `repeats` timings, in `rounds` turns with the choice
        before it) gets faster by `min_gain` or more; up to `sweeps` sweeps over the shapes.
        Why: a choice fastest for a conv alone, or in a chain of itself, can lose inside a
        network (bench/analysis.md). Seconds to minutes (H200, two sweeps: 30-90 s for
        ResNet-18/50 and MobileNetV2). Returns {"tried": [{"key", "choice", "before_s",
        "after_s", "kept", "sweep"}], "before_s", "after_s"} (whole forward GPU time)."""
        with self.device.lock:
            # Clocks up first: timed right after an idle GPU, the first alternative's turns
            # measured up to 2.5x slow on the H200.
            before = self._whole_s(shape, repeats, warm_s=0.5)

            def forward_s() -> float:  # the GPU is kept busy by the timings before: a short warm-up
                self._compiled.clear()
                return self._whole_s(shape, repeats, warm_s=0.05)

            tried = refine_in_context(
                self.steps, self.shapes(shape), forward_s, rounds=rounds, min_gain=min_gain, sweeps=sweeps
            )
            self._compiled.clear()
            after = self._whole_s(shape, repeats)
        return {"tried": tried, "before_s": before, "after_s": after}

    def _whole_s(self, shape: tuple[int, ...], repeats: int, warm_s: float = 0.2) -> float:
        """Median GPU time of the whole forward pass for inputs of `shape` (as `tune` compares)."""
        return float(
            np.median(whole_gpu_times(self.device, self.compile(shape), repeats=repeats, warm_s=warm_s))
        )

    # ---- timing ----------------------------------------------------------------------------
    def gpu_times(self, shape: tuple[int, ...], *, repeats: int = 20, warm_s: float = 0.5) -> dict[str, Any]:
        """GPU time of the forward pass for inputs of `shape` (input quantize and output unpack
        included), from timestamps: `whole_s` (all passes in one compute pass, as a call runs
        them; median over `repeats`), and `steps_s` (each step's passes timed alone: per-op
        profile; the sum exceeds whole_s by the passes' separate starts)."""
        return forward_gpu_times(self.device, self.steps, self.compile(shape), repeats=repeats, warm_s=warm_s)
