"""Quantized conv2d on the GPU: QTensor (a GPU-resident int8 tensor), QConv2d (prepacked weights,
cached plans) and the functional `conv2d` / `im2col`.

A call runs, in one command buffer: [pack NCHW -> 4W4C] (numpy input only), the conv's passes
(planner.py: im2col and the int8 GEMM with its requantizing epilogue, or one fused kernel),
[unpack -> NCHW] (numpy input only). QConv2d keeps the weights, turns the planner's pass specs
into pipelines and bind groups once per input shape (a plan), and binds each call's input and
output into them; numpy calls too big for one buffer run over slices of the batch.
"""

from __future__ import annotations

import os
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, Unpack, final

import numpy as np

from . import _split, tuning
from ._checks import (
    check_float_vector,
    check_int8_array,
    check_keywords,
    check_scale,
    check_scale_product,
    check_zero_point,
)
from .geometry import ConvGeometry, ceil4, pair
from .layouts import check_layout, pack, pack_pass, packed_words, tensor_desc, unpack, unpack_pass
from .planner import (
    MAX_DISPATCH_MBLOCKS,
    Bound,
    ConvOptions,
    ConvPlan,
    ConvSpec,
    DeviceLimits,
    DwInput,
    GemmConfig,
    QuantizedInput,
    Residual,
    UniformData,
    check_binding,
    check_buffer,
    conv_params,
    dw_in_gemm_config,
    gemm_config_for,
    im2col_pass_shape,
    kernel_geometry,
    plan_passes,
    resolve_method,
    runnable_gemm,
    untuned_method,
)
from .quant import ConvRequant
from .runtime import Device, Pass, get_device
from .uniforms import CHAN


# ---- weights ------------------------------------------------------------------------------
def _weight_matrix(weight: np.ndarray, groups: int) -> np.ndarray:
    """[C_out, K_per_group] int8: each channel's group-relative im2col columns, (kh, kw, ic)
    order, zero-padded to a multiple of 4."""
    c_out, cpg, kh, kw = weight.shape
    taps = kh * kw * cpg
    m = np.zeros((c_out, (taps + 3) // 4 * 4), np.int8)
    m[:, :taps] = weight.transpose(0, 2, 3, 1).reshape(c_out, taps)
    return m


def weight_sums(weight: np.ndarray) -> np.ndarray:
    """int32 [C_out]: sum of each output channel's int8 weights (for the zero-point correction)."""
    weight = check_int8_array("weight", weight, ndim=4)
    return weight.reshape(weight.shape[0], -1).astype(np.int32).sum(axis=1, dtype=np.int32)


def prepack_weights(weight: np.ndarray, groups: int = 1) -> np.ndarray:
    """Pack int8 weights [C_out, C_in/groups, KH, KW] for kernels/gemm_q8.wgsl: uint32 words of
    blocks (c4, k4) in c4-major order; word j of a block = channel 4*c4+j, its 4 bytes =
    group-relative columns 4*k4..4*k4+3. Channels past C_out and padded columns are 0."""
    weight = check_int8_array("weight", weight, ndim=4)
    m = _weight_matrix(weight, groups)
    c_out, kpg = m.shape
    c4 = ceil4(c_out)
    mp = np.zeros((c4 * 4, kpg), np.int8)
    mp[:c_out] = m
    # (c4, j, k4, b) -> (c4, k4, j, b)
    blocks = mp.reshape(c4, 4, kpg // 4, 4).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(blocks).reshape(-1).view(np.uint32)


def prepack_depthwise(weight: np.ndarray) -> np.ndarray:
    """Pack depthwise int8 weights [C, 1, KH, KW] for kernels/depthwise_4w4c.wgsl: uint32 words
    c4*taps + t (tap t = kh*KW + kw), byte j = channel 4*c4+j's weight at that tap. Channels
    past C are 0."""
    weight = check_int8_array("weight", weight, ndim=4)
    c, cpg, kh, kw = weight.shape
    if cpg != 1:
        raise ValueError(f"depthwise weights have 1 input channel per group, got weight shape {weight.shape}")
    taps = np.zeros((ceil4(c) * 4, kh * kw), np.int8)
    taps[:c] = weight.reshape(c, kh * kw)
    # (c4, j, t) -> (c4, t, j)
    return np.ascontiguousarray(taps.reshape(-1, 4, kh * kw).transpose(0, 2, 1)).reshape(-1).view(np.uint32)


def _channel_params(
    wsum: np.ndarray,
    input_scale: float,
    weight_scales: np.ndarray,
    bias: np.ndarray | None,
    output_scale: float,
    k_per_group: int,
) -> np.ndarray:
    """Per-channel epilogue records (uniforms.CHAN: the exact requantization, quant.ConvRequant),
    padded to 4 channels, as uint32 words."""
    c_out = wsum.size
    check_scale_product(input_scale, weight_scales)
    rq = ConvRequant.of(input_scale, weight_scales, bias, output_scale, k_per_group)
    rec = np.zeros(ceil4(c_out) * 4, CHAN.dtype)
    rec["wsum"][:c_out] = wsum.astype(np.int32)
    rec["m"][:c_out] = rq.m.astype(np.float32)
    rec["b"][:c_out] = rq.b.astype(np.float32)
    rec["margin"][:c_out] = rq.margin
    rec["fix_m"][:c_out] = rq.fix_m
    rec["fix_e"][:c_out] = rq.fix_e
    rec["fix_e"][c_out:] = 1  # padding channels: any valid shift
    rec["fix_bi"][:c_out] = rq.fix_bi
    rec["fix_bf"][:c_out] = rq.fix_bf >> np.maximum(rq.fix_e - 32, 0)  # its 32 high bits: the rest are 0
    return rec.view(np.uint32).reshape(-1, CHAN.words)


# ---- GPU tensors --------------------------------------------------------------------------
@final  # no subclass: mypy then knows an input that is not a QTensor is an ndarray (TensorT)
@dataclass(eq=False)
class QTensor:
    """A quantized int8 tensor on the GPU: `buffer` holds `shape` [N, C, H, W] packed in `layout`
    ("4W4C", "4C" or "4C1W"); real value = (q - zero_point) * scale."""

    buffer: Any
    shape: tuple[int, int, int, int]
    layout: str
    scale: float
    zero_point: int
    device: Device = field(repr=False)

    @classmethod
    def from_numpy(
        cls,
        x: np.ndarray,
        scale: float,
        zero_point: int,
        layout: str = "4W4C",
        device: Device | None = None,
    ) -> QTensor:
        """Upload an NCHW int8 array and pack it on the GPU into `layout`."""
        x = check_int8_array("x", x, ndim=4)
        scale = check_scale("scale", scale)
        zero_point = check_zero_point("zero_point", zero_point)
        check_layout("layout", layout)
        dev = get_device(device)
        nbytes = 4 * packed_words(x.shape, layout)
        check_buffer(DeviceLimits.of(dev), "x packed", nbytes)
        if max(x.nbytes, nbytes) > dev.max_binding_size:  # too big for the pack kernel's bindings
            dst = dev.upload(pack(x, layout, zero_point), label="x packed")
        else:
            src = dev.upload(x)
            dst = dev.buffer(nbytes)
            dev.run([pack_pass(dev, src, dst, x.shape, layout, zero_point)])
        n, c, h, w = (int(s) for s in x.shape)
        return cls(dst, (n, c, h, w), layout, scale, zero_point, dev)

    def numpy(self) -> np.ndarray:
        """Unpack on the GPU and read back: NCHW int8."""
        n, c, h, w = self.shape
        total = n * c * h * w
        if max(total, self.nbytes) > self.device.max_binding_size:  # unpacked on the host
            return unpack(self.words(), self.layout, self.shape)
        dst = self.device.buffer(total)
        self.device.run([unpack_pass(self.device, self.buffer, dst, self.shape, self.layout)])
        return np.frombuffer(self.device.read(dst, total), np.int8).reshape(self.shape).copy()

    def words(self) -> np.ndarray:
        """The packed uint32 words as stored on the GPU (for tests and inspection)."""
        n = packed_words(self.shape, self.layout)
        return np.frombuffer(self.device.read(self.buffer, 4 * n), np.uint32).copy()

    @property
    def nbytes(self) -> int:
        return 4 * packed_words(self.shape, self.layout)


# A conv or op's input and output: numpy int8 in, numpy int8 out; QTensor in, QTensor out.
TensorT = TypeVar("TensorT", np.ndarray, QTensor)


# ---- plans --------------------------------------------------------------------------------
# Placeholders in pass specs for the call's input, output and (fused add) residual buffers.
X, Y, R = "x", "y", "residual"


@dataclass
class _Plan:
    """What one input shape and layout needs, built once: scratch buffers and the specs of the
    im2col + GEMM passes (pipeline, resources with X/Y placeholders, workgroups, label)."""

    geo: ConvGeometry
    method: str
    in_layout: str
    out_layout: str
    specs: list
    x_nchw: Any = None  # numpy input: upload buffer, packed input, packed output, readback
    x_packed: Any = None
    out: Any = None
    out_nchw: Any = None
    free_outputs: list = field(default_factory=list)  # QTensor outputs whose owner died
    residual: bool = False  # its epilogue adds a residual (bound per call, role R)
    # (x, y) buffers -> their passes; weak references so a dead buffer's entry is never reused
    # (its id may be), bounded by the few output buffers a plan cycles through.
    _bound: OrderedDict = field(default_factory=OrderedDict)

    def passes(self, dev: Device, x_buf: Any, y_buf: Any, r_buf: Any = None) -> list[Pass]:
        """The passes reading `x_buf` and writing `y_buf` (and reading the residual `r_buf`
        where the plan has a fused add)."""
        key = (id(x_buf), id(y_buf), id(r_buf))
        hit = self._bound.get(key)
        if hit is not None and hit[0]() is x_buf and hit[1]() is y_buf and hit[2]() is r_buf:
            return hit[3]
        if r_buf is None and self.residual:
            raise ValueError("this plan adds a residual: give its buffer")
        bufs = {X: x_buf, Y: y_buf, R: r_buf}
        out = []
        for pipe, res, wgs, label in self.specs:
            bound = [_placeholder(r, bufs) for r in res]
            out.append(Pass(pipe, dev.bind_group(pipe, bound), wgs, label))
        r_ref = weakref.ref(r_buf) if r_buf is not None else (lambda: None)
        self._bound[key] = (weakref.ref(x_buf), weakref.ref(y_buf), r_ref, out)
        while len(self._bound) > 8:
            self._bound.popitem(last=False)
        return out

    def take_output(self, dev: Device) -> Any:
        """A buffer for a QTensor result: reused once the QTensor that held it is gone."""
        if self.free_outputs:
            return self.free_outputs.pop()
        return dev.buffer(4 * packed_words(self.geo.output_shape, self.out_layout), label="y")

    def add_nchw_buffers(self, dev: Device, shape: tuple[int, ...]) -> None:
        """The buffers of numpy calls on inputs of `shape`: NCHW <-> packed conversions run on
        the GPU where each side fits one binding, else on the host (numpy, same bytes)."""
        in_words = packed_words(shape, self.in_layout)
        if max(int(np.prod(shape)), 4 * in_words) <= dev.max_binding_size:
            self.x_nchw = dev.buffer(int(np.prod(shape)), label="x nchw")
        self.x_packed = dev.buffer(4 * in_words, label="x packed")
        self.out = self.take_output(dev)
        out_bytes = 4 * packed_words(self.geo.output_shape, self.out_layout)
        if max(int(np.prod(self.geo.output_shape)), out_bytes) <= dev.max_binding_size:
            self.out_nchw = dev.buffer(int(np.prod(self.geo.output_shape)), label="y nchw")

    def read_output(self, dev: Device) -> np.ndarray:
        """A numpy call's result, read back as NCHW int8 (unpacked on the host where the GPU
        did not unpack it)."""
        shape = self.geo.output_shape
        if self.out_nchw is None:
            words = np.frombuffer(dev.read(self.out, 4 * packed_words(shape, self.out_layout)), np.uint32)
            return unpack(words, self.out_layout, shape)
        data = dev.read(self.out_nchw, int(np.prod(shape)))
        return np.frombuffer(data, np.int8).reshape(shape).copy()


def _placeholder(r: Any, bufs: dict[str, Any]) -> Any:
    """A spec resource with X/Y/R (or a window (X|Y|R, offset, size) of them) made concrete."""
    if isinstance(r, tuple) and isinstance(r[0], str):
        return (bufs[r[0]], *r[1:])
    return bufs[r] if isinstance(r, str) else r


class ConvBuffers:
    """A conv's buffers on the GPU and the making of its plans: prepacked weights (per C_in/groups
    a kernel geometry runs: the weight's own, or zero-padded to align4(C_in)), depthwise-packed
    weights, the per-channel epilogue records, and the planner's pass specs turned into
    pipelines, buffers and uniforms (`realize`)."""

    def __init__(self, device: Device, weight: np.ndarray, groups: int, chan_records: np.ndarray) -> None:
        self.device = device
        self.weight = weight
        self.groups = groups
        self._weights_by_cpg: dict[int, Any] = {}
        self._dw_weights: Any = None
        self._dw_in_aux: Any = None
        self._unused: dict[str, Any] = {}
        self.weights_for(weight.shape[1])
        self.chan_records = chan_records
        self.chan = device.upload(chan_records, label="channel params")

    def plan(
        self,
        spec: ConvSpec,
        geo: ConvGeometry,
        method: str,
        in_layout: str,
        out_layout: str,
        gemm: GemmConfig | None,
        residual: Residual | None = None,
        quantized_input: QuantizedInput | None = None,
        dw_input: tuple[DwInput, ConvBuffers] | None = None,
    ) -> _Plan:
        """The plan of conv `spec` on kernel geometry `geo` with `method` and GEMM configuration
        `gemm` (None: the default), adding `residual` in its epilogue, on a float32 input it
        quantizes itself where `quantized_input` is given, computing a depthwise conv's output as
        its A where `dw_input` is given (that conv and its buffers): the planner's pass specs,
        realized."""
        limits = DeviceLimits.of(self.device)
        conv_plan = plan_passes(
            spec, geo, method, in_layout, out_layout, gemm, limits, residual, quantized_input,
            None if dw_input is None else dw_input[0],
        )  # fmt: skip
        extra = {} if dw_input is None else {"dw_aux": dw_input[1].dw_in_aux()}
        specs = self.realize(conv_plan, extra)
        return _Plan(geo, method, in_layout, out_layout, specs, residual=residual is not None)

    def realize(
        self, conv_plan: ConvPlan, extra: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, list[Any], tuple[int, int, int], str]]:
        """The planner's pass specs as (pipeline, resources, workgroups, label): roles bound to
        this conv's buffers (X and Y stay placeholders for each call's tensors) or to `extra`'s
        (role -> buffer), scratch buffers made, uniforms uploaded (cached by content)."""
        dev = self.device
        extra = extra or {}
        labels = {"a": "im2col A"}
        scratch = {
            role: dev.buffer(nbytes, label=labels.get(role, "split-K partials"))
            for role, nbytes in conv_plan.scratch.items()
        }

        def resource(r: Bound | UniformData) -> Any:
            if isinstance(r, UniformData):
                return dev.uniform(np.array(r.words, np.uint32))
            fixed = {"x": X, "y": Y, "residual": R, "chan": self.chan}
            if r.role in fixed:
                base = fixed[r.role]
            elif r.role == "weights":
                base = self.weights_for(r.cin_pg)
            elif r.role == "weights_dw":
                base = self.depthwise_weights()
            elif r.role in ("unused", "unused_read"):
                base = self.unused(r.role)
            elif r.role in extra:
                base = extra[r.role]
            else:
                base = scratch[r.role]
            return base if r.offset is None else (base, r.offset, r.size)

        out = []
        for spec in conv_plan.specs:
            given = {name: resource(r) for name, r in spec.bindings}
            try:
                resources = dev.library.ordered(spec.kernel, given)  # in the kernel's @binding order
            except ValueError as e:
                raise ValueError(f"pass {spec.label}: {e}") from None
            out.append(
                (dev.pipeline(spec.kernel, dict(spec.constants)), resources, spec.workgroups, spec.label)
            )
        return out

    def depthwise_weights(self) -> Any:
        """The weights packed for depthwise_4w4c.wgsl (prepack_depthwise), made on first use."""
        if self._dw_weights is None:
            packed = prepack_depthwise(self.weight)
            limits = DeviceLimits.of(self.device)
            check_buffer(limits, "the depthwise weights", packed.nbytes)
            check_binding(limits, "the depthwise weights", packed.nbytes)
            self._dw_weights = self.device.upload(packed, label="depthwise weights")
        return self._dw_weights

    def dw_in_aux(self) -> Any:
        """This depthwise conv's epilogue records and then its depthwise-packed weights in one
        buffer, as kernels/dw_in.wgsl reads them (a 1x1 conv computing this conv's output as its
        A binds them as one storage buffer: the GEMM has 8 storage bindings at most)."""
        if self._dw_in_aux is None:
            packed = np.concatenate(
                [self.chan_records.reshape(-1), prepack_depthwise(self.weight).reshape(-1)]
            )
            check_binding(DeviceLimits.of(self.device), "the depthwise records and weights", packed.nbytes)
            self._dw_in_aux = self.device.upload(packed, label="depthwise records and weights")
        return self._dw_in_aux

    def weights_for(self, cin_pg: int) -> Any:
        """The prepacked weights for a kernel geometry of `cin_pg` input channels per group:
        the weight's own, or for kernel_geometry's padded C_in the weight with zero channels
        appended (the same sums, so the same channel parameters)."""
        buf = self._weights_by_cpg.get(cin_pg)
        if buf is None:
            c_out, cpg, kh, kw = self.weight.shape
            weight = self.weight
            if cin_pg != cpg:
                weight = np.zeros((c_out, cin_pg, kh, kw), np.int8)
                weight[:, :cpg] = self.weight
            packed = prepack_weights(weight, self.groups)
            check_buffer(DeviceLimits.of(self.device), "the prepacked weights", packed.nbytes)
            label = "weights" if cin_pg == cpg else "weights (padded C_in)"
            buf = self._weights_by_cpg[cin_pg] = self.device.upload(packed, label=label)
        return buf

    def unused(self, role: str = "unused") -> Any:
        """A tiny storage buffer for bindings a kernel variant does not use, one per role
        ("unused": read-write bindings, "unused_read": read-only ones)."""
        buf = self._unused.get(role)
        if buf is None:
            buf = self._unused[role] = self.device.buffer(16, label=role)
        return buf


class QConv2d:
    """A quantized conv2d with prepacked weights, called as `conv(x)`.

    Args:
        weight: int8 [C_out, C_in/groups, KH, KW], symmetric (zero point 0).
        weight_scales: float32 [C_out], > 0: real weight = weight * weight_scales[oc].
        bias: float32 [C_out] (real units, added after scaling) or None.
        input_scale, input_zero_point: the input's quantization (scale > 0, zp in [-128, 127]).
        tune: measure GEMM tile/split-K configurations (and, with method="auto", the valid
            methods) for each new input shape on this adapter and keep the fastest; choices are
            cached per adapter on disk (see q8ta_wgpu.tuning). Default: $Q8TA_WGPU_TUNE == "1".
        **options: `ConvOptions`: output_scale and output_zero_point (required), stride,
            padding, dilation, groups, activation, method, output_layout, device.

    Calling with numpy int8 [N, C_in, H, W] returns numpy int8 [N, C_out, H_out, W_out]; calling
    with a QTensor returns a QTensor on the GPU (nothing is read back), so layers chain.
    Weights, weight sums, pipelines, bind groups and scratch buffers are made once per input
    shape and reused by later calls. Calls from several threads are serialized by the device's
    lock (`Device.lock`).

    Raises TypeError (wrong type or dtype) or ValueError (wrong shape, value or combination),
    naming the argument and the rule, before any GPU work; KernelError if a kernel fails to
    compile or validate; DeviceLostError once the device is gone.
    """

    PLAN_CACHE_SIZE = 8
    MAX_DISPATCH_MBLOCKS = MAX_DISPATCH_MBLOCKS

    def __init__(
        self,
        weight: np.ndarray,
        weight_scales: np.ndarray,
        bias: np.ndarray | None = None,
        *,
        input_scale: float,
        input_zero_point: int,
        tune: bool | None = None,
        **options: Unpack[ConvOptions],
    ) -> None:
        check_keywords("QConv2d.__init__", options, ConvOptions)
        self.weight = check_int8_array("weight", weight, ndim=4).copy()
        c_out = self.weight.shape[0]
        self.weight_scales = check_float_vector("weight_scales", weight_scales, c_out, positive=True)
        self.bias = None if bias is None else check_float_vector("bias", bias, c_out)
        # Every other argument, checked: what the planner needs of this conv besides the input shape.
        self.spec = spec = ConvSpec.checked(
            self.weight.shape, input_scale=input_scale, input_zero_point=input_zero_point, **options
        )
        self.input_scale, self.input_zero_point = spec.input_scale, spec.input_zero_point
        self.output_scale, self.output_zero_point = spec.output_scale, spec.output_zero_point
        self.stride, self.padding, self.dilation = spec.stride, spec.padding, spec.dilation
        self.groups, self.activation = spec.groups, spec.activation
        self.method, self.output_layout = spec.method, spec.output_layout
        self.device = get_device(options.get("device"))
        # Prepacked weights (the weight's own made here, so a weight too big for the device fails
        # at construction), epilogue records, and the plans' specs made GPU objects.
        self.buffers = ConvBuffers(self.device, self.weight, self.groups, _channel_params(
            weight_sums(self.weight), self.input_scale, self.weight_scales, self.bias, self.output_scale,
            int(np.prod(self.weight.shape[1:])),
        ))  # fmt: skip
        self._plans: OrderedDict[tuple, _Plan] = OrderedDict()
        # A GEMM configuration forced on this conv's plans (dict form of planner.GemmConfig), set
        # before its first call: for tests and probes that time or check one configuration.
        self.gemm_override: dict[str, Any] | None = None
        # tune: measure GEMM configurations and methods per shape on this adapter (tuning.py).
        self.tune = bool(tune) if tune is not None else os.environ.get(tuning.TUNE_ENV, "") == "1"
        self._tuned: dict[ConvGeometry, dict[str, Any]] = {}

    def __repr__(self) -> str:
        c_out, cpg, kh, kw = self.weight.shape
        return (
            f"QConv2d({cpg * self.groups}, {c_out}, kernel=({kh}, {kw}), stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
            f"activation={self.activation!r}, method={self.method!r})"
        )

    # -- planning --
    def geometry(self, input_shape: tuple[int, ...]) -> ConvGeometry:
        """The conv's sizes for an input of NCHW `input_shape` (checks it fits the weight)."""
        return self.spec.geometry(input_shape)

    def _chosen_gemm(self, geo: ConvGeometry) -> GemmConfig | None:
        """The GEMM configuration forced (gemm_override) or measured (tuned, cached or shipped)
        for kernel geometry `geo`; None: the planner's default."""
        chosen = self.gemm_override if self.gemm_override is not None else self._tuned.get(geo)
        return GemmConfig.from_dict(chosen) if chosen else None

    def gemm_config(self, geo: ConvGeometry, m_count: int) -> dict[str, Any]:
        """The GEMM configuration (dict form) that runs `m_count` m-blocks of kernel geometry
        `geo`: forced or measured where the tiled kernel serves the conv, else the default."""
        return gemm_config_for(geo, m_count, self._chosen_gemm(geo), DeviceLimits.of(self.device)).to_dict()

    def candidate_passes(
        self, geo: ConvGeometry, method: str, in_layout: str, gemm: GemmConfig | None, x_buf: Any, y_buf: Any
    ) -> list[Pass]:
        """The passes of kernel geometry `geo` with `method` and GEMM configuration `gemm`
        (None: the default) reading `x_buf` and writing 4W4C `y_buf`: what the tuner times."""
        plan = self.buffers.plan(self.spec, geo, method, in_layout, "4W4C", gemm)
        return plan.passes(self.device, x_buf, y_buf)

    def _measured_choice(self, geo: ConvGeometry, in_layout: str) -> dict[str, Any] | None:
        """The measured {"method", "gemm"} for kernel geometry `geo`: tuned now (tune=True), else
        cached or shipped for this adapter model; None where there is none, or where the current
        kernels or this device cannot take it (re-decided)."""
        choice: dict[str, Any] | None
        if self.tune and self.device.has_timestamps:
            choice = tuning.tune(self, geo, in_layout)
        else:
            choice = tuning.lookup(self.device, tuning.shape_key(self, geo, in_layout))
        runs = choice and runnable_gemm(choice.get("gemm"), DeviceLimits.of(self.device), geo)
        return choice if runs else None

    def chosen_method(self, shape: tuple[int, ...], in_layout: str) -> str:
        """The method a plan for inputs of `shape` in `in_layout` runs: the measured choice's
        (its GEMM configuration kept for the plan), else the planner's untuned one; nothing is
        planned or compiled."""
        geo = kernel_geometry(self.geometry(shape), in_layout)
        resolve_method(self.method, geo, in_layout)  # (a method the conv cannot take raises)
        choice = self._measured_choice(geo, in_layout)
        if choice:
            self._tuned[geo] = choice["gemm"]
            return str(choice["method"])
        self._tuned.pop(geo, None)  # none (any more): the planner's default
        return untuned_method(self.method, geo, in_layout, DeviceLimits.of(self.device))

    def plan(
        self,
        shape: tuple[int, ...],
        in_layout: str,
        numpy_in: bool,
        residual: Residual | None = None,
        quantized_input: QuantizedInput | None = None,
        dw: tuple[QConv2d, tuple[int, ...]] | None = None,
    ) -> _Plan:
        """The cached plan for inputs of `shape` in `in_layout` (numpy_in: read back as numpy),
        with `residual` added in its epilogue (a net's fused add; QTensor inputs only); with
        `quantized_input`, for a float32 NCHW input of `shape` that the conv quantizes itself (a
        net's first conv, where its method is patch_4w4c: else a ValueError); with `dw` = (a
        depthwise conv, its 4W4C input's shape), for that conv's output (of `shape`) computed by
        this 1x1 conv's GEMM from that input, which the plan's passes then read (planner.DwInput;
        a ValueError where this conv does not run the tiled pointwise GEMM on it)."""
        if (residual is not None or quantized_input is not None or dw is not None) and numpy_in:
            raise ValueError(
                "a residual, a quantized input or a depthwise input is fused into QTensor calls only"
            )
        key = (tuple(shape), in_layout, numpy_in, residual, quantized_input, dw)
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
            return plan
        geo = kernel_geometry(self.geometry(shape), in_layout)
        method = self.chosen_method(shape, in_layout)
        out_layout = "4W4C" if numpy_in else self.output_layout
        # Over one binding, the input and output are bound as windows of rows (_split.py); over
        # max-buffer-size they cannot exist (numpy calls are split over the batch first).
        out_bytes = 4 * packed_words(geo.output_shape, out_layout)
        check_buffer(DeviceLimits.of(self.device), "the output", out_bytes)
        dw_input, gemm = None, self._chosen_gemm(geo)
        if dw is not None:
            dw_conv, dw_shape = dw
            dw_geo = kernel_geometry(dw_conv.geometry(dw_shape), "4W4C")
            dw_input = (DwInput(dw_conv.spec, dw_geo), dw_conv.buffers)
            gemm = gemm if self.gemm_override is not None else dw_in_gemm_config(geo.K // 4)
        plan = self.buffers.plan(
            self.spec, geo, method, in_layout, out_layout, gemm, residual, quantized_input, dw_input
        )
        if numpy_in:
            plan.add_nchw_buffers(self.device, shape)
        self._plans[key] = plan
        while len(self._plans) > self.PLAN_CACHE_SIZE:
            self._plans.popitem(last=False)
        return plan

    # -- calling --
    def passes(self, x: np.ndarray | QTensor) -> tuple[_Plan, list[Pass], Any]:
        """The plan, the GPU passes one call on `x` runs and the packed output buffer they write.
        Uploads a numpy input; for a QTensor input takes an output buffer from the plan's pool."""
        dev = self.device
        if isinstance(x, QTensor):
            if x.device is not dev:
                raise ValueError(
                    f"x is a QTensor of another Device ({x.device!r}) than this conv's device "
                    f"({dev!r}); tensors cannot move between devices, upload x to the conv's device"
                )
            if x.zero_point != self.input_zero_point or x.scale != self.input_scale:
                raise ValueError(
                    f"x has scale {x.scale} and zero point {x.zero_point}; this conv expects "
                    f"input_scale {self.input_scale} and input_zero_point {self.input_zero_point}"
                )
            plan = self.plan(x.shape, x.layout, False)
            y = plan.take_output(dev)
            return plan, plan.passes(dev, x.buffer, y), y
        x = check_int8_array("x", x, ndim=4)
        plan = self.plan(x.shape, "4W4C", True)
        pre, post = [], []
        if plan.x_nchw is None:  # over one binding: packed on the host
            dev.write(plan.x_packed, pack(x, "4W4C", self.input_zero_point))
        else:
            dev.write(plan.x_nchw, x)
            pre = [pack_pass(dev, plan.x_nchw, plan.x_packed, x.shape, "4W4C", self.input_zero_point)]
        if plan.out_nchw is not None:  # else unpacked on the host after the readback
            post = [unpack_pass(dev, plan.out, plan.out_nchw, plan.geo.output_shape, "4W4C")]
        return plan, [*pre, *plan.passes(dev, plan.x_packed, plan.out), *post], plan.out

    def __call__(self, x: TensorT) -> TensorT:
        """Run the conv on x (numpy int8 NCHW -> numpy int8; QTensor -> QTensor)."""
        dev = self.device
        if not isinstance(x, QTensor):
            x = check_int8_array("x", x, ndim=4)
            if (
                x.shape,
                "4W4C",
                True,
                None,
                None,
                None,
            ) not in self._plans:  # (a cached plan's buffers exist)
                # Per-call buffers over max-buffer-size: run n_fit samples at a time.
                n_fit = _split.batch_size_that_fits(dev, self.geometry(x.shape), "4W4C")
                if n_fit < x.shape[0]:
                    return np.concatenate([self(x[i : i + n_fit]) for i in range(0, x.shape[0], n_fit)])
        with dev.lock:
            plan, passes, y = self.passes(x)
            dev.run(passes)
            if not isinstance(x, QTensor):
                return plan.read_output(dev)
            shape = plan.geo.output_shape
            out = QTensor(y, shape, self.output_layout, self.output_scale, self.output_zero_point, dev)
            weakref.finalize(out, plan.free_outputs.append, y)
            return out


def geo_input_shape(geo: ConvGeometry) -> tuple[int, int, int, int]:
    return (geo.N, geo.C_in, geo.H, geo.W)


def conv2d(
    x: TensorT,
    weight: np.ndarray,
    weight_scales: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    input_scale: float | None = None,
    input_zero_point: int | None = None,
    **options: Unpack[ConvOptions],
) -> TensorT:
    """Quantized conv2d: int8 x [N, C_in, H, W] -> int8 [N, C_out, H_out, W_out].

    x is numpy int8 (then input_scale and input_zero_point are required, and numpy comes back)
    or a QTensor (its scale and zero point are used when those are None, and its device when
    device is; a QTensor comes back in `output_layout`). `ConvOptions` documents the options,
    `QConv2d` the other arguments, `q8ta_wgpu.reference.conv2d` the exact math.
    """
    check_keywords("conv2d", options, ConvOptions)
    if isinstance(x, QTensor):
        if input_scale is None:
            input_scale = x.scale
        if input_zero_point is None:
            input_zero_point = x.zero_point
        if options.get("device") is None:
            options["device"] = x.device
    elif input_scale is None or input_zero_point is None:
        raise TypeError("input_scale and input_zero_point are required for a numpy input x")
    conv = QConv2d(
        weight, weight_scales, bias, input_scale=input_scale, input_zero_point=input_zero_point, **options
    )
    return conv(x)


def im2col(
    x: np.ndarray,
    kernel_size: int | tuple[int, int],
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    input_zero_point: int = 0,
    method: str = "auto",
    input_layout: str = "4W4C",
    device: Device | None = None,
) -> np.ndarray:
    """The GPU's im2col matrix of x (numpy int8 [N, C_in, H, W]) as numpy int8 [M, K]:
    M = N*H_out*W_pad rows (row (n*H_out + h_out)*W_pad + w_out), K = groups*K_per_group
    columns, exactly as `q8ta_wgpu.reference.im2col`. method: "auto", "im2col_4w4c" or
    "im2col_generic"; input_layout: the packed layout the kernel reads."""
    x = check_int8_array("x", x, ndim=4)
    zp = check_zero_point("input_zero_point", input_zero_point)
    kh, kw = pair("kernel_size", kernel_size, minimum=1)
    check_layout("input_layout", input_layout)
    if method not in ("auto", "im2col_4w4c", "im2col_generic"):
        raise ValueError(f"method must be 'auto', 'im2col_4w4c' or 'im2col_generic', got {method!r}")
    g = groups if isinstance(groups, int) and groups >= 1 else 1
    geo = ConvGeometry.make(
        x.shape,
        (g, x.shape[1] // g if x.shape[1] % g == 0 else 0, kh, kw),
        stride=stride, padding=padding, dilation=dilation, groups=groups,
    )  # fmt: skip
    dev = get_device(device)
    if method == "auto":
        method = "im2col_4w4c" if input_layout == "4W4C" and geo.C_in_per_group % 4 == 0 else "im2col_generic"
    else:
        method = resolve_method(method, geo, input_layout)
    k4 = geo.K // 4
    m_blocks = geo.m_blocks
    check_binding(DeviceLimits.of(dev), "the im2col matrix", 16 * k4 * m_blocks)
    src = dev.upload(x)
    packed = dev.buffer(4 * packed_words(x.shape, input_layout))
    a = dev.buffer(16 * k4 * m_blocks)
    consts, threads = im2col_pass_shape(dev.on_cpu, method, m_blocks, k4)
    pipe = dev.pipeline(f"{method}.wgsl", consts)
    params = {
        "d": dev.uniform(tensor_desc(x.shape, input_layout, zp)),
        "p": dev.uniform(conv_params(geo, 0, m_blocks)),
    }
    bg = dev.bind(f"{method}.wgsl", pipe, {"src": packed, "dst": a, **params})
    dev.run(
        [
            pack_pass(dev, src, packed, x.shape, input_layout, zp),
            Pass(pipe, bg, dev.workgroups(-(-threads // consts["WG"])), method),
        ]
    )
    blocks = np.frombuffer(dev.read(a, 16 * k4 * m_blocks), np.int8).reshape(m_blocks, k4, 4, 4)
    return np.ascontiguousarray(blocks.transpose(0, 2, 1, 3)).reshape(m_blocks * 4, k4 * 4)
