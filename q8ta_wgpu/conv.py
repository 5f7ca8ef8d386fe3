"""Quantized conv2d on the GPU: QTensor (a GPU-resident int8 tensor), QConv2d (prepacked weights,
cached plans) and the functional `conv2d` / `im2col`.

A call runs, in one command buffer: [pack NCHW -> 4W4C] (numpy input only), im2col (generic or
4W4C kernel; none for pointwise convs), the int8 GEMM with its requantize epilogue writing the
chosen output layout, [unpack -> NCHW] (numpy input only). Work too big for one storage binding
is split (_split.py): the im2col matrix into chunks of m-blocks, the input and output into
windows of rows, the weights into slices of output channels; numpy calls too big for one buffer
run over slices of the batch.
"""

from __future__ import annotations

import dataclasses
import os
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, overload

import numpy as np

from . import _split, tuning
from ._checks import (
    check_float_vector,
    check_int8_array,
    check_scale,
    check_scale_product,
    check_zero_point,
)
from .geometry import ConvGeometry, align4, ceil4, pair
from .layouts import check_layout, pack, pack_pass, packed_words, tensor_desc, unpack, unpack_pass
from .runtime import Device, Pass, get_device
from .uniforms import CHAN, CONV_PARAMS, GEMM_PARAMS, TENSOR_DESC

METHODS = ("auto", "im2col_4w4c", "im2col_generic", "pointwise", "implicit_4w4c", "depthwise_4w4c")
ACTIVATIONS = ("none", "relu")
# int32 accumulation is exact while K_per_group < 2^16 (see kernels/gemm_q8.wgsl).
MAX_K_PER_GROUP = 1 << 16


# ---- weights ------------------------------------------------------------------------------
class TiledKernel(NamedTuple):
    """The structure of a tiled GEMM kernel (shared-memory stages, split-K, implicit), which
    decides what a configuration (WG_M, WG_N, BK and, where the kernel takes them, TM, TN) asks
    of the device."""

    tm: int  # m-blocks per thread (the tile has tm*WG_M); the TM constant's default
    tn: int  # channel blocks per thread (the tile has tn*WG_N); the TN constant's default
    loads: int  # most global loads per thread per stage, for A and for W
    k_groups: int = 1  # thread groups splitting each tile's K, reduced in shared memory
    buffers: int = 1  # shared-memory copies of a stage (2: double-buffered; 0: none)
    bk_multiple: int = 1  # BK must be a multiple of this (the k-block loop's unrolling)
    tile_choices: tuple[int, ...] = ()  # values the TM and TN constants may take (): fixed

    def threads(self, wg_m: int, wg_n: int) -> int:
        return wg_m * wg_n * self.k_groups

    def workgroup_bytes(self, wg_m: int, wg_n: int, bk: int) -> int:
        """Shared memory: per k-group and buffer, a stage of BK rows of tm*WG_M (A) and tn*WG_N
        (W) vec4 blocks, each row padded by one; with k-groups, a reduction area of one 4x4
        accumulator block per thread of each k-group past the first."""
        stage = 16 * bk * (self.tm * wg_m + 1 + self.tn * wg_n + 1)
        return self.k_groups * self.buffers * stage + (self.k_groups - 1) * wg_m * wg_n * 4 * 16


# Tiled GEMM kernels by file (or registered shader name: register_tiled_kernel).
TILED_KERNELS: dict[str, TiledKernel] = {
    "gemm_q8_tiled.wgsl": TiledKernel(tm=2, tn=2, loads=8, bk_multiple=2, tile_choices=(1, 2))
}


def register_tiled_kernel(name: str, structure: TiledKernel) -> None:
    """Declare the tile structure of a tiled GEMM variant registered with the shader library
    (a probe's), so that GEMM configurations can name it (idempotent for the same structure)."""
    old = TILED_KERNELS.get(name)
    if old is not None and old != structure:
        raise ValueError(f"tiled kernel {name!r} is already registered with structure {old}")
    TILED_KERNELS[name] = structure


# im2col_4w4c.wgsl's layout of work, by adapter type, as measured (bench/results/archive/2026-11-24_analysis_H100.md):
# - GPUs: 128-thread workgroups, a thread's blocks WG apart (SPREAD), so a warp's stores stay
#   contiguous; 2 blocks a thread from SPREAD_RUN2_BLOCKS blocks (8 MiB of A) on. On the H100,
#   128 threads were 10-14% faster than 64 on 1-50 MiB matrices; 2 blocks a thread gained 3-6%
#   more from 12 MiB on and lost 3-5% below 2 MiB. Consecutive runs were worse (spec17: 61%
#   of copy bandwidth with 4 blocks vs 85% with 1).
# - CPU adapters (lavapipe): 64 threads, 8 consecutive k-blocks a thread, the position stepped
#   instead of divided (spec13: 60% of copy with 8 vs 28% with 1; 8 spread apart: 1.7x slower).
IM2COL_4W4C = {"gpu": {"WG": 128, "RUN": 1, "SPREAD": True}, "cpu": {"WG": 64, "RUN": 8, "SPREAD": False}}
SPREAD_RUN2_BLOCKS = 1 << 19
# depthwise_4w4c.wgsl: threads a workgroup (one 4x4 output block a thread; 64 and 128 measured
# the same on the H100), and by adapter type the most taps whose loops are unrolled for the
# kernel's size (a pipeline per size; bigger kernels loop over the size in the uniform). On the
# H100 unrolled loops were up to 18% faster; on lavapipe 1.0x to 1.2x slower (bench/results/archive/2026-11-24_analysis_H100.md).
DEPTHWISE_WG = 64
DEPTHWISE_UNROLL_TAPS = {"gpu": 49, "cpu": 0}


def im2col_pass_shape(dev: Device, method: str, m_blocks: int, k4: int) -> tuple[dict[str, Any], int]:
    """Override constants and thread count of the im2col kernel `method` for m_blocks x k4
    blocks: im2col_4w4c runs RUN blocks per thread (IM2COL_4W4C), im2col_generic one."""
    if method == "im2col_4w4c":
        consts = dict(IM2COL_4W4C["cpu" if dev.on_cpu else "gpu"])
        if consts["SPREAD"]:
            if m_blocks * k4 >= SPREAD_RUN2_BLOCKS:
                consts["RUN"] = max(consts["RUN"], 2)
            return consts, -(-m_blocks * k4 // consts["RUN"])
        return consts, m_blocks * -(-k4 // consts["RUN"])
    return {"WG": 64}, m_blocks * k4


def tiled_kernel(kernel: str, consts: Mapping[str, Any]) -> TiledKernel:
    """The structure of tiled kernel `kernel` under override constants `consts` (its TM, TN)."""
    k = TILED_KERNELS[kernel]
    if not k.tile_choices:
        return k
    return k._replace(tm=int(consts.get("TM", k.tm)), tn=int(consts.get("TN", k.tn)))


def tiled_config_error(
    dev: Device, consts: Mapping[str, Any], kernel: str = "gemm_q8_tiled.wgsl"
) -> str | None:
    """Why `kernel` cannot run with override constants `consts` (WG_M x WG_N threads, BK k-blocks
    a stage, TM x TN blocks a thread) on `dev`, or None. The device's workgroup limits are checked
    here because wgpu does not check shared memory sized by override constants: a kernel over
    the limit compiles, and on the H100 its dispatch hung the device."""
    base = TILED_KERNELS[kernel]
    for name in ("TM", "TN"):
        if name in consts and int(consts[name]) not in base.tile_choices:
            return f"{name} {consts[name]} is not one of {base.tile_choices or 'none (fixed tile)'}"
    k = tiled_kernel(kernel, consts)
    wg_m, wg_n, bk = int(consts["WG_M"]), int(consts["WG_N"]), int(consts["BK"])
    if bk < 1 or bk % k.bk_multiple:
        return f"BK {bk} is not a positive multiple of {k.bk_multiple}"
    # Each thread prefetches its share of a stage (BK x tm*WG_M A blocks and BK x tn*WG_N W
    # blocks over WG_M*WG_N threads) into a fixed number of named registers.
    nt = wg_m * wg_n
    if -(-bk * k.tm * wg_m // nt) > k.loads or -(-bk * k.tn * wg_n // nt) > k.loads:
        return "too many loads per thread a stage"
    threads = k.threads(wg_m, wg_n)
    most = min(
        dev.limits["max-compute-invocations-per-workgroup"], dev.limits["max-compute-workgroup-size-x"]
    )
    if threads > most:
        return f"{threads} threads a workgroup, over the device's {most}"
    need, have = k.workgroup_bytes(wg_m, wg_n, bk), dev.limits["max-compute-workgroup-storage-size"]
    if need > have:
        return f"{need} bytes of workgroup memory, over the device's {have}"
    return None


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
    wsum: np.ndarray, input_scale: float, weight_scales: np.ndarray, bias: np.ndarray | None
) -> np.ndarray:
    """Per-channel epilogue records (uniforms.CHAN), padded to 4 channels, as uint32 words."""
    c_out = wsum.size
    rec = np.zeros(ceil4(c_out) * 4, CHAN.dtype)
    rec["wsum"][:c_out] = wsum.astype(np.int32)
    rec["scale"][:c_out] = check_scale_product(input_scale, weight_scales)  # one float32 product each
    if bias is not None:
        rec["bias"][:c_out] = bias.astype(np.float32)
    return rec.view(np.uint32).reshape(-1, CHAN.words)


# ---- GPU tensors --------------------------------------------------------------------------
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
        _check_buffer(dev, "x packed", nbytes)
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


# ---- plans --------------------------------------------------------------------------------
X, Y = "x", "y"  # placeholders in pass specs for the call's input and output buffers


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
    # (x, y) buffers -> their passes; weak references so a dead buffer's entry is never reused
    # (its id may be), bounded by the few output buffers a plan cycles through.
    _bound: OrderedDict = field(default_factory=OrderedDict)

    def passes(self, dev: Device, x_buf: Any, y_buf: Any) -> list[Pass]:
        key = (id(x_buf), id(y_buf))
        hit = self._bound.get(key)
        if hit is not None and hit[0]() is x_buf and hit[1]() is y_buf:
            return hit[2]
        out = []
        for pipe, res, wgs, label in self.specs:
            bound = [_placeholder(r, x_buf, y_buf) for r in res]
            out.append(Pass(pipe, dev.bind_group(pipe, bound), wgs, label))
        self._bound[key] = (weakref.ref(x_buf), weakref.ref(y_buf), out)
        while len(self._bound) > 8:
            self._bound.popitem(last=False)
        return out

    def take_output(self, dev: Device) -> Any:
        """A buffer for a QTensor result: reused once the QTensor that held it is gone."""
        if self.free_outputs:
            return self.free_outputs.pop()
        return dev.buffer(4 * packed_words(self.geo.output_shape, self.out_layout), label="y")


def _placeholder(r: Any, x_buf: Any, y_buf: Any) -> Any:
    """A spec resource with X/Y (or a window (X|Y, offset, size) of them) made concrete."""
    if isinstance(r, tuple) and (r[0] is X or r[0] is Y):
        return (x_buf if r[0] is X else y_buf, *r[1:])
    return x_buf if r is X else y_buf if r is Y else r


def _rebind(specs: list, subs: list[tuple[Any, Any]]) -> list:
    """Pass specs with resources replaced by identity (old, new): e.g. the whole weights by a
    window of them, Y by a window of the output."""
    out = []
    for pipe, res, wgs, label in specs:
        res = [next((new for old, new in subs if r is old), r) for r in res]
        out.append((pipe, res, wgs, label))
    return out


def _conv_params(geo: ConvGeometry, mb_base: int, m_count: int) -> np.ndarray:
    k_pg = geo.K_per_group
    return CONV_PARAMS.pack(
        h_out=geo.H_out, w_out=geo.W_out, w4_out=ceil4(geo.W_out), k4=geo.K // 4,
        kh=geo.KH, kw=geo.KW, stride_h=geo.stride[0], stride_w=geo.stride[1],
        pad_h=geo.padding[0], pad_w=geo.padding[1], dil_h=geo.dilation[0], dil_w=geo.dilation[1],
        cin_pg=geo.C_in_per_group, taps_pg=geo.KH * geo.KW * geo.C_in_per_group, k_pg=k_pg,
        mb_base=mb_base, m_count=m_count,
    )  # fmt: skip


def kernel_geometry(geo: ConvGeometry, in_layout: str) -> ConvGeometry:
    """The geometry the kernels run for conv `geo` on an input in `in_layout`.

    With groups == 1 and C_in % 4 != 0 (e.g. an RGB input), a 4W4C tensor already holds
    align4(C_in) channels, the extra slots the zero point: the conv runs as one of align4(C_in)
    input channels whose extra weights are 0, which gives the same integers whatever the
    slots hold. The 4W4C kernels (word gathers, the implicit GEMM, pointwise) then serve it
    instead of the byte-by-byte im2col_generic, for a longer K (a 3x3 RGB conv: 36 columns
    instead of 28; 1x1: 4 either way). Other layouts, and grouped convs, keep C_in."""
    if geo.groups == 1 and geo.C_in % 4 and in_layout == "4W4C":
        return dataclasses.replace(geo, C_in=align4(geo.C_in))
    return geo


def _resolve_method(method: str, geo: ConvGeometry, in_layout: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    fits_4w4c = in_layout == "4W4C" and geo.C_in_per_group % 4 == 0
    if method == "auto":
        if in_layout == "4W4C" and geo.is_pointwise:
            return "pointwise"
        if in_layout == "4W4C" and geo.is_depthwise:
            return "depthwise_4w4c"
        return "im2col_4w4c" if fits_4w4c else "im2col_generic"
    if method == "depthwise_4w4c" and not (in_layout == "4W4C" and geo.is_depthwise):
        raise ValueError(
            "method 'depthwise_4w4c' needs a 4W4C input and one input and one output channel per "
            f"group (groups == C_in == C_out) (input layout {in_layout}, C_in/groups = "
            f"{geo.C_in_per_group}, C_out/groups = {geo.C_out_per_group})"
        )
    if method == "im2col_4w4c" and not fits_4w4c:
        raise ValueError(
            "method 'im2col_4w4c' needs a 4W4C input and C_in/groups % 4 == 0 (a conv with "
            f"groups == 1 takes any C_in) (input layout {in_layout}, C_in/groups = "
            f"{geo.C_in_per_group}); use 'im2col_generic'"
        )
    if method == "pointwise" and not (in_layout == "4W4C" and geo.is_pointwise):
        raise ValueError(
            "method 'pointwise' needs a 1x1 kernel, stride 1, padding 0, a 4W4C input and "
            "groups == 1 or C_in/groups % 4 == 0"
        )
    if method == "implicit_4w4c" and not (fits_4w4c and (geo.groups == 1 or geo.C_out_per_group % 4 == 0)):
        raise ValueError(
            "method 'implicit_4w4c' needs a 4W4C input, C_in/groups % 4 == 0 and groups == 1 or "
            f"C_out/groups % 4 == 0 (input layout {in_layout}, C_in/groups = "
            f"{geo.C_in_per_group}, C_out/groups = {geo.C_out_per_group})"
        )
    return method


def valid_methods(geo: ConvGeometry, in_layout: str = "4W4C") -> list[str]:
    """Every method (other than "auto") that can run this conv on an input in `in_layout`."""
    geo = kernel_geometry(geo, in_layout)
    out = []
    for m in METHODS[1:]:
        try:
            _resolve_method(m, geo, in_layout)
        except ValueError:
            continue
        out.append(m)
    return out


def _check_buffer(dev: Device, what: str, nbytes: int) -> None:
    if nbytes > dev.max_buffer_size:
        raise ValueError(
            f"{what} needs {nbytes} bytes in one buffer; this adapter ({dev.name}) allows "
            f"{dev.max_buffer_size} (max-buffer-size)"
        )


def _check_binding(dev: Device, what: str, nbytes: int) -> None:
    if nbytes > dev.max_binding_size:
        raise ValueError(
            f"{what} needs {nbytes} bytes in one storage binding; this adapter ({dev.name}) "
            f"allows {dev.max_binding_size} (max-storage-buffer-binding-size)"
        )


class QConv2d:
    """A quantized conv2d with prepacked weights, called as `conv(x)`.

    Args:
        weight: int8 [C_out, C_in/groups, KH, KW], symmetric (zero point 0).
        weight_scales: float32 [C_out], > 0: real weight = weight * weight_scales[oc].
        bias: float32 [C_out] (real units, added after scaling) or None.
        input_scale, input_zero_point: the input's quantization (scale > 0, zp in [-128, 127]).
        output_scale, output_zero_point: the output's quantization.
        stride, padding, dilation: int or (h, w); groups: int dividing C_in and C_out.
        activation: "none" or "relu" (fused before requantization).
        method: "auto", "im2col_4w4c", "im2col_generic", "pointwise" (1x1 convs: the 4W4C input
            is the im2col matrix), "implicit_4w4c" (one fused kernel: the GEMM gathers im2col
            blocks from the 4W4C input while filling its tiles; no im2col matrix in memory) or
            "depthwise_4w4c" (groups == C_in == C_out: one kernel reads the 4W4C input, no GEMM).
            "auto" takes pointwise for 1x1 convs, depthwise_4w4c for depthwise ones, else a
            measured choice (tuning.py) or im2col_4w4c where it applies.
        output_layout: layout of QTensor results ("4W4C", "4C" or "4C1W").
        device: a q8ta_wgpu.Device (default: the process-wide one).
        tune: measure GEMM tile/split-K configurations (and, with method="auto", the valid
            methods) for each new input shape on this adapter and keep the fastest; choices are
            cached per adapter on disk (see q8ta_wgpu.tuning). Default: $Q8TA_WGPU_TUNE == "1".

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
    MAX_DISPATCH_MBLOCKS = 16 * 65535

    def __init__(
        self,
        weight: np.ndarray,
        weight_scales: np.ndarray,
        bias: np.ndarray | None = None,
        *,
        input_scale: float,
        input_zero_point: int,
        output_scale: float,
        output_zero_point: int,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        activation: str = "none",
        method: str = "auto",
        output_layout: str = "4W4C",
        device: Device | None = None,
        tune: bool | None = None,
    ) -> None:
        self.weight = check_int8_array("weight", weight, ndim=4).copy()
        c_out = self.weight.shape[0]
        self.weight_scales = check_float_vector("weight_scales", weight_scales, c_out, positive=True)
        self.bias = None if bias is None else check_float_vector("bias", bias, c_out)
        self.input_scale = check_scale("input_scale", input_scale)
        self.input_zero_point = check_zero_point("input_zero_point", input_zero_point)
        self.output_scale = check_scale("output_scale", output_scale)
        self.output_zero_point = check_zero_point("output_zero_point", output_zero_point)
        self.stride = pair("stride", stride, minimum=1)
        self.padding = pair("padding", padding, minimum=0)
        self.dilation = pair("dilation", dilation, minimum=1)
        if isinstance(groups, bool) or not hasattr(groups, "__index__"):
            raise TypeError(f"groups must be an int, got {groups!r}")
        if int(groups) < 1:
            raise ValueError(f"groups must be >= 1, got {groups!r}")
        self.groups = int(groups)
        if c_out % self.groups:
            raise ValueError(f"groups ({self.groups}) must divide the output channels C_out ({c_out})")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        self.method = method
        self.output_layout = check_layout("output_layout", output_layout)
        self.device = get_device(device)
        _, cpg, kh, kw = self.weight.shape
        if (kh * kw * cpg + 3) // 4 * 4 >= MAX_K_PER_GROUP:
            raise ValueError(
                f"weight has {kh * kw * cpg} columns per group; int32 accumulation is exact only "
                f"below {MAX_K_PER_GROUP}"
            )
        dev = self.device
        # Prepacked weights by C_in/groups: the weight's own (made here, so a weight too big for
        # the device fails at construction), and on first use the zero-padded align4(C_in) of
        # kernel_geometry.
        self._weights_by_cpg: dict[int, Any] = {}
        self._weights_for(cpg)
        self._chan = dev.upload(
            _channel_params(weight_sums(self.weight), self.input_scale, self.weight_scales, self.bias),
            label="channel params",
        )
        self._plans: OrderedDict[tuple, _Plan] = OrderedDict()
        self._dummy_buf: Any = None
        self._dw_weights: Any = None
        # A GEMM configuration forced on this conv (see gemm_config); set by tuning and benchmarks.
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
        return ConvGeometry.make(
            input_shape,
            self.weight.shape,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
        )

    def gemm_config(self, geo: ConvGeometry, m_count: int) -> dict[str, Any]:
        """Which GEMM kernel runs `m_count` m-blocks of this conv, with which override constants
        and how many split-K slices: {"kernel": file, "constants": {...}, "splits": S}.

        `self.gemm_override` (e.g. set by the tuner) wins where it applies. Otherwise the tiled
        kernel (shared-memory tiles, gemm_q8_tiled.wgsl) serves groups == 1 and
        C_out/groups % 4 == 0, with split-K when the tiles alone would leave the GPU idle; the
        simple kernel (gemm_q8.wgsl) serves channel blocks that straddle groups (e.g. depthwise).
        """
        aligned = geo.groups == 1 or geo.C_out_per_group % 4 == 0
        if aligned and self.gemm_override is not None:
            return self.gemm_override
        if aligned and self._tuned.get(geo):
            return self._tuned[geo]
        if not aligned:
            return {
                "kernel": "gemm_q8.wgsl",
                "constants": {"WG": 64, "TM": 2, "TN": 2, "MODE": 2},
                "splits": 1,
            }
        c4_pg = ceil4(geo.C_out) if geo.groups == 1 else geo.C_out_per_group // 4
        k4_pg = geo.K_per_group // 4
        # Untuned default, by adapter type, as measured. GPUs: what the H100 tuner picked most
        # often (8x8 threads of 1x1 blocks, 8 k-blocks a stage). CPU
        # adapters (lavapipe): 2x2 blocks a thread and 16 k-blocks a stage, which run the GEMM's
        # loop with more independent work per invocation. Narrow tiles for few channels a group.
        cpu = self.device.on_cpu
        tm = tn = 2 if cpu else 1
        wg_n = 8 if c4_pg > 4 else 4
        wg_m = 64 // wg_n
        fits16 = (
            tiled_config_error(self.device, {"WG_M": wg_m, "WG_N": wg_n, "BK": 16, "TM": tm, "TN": tn})
            is None
        )
        bk = 16 if cpu and k4_pg >= 16 and fits16 else 8
        tiles = -(-m_count // (tm * wg_m)) * -(-c4_pg // (tn * wg_n)) * geo.groups
        # Split K while there are fewer tiles than ~2 waves of a large GPU and K is long.
        splits = 1
        while tiles * splits < 256 and k4_pg // (splits * 2) >= 4 * bk:
            splits *= 2
        consts = {"WG_M": wg_m, "WG_N": wg_n, "BK": bk, "TM": tm, "TN": tn}
        return {"kernel": "gemm_q8_tiled.wgsl", "constants": consts, "splits": splits}

    def _gemm_specs(
        self,
        geo: ConvGeometry,
        a_bind: Any,
        base: int,
        count: int,
        out_desc: Any,
        conv_binds: tuple[Any, Any],
        weights: Any,
        implicit: bool = False,
        k4_row: int | None = None,
        g_base: int = 0,
    ) -> list[tuple]:
        """GEMM pass specs for m-blocks [base, base + count) whose A is bound as `a_bind` (with
        implicit=True: the 4W4C input, A gathered on the fly using conv_binds = (input desc,
        conv params) uniforms, which the tiled kernel always binds) and whose prepacked weights
        are `weights`. For a slice of whole groups, geo is the slice's own geometry, k4_row A's
        row stride in blocks (all groups) and g_base the slice's first group."""
        dev = self.device
        cfg = self.gemm_config(geo, count)
        tiled = cfg["kernel"] in TILED_KERNELS
        if implicit and not tiled:
            raise ValueError("method 'implicit_4w4c' needs groups == 1 or C_out/groups % 4 == 0")
        consts, splits = dict(cfg["constants"]), int(cfg["splits"])
        k4_pg = geo.K_per_group // 4
        c4_out = ceil4(geo.C_out)
        if tiled:
            why = tiled_config_error(dev, consts, cfg["kernel"])
            if why:
                raise ValueError(f"gemm config: {cfg['kernel']} cannot take {consts}: {why}")
            # Fewer K slices where their partial sums would not fit one binding (big chunks).
            while splits > 1 and 64 * splits * count * c4_out > dev.max_binding_size:
                splits //= 2
            bk = consts["BK"]
            per_split = -(-k4_pg // splits)
            kspan = -(-per_split // bk) * bk  # k-blocks per slice, a multiple of BK
            splits = -(-k4_pg // kspan)
        else:
            kspan = k4_pg
        gp = self._gemm_params(
            geo, base, count, geo.K // 4 if k4_row is None else k4_row, splits, kspan, g_base
        )
        if cfg["kernel"] == "gemm_q8.wgsl":
            gemm = dev.pipeline("gemm_q8.wgsl", consts)
            threads = -(-count // consts["TM"]) * -(-c4_out // consts["TN"])
            res = [a_bind, weights, self._chan, Y, out_desc, gp]
            return [(gemm, res, dev.workgroups(-(-threads // consts["WG"])), "gemm_q8")]
        partial = splits > 1
        gemm = dev.pipeline(cfg["kernel"], {**consts, "PARTIAL": partial, "IMPLICIT": implicit})
        tk = tiled_kernel(cfg["kernel"], consts)
        c4_pg = c4_out if geo.groups == 1 else geo.C_out_per_group // 4
        grid = (
            -(-c4_pg // (tk.tn * consts["WG_N"])),
            -(-count // (tk.tm * consts["WG_M"])),
            geo.groups * splits,
        )
        if max(grid) > dev.max_workgroups:
            raise ValueError(f"GEMM grid {grid} exceeds {dev.max_workgroups} workgroups per dimension")
        if not partial:
            res = [a_bind, weights, self._chan, Y, out_desc, gp, self._dummy(), *conv_binds]
            return [(gemm, res, grid, "gemm_q8_implicit" if implicit else "gemm_q8_tiled")]
        part_bytes = 16 * 4 * splits * count * c4_out
        _check_binding(dev, "the split-K partial sums", part_bytes)
        part = dev.buffer(part_bytes, label="split-K partials")
        res = [a_bind, weights, self._chan, Y, out_desc, gp, part, *conv_binds]
        red = dev.pipeline("gemm_q8_splitk.wgsl", {"WG": 64})
        red_res = [part, self._chan, Y, out_desc, gp]
        return [
            (gemm, res, grid, "gemm_q8_implicit(split-K)" if implicit else "gemm_q8_tiled(split-K)"),
            (red, red_res, dev.workgroups(-(-count * c4_out // 64)), "gemm_q8_splitk"),
        ]

    def _gemm_params(
        self,
        geo: ConvGeometry,
        base: int,
        count: int,
        k4_row: int,
        splits: int = 1,
        kspan: int = 0,
        g_base: int = 0,
    ) -> Any:
        """The GemmParams uniform (epilogue.wgsl) of m-blocks [base, base + count) of `geo`: A's
        row stride k4_row in k-blocks, `splits` K slices of `kspan` k-blocks, first group g_base."""
        return self.device.uniform(
            GEMM_PARAMS.pack(
                m_count=count, mb_base=base, k4=k4_row, k4_pg=geo.K_per_group // 4,
                c4_out=ceil4(geo.C_out), cout_pg=geo.C_out_per_group, c_out=geo.C_out,
                h_out=geo.H_out, w4_out=ceil4(geo.W_out), w_out=geo.W_out,
                zp_in=self.input_zero_point, zp_out=self.output_zero_point,
                inv_s_out=float(np.float32(1.0) / np.float32(self.output_scale)),
                relu=int(self.activation == "relu"), splits=splits, kspan=kspan, g_base=g_base,
            )
        )  # fmt: skip

    def _depthwise_weights(self) -> Any:
        """The weights packed for depthwise_4w4c.wgsl (prepack_depthwise), made on first use."""
        if self._dw_weights is None:
            packed = prepack_depthwise(self.weight)
            _check_buffer(self.device, "the depthwise weights", packed.nbytes)
            _check_binding(self.device, "the depthwise weights", packed.nbytes)
            self._dw_weights = self.device.upload(packed, label="depthwise weights")
        return self._dw_weights

    def _weights_for(self, cin_pg: int) -> Any:
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
            _check_buffer(self.device, "the prepacked weights", packed.nbytes)
            label = "weights" if cin_pg == cpg else "weights (padded C_in)"
            buf = self._weights_by_cpg[cin_pg] = self.device.upload(packed, label=label)
        return buf

    def _dummy(self) -> Any:
        """A tiny storage buffer for bindings a kernel variant does not use."""
        if self._dummy_buf is None:
            self._dummy_buf = self.device.buffer(16, label="unused")
        return self._dummy_buf

    def plan(self, shape: tuple[int, ...], in_layout: str, numpy_in: bool) -> _Plan:
        """The cached plan for inputs of `shape` in `in_layout` (numpy_in: read back as numpy)."""
        key = (tuple(shape), in_layout, numpy_in)
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
            return plan
        dev = self.device
        geo = kernel_geometry(self.geometry(shape), in_layout)
        method = _resolve_method(self.method, geo, in_layout)
        # Measured choices: tuned now (tune=True), else cached or shipped for this adapter model.
        choice: dict[str, Any] | None
        if self.tune and dev.has_timestamps:
            choice = tuning.tune(self, geo, in_layout)
        else:
            choice = tuning.lookup(dev, tuning.shape_key(self, geo, in_layout))
        gemm = choice.get("gemm") if choice else None
        if (
            gemm
            and gemm["kernel"] != "gemm_q8.wgsl"
            and (
                gemm["kernel"] not in TILED_KERNELS
                or tiled_config_error(dev, gemm["constants"], gemm["kernel"])
            )
        ):
            # A choice the current kernel or this device cannot take (an older table, or one
            # made for a device of the same name with other limits): re-decide.
            choice = None
        if choice:
            method, self._tuned[geo] = choice["method"], choice["gemm"]
        out_layout = "4W4C" if numpy_in else self.output_layout
        in_words = packed_words(shape, in_layout)
        # Over one binding, the input and output are bound as windows of rows (_split.py); over
        # max-buffer-size they cannot exist (numpy calls are split over the batch first).
        out_bytes = 4 * packed_words(geo.output_shape, out_layout)
        _check_buffer(dev, "the output", out_bytes)
        specs = self._specs(geo, method, in_layout, out_layout)
        plan = _Plan(geo, method, in_layout, out_layout, specs)
        if numpy_in:
            # NCHW <-> 4W4C conversions run on the GPU when each side fits one binding, else
            # on the host (numpy, same bytes).
            if max(int(np.prod(shape)), 4 * in_words) <= dev.max_binding_size:
                plan.x_nchw = dev.buffer(int(np.prod(shape)), label="x nchw")
            plan.x_packed = dev.buffer(4 * in_words, label="x packed")
            plan.out = plan.take_output(dev)
            if max(int(np.prod(geo.output_shape)), out_bytes) <= dev.max_binding_size:
                plan.out_nchw = dev.buffer(int(np.prod(geo.output_shape)), label="y nchw")
        self._plans[key] = plan
        while len(self._plans) > self.PLAN_CACHE_SIZE:
            self._plans.popitem(last=False)
        return plan

    def _specs(self, geo: ConvGeometry, method: str, in_layout: str, out_layout: str) -> list:
        """im2col + GEMM pass specs, per chunk of m-blocks (and per slice of output channels)
        such that A, the input and output windows and the weights each fit one binding
        (_split.py; one chunk and one slice, binding whole tensors, when all fit)."""
        dev = self.device
        in_shape = geo_input_shape(geo)
        k4 = geo.K // 4
        k4_pg = geo.K_per_group // 4
        specs: list = []
        pointwise = method == "pointwise"
        implicit = method == "implicit_4w4c"  # the GEMM gathers A from the input: no A matrix
        depthwise = method == "depthwise_4w4c"  # one kernel reads the input: no A, no GEMM
        # At most MAX_DISPATCH_MBLOCKS m-blocks per chunk keeps every GEMM grid within
        # max-compute-workgroups-per-dimension (tiles of >= 16 m-blocks).
        chunks = _split.m_chunks(
            dev, geo, pointwise, in_layout, out_layout, self.MAX_DISPATCH_MBLOCKS,
            a_matrix=not (implicit or depthwise),
        )  # fmt: skip
        slices = _split.channel_slices(dev, geo)
        weights = self._weights_for(geo.C_in_per_group)
        s_c4_out = int(TENSOR_DESC.get(tensor_desc(geo.output_shape, out_layout, 0), "s_c4"))
        if not (pointwise or implicit or depthwise):
            a_buf = dev.buffer(16 * k4 * max(c.count for c in chunks), label="im2col A")
        for ch in chunks:
            base, count = ch.base, ch.count
            x_bind: Any = X if ch.x_win is None else (X, ch.x_win[0], ch.x_win[1])
            y_bind: Any = Y if ch.y_win is None else (Y, ch.y_win[0], ch.y_win[1])
            y_base = 0 if ch.y_win is None else ch.y_win[2]
            a_bind: Any = x_bind  # pointwise: the input is A; implicit: A is gathered from it
            x_base = 0 if ch.x_win is None or pointwise else ch.x_win[2]
            in_desc = dev.uniform(tensor_desc(in_shape, in_layout, self.input_zero_point, x_base))
            cp = dev.uniform(_conv_params(geo, base, count))
            if depthwise:  # the whole output's channels: its weights and records are small
                out_desc = dev.uniform(
                    tensor_desc(geo.output_shape, out_layout, self.output_zero_point, y_base)
                )
                gp = self._gemm_params(geo, base, count, k4)
                wg = DEPTHWISE_WG
                small = geo.KH * geo.KW <= DEPTHWISE_UNROLL_TAPS["cpu" if dev.on_cpu else "gpu"]
                consts = {"WG": wg, "KH": geo.KH if small else 0, "KW": geo.KW if small else 0}
                pipe = dev.pipeline("depthwise_4w4c.wgsl", consts)
                res = [x_bind, self._depthwise_weights(), self._chan, y_bind, out_desc, gp, in_desc, cp]
                wgs = dev.workgroups(-(-count * ceil4(geo.C_out) // wg))
                specs.append((pipe, res, wgs, "depthwise_4w4c"))
                continue
            if not (pointwise or implicit):
                a_bind = (a_buf, 0, 16 * k4 * count)
                im2col_consts, threads = im2col_pass_shape(dev, method, count, k4)
                im2col = dev.pipeline(f"{method}.wgsl", im2col_consts)
                wgs = dev.workgroups(-(-threads // im2col_consts["WG"]))
                specs.append((im2col, [x_bind, a_bind, in_desc, cp], wgs, method))
            for c4_lo, c4_hi in slices:
                # Output channel block c4 of the slice is block c4_lo + c4 of the tensor.
                out_desc = dev.uniform(
                    tensor_desc(
                        geo.output_shape, out_layout, self.output_zero_point, y_base - c4_lo * s_c4_out
                    )
                )
                subs: list[tuple[Any, Any]] = [(Y, y_bind)]
                sub_geo, g_base = geo, 0
                if len(slices) > 1 and geo.groups == 1:  # a conv of its own on the same A
                    sub_geo = dataclasses.replace(geo, C_out=min(geo.C_out, 4 * c4_hi) - 4 * c4_lo)
                elif len(slices) > 1:  # whole groups [g_base, g_end), or part of group g_base
                    opg = geo.C_out_per_group
                    g_base, g_end = 4 * c4_lo // opg, min(geo.groups, -(-4 * c4_hi // opg))
                    n_out = min(4 * c4_hi, geo.C_out) - 4 * c4_lo
                    if n_out < opg:  # inside one group: a one-group conv on its K columns
                        g_end, opg = g_base + 1, n_out
                    sub_geo = dataclasses.replace(
                        geo,
                        C_out=(g_end - g_base) * opg,
                        C_in=(g_end - g_base) * geo.C_in_per_group,
                        groups=g_end - g_base,
                    )
                if len(slices) > 1:
                    subs += [
                        (weights, (weights, 16 * k4_pg * c4_lo, 16 * k4_pg * (c4_hi - c4_lo))),
                        (self._chan, (self._chan, 64 * c4_lo, 64 * (c4_hi - c4_lo))),
                    ]
                gemm = self._gemm_specs(
                    sub_geo, a_bind, base, count, out_desc, (in_desc, cp), weights, implicit, k4, g_base
                )
                specs.extend(_rebind(gemm, subs))
        return specs

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

    @overload
    def __call__(self, x: np.ndarray) -> np.ndarray: ...
    @overload
    def __call__(self, x: QTensor) -> QTensor: ...
    def __call__(self, x: np.ndarray | QTensor) -> np.ndarray | QTensor:
        """Run the conv on x (numpy int8 NCHW -> numpy int8; QTensor -> QTensor)."""
        dev = self.device
        if not isinstance(x, QTensor):
            x = check_int8_array("x", x, ndim=4)
            if (x.shape, "4W4C", True) not in self._plans:  # (a cached plan's buffers exist)
                n_fit = _split.batch_size_that_fits(dev, self.geometry(x.shape), "4W4C")
                if n_fit < x.shape[0]:
                    return self._call_batch_slices(x, n_fit)
        with dev.lock:
            plan, passes, y = self.passes(x)
            dev.run(passes)
            shape = plan.geo.output_shape
            if isinstance(x, QTensor):
                out = QTensor(y, shape, self.output_layout, self.output_scale, self.output_zero_point, dev)
                weakref.finalize(out, plan.free_outputs.append, y)
                return out
            if plan.out_nchw is None:
                words = np.frombuffer(dev.read(plan.out, 4 * packed_words(shape, "4W4C")), np.uint32)
                return unpack(words, "4W4C", shape)
            data = dev.read(plan.out_nchw, int(np.prod(shape)))
            return np.frombuffer(data, np.int8).reshape(shape).copy()

    def _call_batch_slices(self, x: np.ndarray, n_fit: int) -> np.ndarray:
        """A numpy call whose buffers would exceed max-buffer-size, run n_fit samples at a time."""
        if n_fit < 1:
            geo = self.geometry(x.shape)
            per = max(geo.C_in * geo.H * geo.W, 4 * packed_words((1, *x.shape[1:]), "4W4C"),
                      4 * packed_words((1, *geo.output_shape[1:]), "4W4C"))  # fmt: skip
            raise ValueError(
                f"one sample of x {x.shape} needs a buffer of {per} bytes (input or output, "
                f"packed); this adapter ({self.device.name}) allows {self.device.max_buffer_size} "
                "(max-buffer-size)"
            )
        return np.concatenate([self(x[i : i + n_fit]) for i in range(0, x.shape[0], n_fit)])


def geo_input_shape(geo: ConvGeometry) -> tuple[int, int, int, int]:
    return (geo.N, geo.C_in, geo.H, geo.W)


@overload
def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    weight_scales: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    input_scale: float | None = None,
    input_zero_point: int | None = None,
    output_scale: float,
    output_zero_point: int,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    activation: str = "none",
    method: str = "auto",
    device: Device | None = None,
    output_layout: str = "4W4C",
) -> np.ndarray: ...


@overload
def conv2d(
    x: QTensor,
    weight: np.ndarray,
    weight_scales: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    input_scale: float | None = None,
    input_zero_point: int | None = None,
    output_scale: float,
    output_zero_point: int,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    activation: str = "none",
    method: str = "auto",
    device: Device | None = None,
    output_layout: str = "4W4C",
) -> QTensor: ...


def conv2d(
    x: np.ndarray | QTensor,
    weight: np.ndarray,
    weight_scales: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    input_scale: float | None = None,
    input_zero_point: int | None = None,
    output_scale: float,
    output_zero_point: int,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    activation: str = "none",
    method: str = "auto",
    device: Device | None = None,
    output_layout: str = "4W4C",
) -> np.ndarray | QTensor:
    """Quantized conv2d: int8 x [N, C_in, H, W] -> int8 [N, C_out, H_out, W_out].

    x is numpy int8 (then input_scale and input_zero_point are required, and numpy comes back)
    or a QTensor (its scale and zero point are used when those are None; a QTensor comes back in
    `output_layout`). See `QConv2d` for the other arguments and `q8ta_wgpu.reference.conv2d`
    for the exact math.
    """
    if isinstance(x, QTensor):
        if input_scale is None:
            input_scale = x.scale
        if input_zero_point is None:
            input_zero_point = x.zero_point
        device = x.device if device is None else device
    elif input_scale is None or input_zero_point is None:
        raise TypeError("input_scale and input_zero_point are required for a numpy input x")
    conv = QConv2d(
        weight,
        weight_scales,
        bias,
        input_scale=input_scale,
        input_zero_point=input_zero_point,
        output_scale=output_scale,
        output_zero_point=output_zero_point,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        activation=activation,
        method=method,
        output_layout=output_layout,
        device=device,
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
        method = _resolve_method(method, geo, input_layout)
    k4 = geo.K // 4
    m_blocks = geo.m_blocks
    _check_binding(dev, "the im2col matrix", 16 * k4 * m_blocks)
    src = dev.upload(x)
    packed = dev.buffer(4 * packed_words(x.shape, input_layout))
    a = dev.buffer(16 * k4 * m_blocks)
    consts, threads = im2col_pass_shape(dev, method, m_blocks, k4)
    pipe = dev.pipeline(f"{method}.wgsl", consts)
    bg = dev.bind_group(
        pipe,
        [
            packed,
            a,
            dev.uniform(tensor_desc(x.shape, input_layout, zp)),
            dev.uniform(_conv_params(geo, 0, m_blocks)),
        ],
    )
    dev.run(
        [
            pack_pass(dev, src, packed, x.shape, input_layout, zp),
            Pass(pipe, bg, dev.workgroups(-(-threads // consts["WG"])), method),
        ]
    )
    blocks = np.frombuffer(dev.read(a, 16 * k4 * m_blocks), np.int8).reshape(m_blocks, k4, 4, 4)
    return np.ascontiguousarray(blocks.transpose(0, 2, 1, 3)).reshape(m_blocks * 4, k4 * 4)
