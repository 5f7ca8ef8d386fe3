"""The planner: what a conv runs, as data. Pure: no device, no buffers, no hidden state.

    plan_passes(conv, geo, method, in_layout, out_layout, gemm, limits) -> ConvPlan

takes the conv's quantization and geometry (`ConvSpec`, `ConvGeometry`), a method, layouts, a
GEMM configuration (`GemmConfig`, or None for the measured default) and the device's limits
(`DeviceLimits`), and returns typed pass specs: the kernel and its override constants, the
resources it binds, by the kernel's binding names, by role (the call's input and output, the
weights, a scratch buffer, a uniform's words) and its workgroup grid. `QConv2d` turns specs into pipelines and bind groups
once per shape (conv.py); the tuner asks for the specs of each candidate configuration
(tuning.py). Work too big for one binding is split here (_split.py).

Adding a method is one planner case (a branch of `plan_passes`), one kernel file and, where it
has a uniform of its own, one struct in uniforms.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypedDict, Unpack

import numpy as np

from . import _split
from ._checks import ACTIVATIONS, check_scale, check_zero_point
from .geometry import ConvGeometry, align4, ceil4, fold_workgroups, pair
from .layouts import check_layout, packed_words, tensor_desc
from .quant import AddRequant, activation_bounds
from .uniforms import CHAN_BLOCK_BYTES, CONV_PARAMS, GEMM_PARAMS, QUANTIZE_PARAMS, TENSOR_DESC

if TYPE_CHECKING:
    from .runtime import Device

METHODS = (
    "auto", "im2col_4w4c", "im2col_generic", "pointwise", "implicit_4w4c", "depthwise_4w4c", "patch_4w4c",
)  # fmt: skip
# At most this many m-blocks per dispatch keeps every GEMM grid within
# max-compute-workgroups-per-dimension (tiles of >= 16 m-blocks).
MAX_DISPATCH_MBLOCKS = 16 * 65535
# int32 accumulation is exact while K_per_group < 2^16 (see kernels/gemm_q8.wgsl).
MAX_K_PER_GROUP = 1 << 16


# ---- the device, as the planner sees it ---------------------------------------------------
@dataclass(frozen=True)
class DeviceLimits:
    """What the planner needs to know of a device: its limits (WebGPU names) and whether it is a
    CPU adapter (some measured defaults differ there). `name` is for messages."""

    name: str
    limits: Mapping[str, int]
    max_binding_size: int
    max_buffer_size: int
    max_workgroups: int
    on_cpu: bool
    # Split-K slices reduced inside the GEMM (the last slice of a tile sums them: REDUCE in
    # gemm_q8_tiled.wgsl), one dispatch a GEMM; else a reduce pass. Vulkan only: there naga's
    # storageBarrier is a device-scope barrier, which orders the slices' atomics across
    # workgroups (WGSL promises that within a workgroup only).
    reduce_in_gemm: bool = False

    @classmethod
    def of(cls, dev: Any) -> DeviceLimits:
        """The limits of a `Device` now."""
        return cls(
            dev.name,
            dict(dev.limits),
            dev.max_binding_size,
            dev.max_buffer_size,
            dev.max_workgroups,
            dev.on_cpu,
            dev.reduce_in_gemm,
        )

    def workgroups(self, count: int) -> tuple[int, int, int]:
        """Fold a 1-D workgroup count into (x, y, 1) with x, y <= max-workgroups-per-dimension;
        kernels rebuild the linear index as gid.x + gid.y * num_workgroups.x * WG."""
        return fold_workgroups(count, self.max_workgroups, self.name)


def check_buffer(limits: DeviceLimits, what: str, nbytes: int) -> None:
    if nbytes > limits.max_buffer_size:
        raise ValueError(
            f"{what} needs {nbytes} bytes in one buffer; this adapter ({limits.name}) allows "
            f"{limits.max_buffer_size} (max-buffer-size)"
        )


def check_binding(limits: DeviceLimits, what: str, nbytes: int) -> None:
    if nbytes > limits.max_binding_size:
        raise ValueError(
            f"{what} needs {nbytes} bytes in one storage binding; this adapter ({limits.name}) "
            f"allows {limits.max_binding_size} (max-storage-buffer-binding-size)"
        )


# ---- what a conv is ------------------------------------------------------------------------
class ConvSettings(TypedDict, total=False):
    """The options of `ConvOptions` that have a default (`CONV_DEFAULTS`); documented there."""

    stride: int | tuple[int, int]
    padding: int | tuple[int, int]
    dilation: int | tuple[int, int]
    groups: int
    activation: str
    method: str
    output_layout: str
    device: Device | None


class ConvOptions(ConvSettings):
    """The keyword options of a quantized conv2d, defined once: `q8ta_wgpu.conv2d`, `QConv2d` and
    `q8ta_wgpu.reference.conv2d` take them as `**options`, beside the input's quantization
    (`input_scale` > 0, `input_zero_point` in [-128, 127]: required, except that `conv2d`
    takes a QTensor input's own when they are None).

    output_scale, output_zero_point: the output's quantization (required).
    stride, padding, dilation: int or (h, w) (defaults 1, 0, 1).
    groups: int dividing C_in and C_out (default 1).
    activation: "none" (default), "relu" or "relu6" (fused: relu before requantization,
        relu6's upper bound as a clamp of the quantized output, which gives the same bytes).
    method: "auto" (default), "im2col_4w4c", "im2col_generic", "pointwise" (1x1 convs: the 4W4C
        input is the im2col matrix), "implicit_4w4c" (one fused kernel: the GEMM gathers im2col
        blocks from the 4W4C input while filling its tiles; no im2col matrix in memory) or
        "depthwise_4w4c" (groups == C_in == C_out: one kernel reads the 4W4C input, no GEMM) or
        "patch_4w4c" (groups == 1: one kernel whose workgroups stage the input patch their
        output tile reads in shared memory and compute every tap from it).
        "auto" takes pointwise for 1x1 convs, depthwise_4w4c for depthwise ones, else a
        measured choice (tuning.py) or im2col_4w4c where it applies.
    output_layout: layout of QTensor results ("4W4C" (default), "4C" or "4C1W").
    device: a q8ta_wgpu.Device (default: a QTensor input's, else the process-wide one).

    The reference accepts method, output_layout and device and ignores them (it has one method
    and no device).
    """

    output_scale: float
    output_zero_point: int


CONV_DEFAULTS: Final[ConvSettings] = {
    "stride": 1,
    "padding": 0,
    "dilation": 1,
    "groups": 1,
    "activation": "none",
    "method": "auto",
    "output_layout": "4W4C",
    "device": None,
}


@dataclass(frozen=True)
class ConvSpec:
    """A quantized conv's arguments other than its tensors and device, checked (QConv2d builds
    it): what the planner needs besides the input shape."""

    weight_shape: tuple[int, int, int, int]  # C_out, C_in/groups, KH, KW
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    activation: str = "none"
    method: str = "auto"  # as asked; resolve_method decides per input shape
    output_layout: str = "4W4C"

    @classmethod
    def checked(
        cls,
        weight_shape: tuple[int, ...],
        *,
        input_scale: Any,
        input_zero_point: Any,
        **options: Unpack[ConvOptions],
    ) -> ConvSpec:
        """A ConvSpec from a conv's arguments as a user gives them (`ConvOptions`; device
        ignored), each checked: TypeError or ValueError naming the argument and the rule it
        broke."""
        opts: ConvOptions = {**CONV_DEFAULTS, **options}
        s_in = check_scale("input_scale", input_scale)
        zp_in = check_zero_point("input_zero_point", input_zero_point)
        s_out = check_scale("output_scale", opts["output_scale"])
        zp_out = check_zero_point("output_zero_point", opts["output_zero_point"])
        strides = pair("stride", opts["stride"], minimum=1)
        pads = pair("padding", opts["padding"], minimum=0)
        dils = pair("dilation", opts["dilation"], minimum=1)
        groups = opts["groups"]
        if isinstance(groups, bool) or not hasattr(groups, "__index__"):
            raise TypeError(f"groups must be an int, got {groups!r}")
        if int(groups) < 1:
            raise ValueError(f"groups must be >= 1, got {groups!r}")
        c_out, cpg, kh, kw = (int(v) for v in weight_shape)
        if c_out % int(groups):
            raise ValueError(f"groups ({int(groups)}) must divide the output channels C_out ({c_out})")
        activation, method = opts["activation"], opts["method"]
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        output_layout = check_layout("output_layout", opts["output_layout"])
        if (kh * kw * cpg + 3) // 4 * 4 >= MAX_K_PER_GROUP:
            raise ValueError(
                f"weight has {kh * kw * cpg} columns per group; int32 accumulation is exact only "
                f"below {MAX_K_PER_GROUP}"
            )
        return cls(
            (c_out, cpg, kh, kw), strides, pads, dils, int(groups), s_in, zp_in, s_out, zp_out,
            activation, method, output_layout,
        )  # fmt: skip

    def geometry(self, input_shape: tuple[int, ...]) -> ConvGeometry:
        """The conv's sizes for an input of NCHW `input_shape` (checks it fits the weight)."""
        return ConvGeometry.make(
            input_shape,
            self.weight_shape,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
        )


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


def resolve_method(method: str, geo: ConvGeometry, in_layout: str) -> str:
    """The method that runs: "auto" resolved, any other checked against the conv."""
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
    if method == "patch_4w4c" and not (fits_4w4c and geo.groups == 1):
        raise ValueError(
            "method 'patch_4w4c' needs a 4W4C input and groups == 1 (input layout "
            f"{in_layout}, groups = {geo.groups})"
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
            resolve_method(m, geo, in_layout)
        except ValueError:
            continue
        out.append(m)
    return out


# ---- GEMM kernels and configurations -------------------------------------------------------
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
    reduces: bool = False  # reduces split-K slices itself (REDUCE, binding `ksum`)

    def threads(self, wg_m: int, wg_n: int) -> int:
        return wg_m * wg_n * self.k_groups

    def workgroup_bytes(self, wg_m: int, wg_n: int, bk: int) -> int:
        """Shared memory: per k-group and buffer, a stage of BK rows of tm*WG_M (A) and tn*WG_N
        (W) vec4 blocks, each row padded by one; with k-groups, a reduction area of one 4x4
        accumulator block per thread of each k-group past the first."""
        stage = 16 * bk * (self.tm * wg_m + 1 + self.tn * wg_n + 1)
        return self.k_groups * self.buffers * stage + (self.k_groups - 1) * wg_m * wg_n * 4 * 16


DW_IN_KERNEL = "gemm_q8_dw_in.wgsl"  # the tiled GEMM with DW_IN (a DwInput's 1x1 conv)
_TILED = TiledKernel(tm=2, tn=2, loads=8, bk_multiple=2, tile_choices=(1, 2), reduces=True)

# Tiled GEMM kernels by file (or registered shader name: register_tiled_kernel). DW_IN_KERNEL is
# the same GEMM computing a depthwise conv's output as its A, with that GEMM's configurations.
TILED_KERNELS: dict[str, TiledKernel] = {"gemm_q8_tiled.wgsl": _TILED, DW_IN_KERNEL: _TILED}


def register_tiled_kernel(name: str, structure: TiledKernel) -> None:
    """Declare the tile structure of a tiled GEMM variant registered with the shader library
    (a probe's), so that GEMM configurations can name it (idempotent for the same structure)."""
    old = TILED_KERNELS.get(name)
    if old is not None and old != structure:
        raise ValueError(f"tiled kernel {name!r} is already registered with structure {old}")
    TILED_KERNELS[name] = structure


def tiled_kernel(kernel: str, consts: Mapping[str, Any]) -> TiledKernel:
    """The structure of tiled kernel `kernel` under override constants `consts` (its TM, TN)."""
    k = TILED_KERNELS[kernel]
    if not k.tile_choices:
        return k
    return k._replace(tm=int(consts.get("TM", k.tm)), tn=int(consts.get("TN", k.tn)))


def tiled_config_error(
    limits: DeviceLimits, consts: Mapping[str, Any], kernel: str = "gemm_q8_tiled.wgsl"
) -> str | None:
    """Why `kernel` cannot run with override constants `consts` (WG_M x WG_N threads, BK k-blocks
    a stage, TM x TN blocks a thread) on the device, or None. The device's workgroup limits are
    checked here because wgpu does not check shared memory sized by override constants: a kernel
    over the limit compiles, and on the H100 its dispatch hung the device."""
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
    lim = limits.limits
    most = min(lim["max-compute-invocations-per-workgroup"], lim["max-compute-workgroup-size-x"])
    if threads > most:
        return f"{threads} threads a workgroup, over the device's {most}"
    need, have = k.workgroup_bytes(wg_m, wg_n, bk), lim["max-compute-workgroup-storage-size"]
    if need > have:
        return f"{need} bytes of workgroup memory, over the device's {have}"
    return None


def runnable_gemm(gemm: Mapping[str, Any] | None, limits: DeviceLimits, geo: ConvGeometry) -> bool:
    """Whether a measured GEMM configuration (dict form; None: the default), or the patch
    kernel's, runs conv `geo` with the current kernels on this device: a table may be older than
    the kernels, or made on a device of the same name with other limits."""
    if not gemm or gemm["kernel"] == "gemm_q8.wgsl":
        return True
    if gemm["kernel"] == PATCH_KERNEL:
        consts = gemm["constants"]
        if set(consts) != {"TR", "TW", "WG_N", "TN", "CB"}:
            return False
        return (gemm.get("splits", 1) == 1 or limits.reduce_in_gemm) and not patch_config_error(
            limits, consts, geo
        )
    if gemm.get("reduce", "auto") not in REDUCE_MODES:
        return False
    return gemm["kernel"] in TILED_KERNELS and not tiled_config_error(
        limits, gemm["constants"], gemm["kernel"]
    )


# How split-K slices are reduced: "auto" (inside the GEMM where the device can and
# reduce_in_gemm_pays), "gemm" (inside the GEMM wherever the device can), "pass" (a reduce pass).
REDUCE_MODES = ("auto", "gemm", "pass")


@dataclass(frozen=True)
class GemmConfig:
    """Which GEMM kernel runs, with which override constants, in how many split-K slices, reduced
    how (`REDUCE_MODES`). Its dict form ({"kernel", "constants", "splits"}, and "reduce" where not
    "auto") is what tuning tables and results store."""

    kernel: str
    constants: tuple[tuple[str, int], ...]
    splits: int = 1
    reduce: str = "auto"

    @classmethod
    def make(
        cls, kernel: str, constants: Mapping[str, int], splits: int = 1, reduce: str = "auto"
    ) -> GemmConfig:
        if reduce not in REDUCE_MODES:
            raise ValueError(f"gemm config: reduce must be one of {', '.join(REDUCE_MODES)}, got {reduce!r}")
        return cls(kernel, tuple(sorted((k, int(v)) for k, v in constants.items())), int(splits), reduce)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GemmConfig:
        return cls.make(d["kernel"], d["constants"], d.get("splits", 1), d.get("reduce", "auto"))

    def to_dict(self) -> dict[str, Any]:
        out = {"kernel": self.kernel, "constants": dict(self.constants), "splits": self.splits}
        return out | ({"reduce": self.reduce} if self.reduce != "auto" else {})

    @property
    def consts(self) -> dict[str, int]:
        return dict(self.constants)

    @property
    def tiled(self) -> bool:
        return self.kernel in TILED_KERNELS


# Split-K reduced inside the GEMM (REDUCE) against a reduce pass, measured per layer in a chain
# on the H200 (bench/analysis.md): a dispatch less saves up to 2 us on 2-4 short slices
# (150-288 K columns each: 0.87-0.98x), and costs more than it saves on long ones (576 columns:
# 1.09x) and on 16-32 slices (1.02-1.12x), likely from the epilogue compiled into a long K loop
# and the atomic adds of many slices (not profiled). 8 slices: `Net.refine` kept the reduce in
# the GEMM on both shapes that have them at batch 1 (at most 14 m-blocks, 40-64 k-blocks a
# slice: ResNet-50's 2048 -> 512 at 7x7, MobileNetV2's classifier).
REDUCE_IN_GEMM_MAX_SPLITS = 8
REDUCE_IN_GEMM_MAX_KSPAN = 72  # k-blocks (4 K columns each) a slice


def reduce_in_gemm_pays(splits: int, kspan: int) -> bool:
    """Whether `splits` K slices of `kspan` k-blocks are reduced inside the GEMM (where the
    device can) rather than by a reduce pass."""
    return 1 < splits <= REDUCE_IN_GEMM_MAX_SPLITS and kspan <= REDUCE_IN_GEMM_MAX_KSPAN


# The simple kernel, for channel blocks that straddle groups (e.g. depthwise convs).
SIMPLE_GEMM = GemmConfig.make("gemm_q8.wgsl", {"WG": 64, "TM": 2, "TN": 2, "MODE": 2})


def gemm_aligned(geo: ConvGeometry) -> bool:
    """Whether the tiled GEMM serves this conv (no channel block straddles two groups)."""
    return geo.groups == 1 or geo.C_out_per_group % 4 == 0


def gemm_config_for(
    geo: ConvGeometry, m_count: int, gemm: GemmConfig | None, limits: DeviceLimits
) -> GemmConfig:
    """The configuration that runs `m_count` m-blocks of `geo`: `gemm` (forced or measured)
    where the tiled kernel serves the conv, else the default (also for a configuration of the
    patch kernel, which is no GEMM's)."""
    if gemm is not None and gemm.kernel != PATCH_KERNEL and gemm_aligned(geo):
        return gemm
    return default_gemm_config(geo, m_count, limits)


def split_k_pays(tiles: int, splits: int, k4: int, bk: int, on_cpu: bool) -> bool:
    """Whether the untuned GEMM splits K into `splits` slices (from splits / 2): `tiles` output
    tiles, K of `k4` k-blocks, `bk` k-blocks a stage.

    CPU adapters: while there are fewer than 256 tiles and slices of 4 stages or more. GPUs, as
    the H200's shipped table chose (its 1x1 GEMMs: this rule gives its slice count on 28 of 30 at
    batch 1 and 13 of 14 at batch 8, the CPU rule on 21 and 13): up to 32 tiles, slices of 4 stages or
    more in at most 256 workgroups (2048 -> 512 at 7x7: 8 slices; MobileNet's 1x1s of 576 and
    960 channels: 4); more tiles, only a long K (32 stages or more) into slices of 8 stages or
    more, in at most 512 workgroups (1024 channels at 14x14: 4 slices; K of 128 k-blocks or less
    stays whole: 512 -> 256 at 28x28, 512 -> 2048 at 7x7)."""
    kspan = k4 // splits
    if on_cpu:
        return tiles * splits // 2 < 256 and kspan >= 4 * bk
    if tiles <= 32:
        return tiles * splits <= 256 and kspan >= 4 * bk
    return tiles * splits <= 512 and kspan >= 8 * bk and k4 >= 32 * bk


def default_gemm_config(geo: ConvGeometry, m_count: int, limits: DeviceLimits) -> GemmConfig:
    """The untuned configuration for `m_count` m-blocks of `geo`: the tiled kernel where the
    channel blocks are aligned to groups, with split-K when the tiles alone would leave the GPU
    idle; else the simple kernel."""
    if not gemm_aligned(geo):
        return SIMPLE_GEMM
    c4_pg = ceil4(geo.C_out) if geo.groups == 1 else geo.C_out_per_group // 4
    k4_pg = geo.K_per_group // 4
    # Untuned default, by adapter type, as measured. GPUs: what the H100 tuner picked most
    # often (8x8 threads of 1x1 blocks, 8 k-blocks a stage). CPU adapters (lavapipe): 2x2
    # blocks a thread and 16 k-blocks a stage, which run the GEMM's loop with more independent
    # work per invocation. Narrow tiles for few channels a group.
    cpu = limits.on_cpu
    tm = tn = 2 if cpu else 1
    wg_n = 8 if c4_pg > 4 else 4
    wg_m = 64 // wg_n
    fits16 = tiled_config_error(limits, {"WG_M": wg_m, "WG_N": wg_n, "BK": 16, "TM": tm, "TN": tn}) is None
    bk = 16 if cpu and k4_pg >= 16 and fits16 else 8
    tiles = -(-m_count // (tm * wg_m)) * -(-c4_pg // (tn * wg_n)) * geo.groups
    splits = 1
    while split_k_pays(tiles, splits * 2, k4_pg, bk, cpu):
        splits *= 2
    consts = {"WG_M": wg_m, "WG_N": wg_n, "BK": bk, "TM": tm, "TN": tn}
    return GemmConfig.make("gemm_q8_tiled.wgsl", consts, splits)


# ---- the other kernels' measured shapes ----------------------------------------------------
# im2col_4w4c.wgsl's layout of work, by adapter type, as measured
# (bench/results/archive/2026-11-24_analysis_H100.md):
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
# H100 unrolled loops were up to 18% faster; on lavapipe 1.0x to 1.2x slower
# (bench/results/archive/2026-11-24_analysis_H100.md).
DEPTHWISE_WG = 64
DEPTHWISE_UNROLL_TAPS = {"gpu": 49, "cpu": 0}
# depthwise_4w4c.wgsl's output widths a thread (WPT), by adapter type: on GPUs one word (4
# channels at one width), so 4x the threads share a layer's loads and epilogue; MobileNet's
# layers at batch 1 have 2K-28K 4x4 blocks, one to two warps per SM sub-partition on the H200,
# too few to hide the loads' latency. H200, per layer in a chain: 0.58x to 0.97x the time of a
# 4x4 block a thread (median 0.67 over 12 layers); MobileNetV2 400 -> 373 us at batch 1, 675 ->
# 654 us at batch 8 (bench/analysis.md). CPU adapters keep the block: there a thread's loop is
# the cheap direction (lavapipe, 4 of the layers: a thread a word took 1.11x to 1.65x as long).
DEPTHWISE_WPT = {"gpu": 1, "cpu": 4}


def im2col_pass_shape(on_cpu: bool, method: str, m_blocks: int, k4: int) -> tuple[dict[str, Any], int]:
    """Override constants and thread count of the im2col kernel `method` for m_blocks x k4
    blocks: im2col_4w4c runs RUN blocks per thread (IM2COL_4W4C), im2col_generic one."""
    if method == "im2col_4w4c":
        consts = dict(IM2COL_4W4C["cpu" if on_cpu else "gpu"])
        if consts["SPREAD"]:
            if m_blocks * k4 >= SPREAD_RUN2_BLOCKS:
                consts["RUN"] = max(consts["RUN"], 2)
            return consts, -(-m_blocks * k4 // consts["RUN"])
        return consts, m_blocks * -(-k4 // consts["RUN"])
    return {"WG": 64}, m_blocks * k4


# conv_patch_4w4c.wgsl: its configurations are GemmConfigs of this kernel, constants TR x TW
# m-blocks a workgroup tile (TR output rows, TW m-blocks each), WG_N threads along channel blocks,
# TN channel blocks a thread, CB input words a stage.
PATCH_KERNEL = "conv_patch_4w4c.wgsl"
# Named registers a thread has for a stage's loads: patch words, weight blocks (vec4).
PATCH_MAX_WORDS = 16
PATCH_MAX_BLOCKS = 8


def patch_config_error(limits: DeviceLimits, consts: Mapping[str, int], geo: ConvGeometry) -> str | None:
    """Why conv_patch_4w4c.wgsl cannot run conv `geo` with override constants `consts` on the
    device, or None (wgpu does not check shared memory sized by override constants)."""
    tr, tw, wg_n, tn, cb = (int(consts[k]) for k in ("TR", "TW", "WG_N", "TN", "CB"))
    if min(tr, tw, wg_n, cb) < 1 or tn not in (1, 2):
        return f"TR, TW, WG_N, CB must be positive and TN 1 or 2, got {dict(consts)}"
    ph = (tr - 1) * geo.stride[0] + (geo.KH - 1) * geo.dilation[0] + 1
    pw = (4 * tw - 1) * geo.stride[1] + (geo.KW - 1) * geo.dilation[1] + 1
    nt = tr * tw * wg_n
    taps = geo.KH * geo.KW
    if -(-cb * ph * pw // nt) > PATCH_MAX_WORDS or -(-taps * cb * tn * wg_n // nt) > PATCH_MAX_BLOCKS:
        return "too many loads per thread a stage"
    lim = limits.limits
    most = min(lim["max-compute-invocations-per-workgroup"], lim["max-compute-workgroup-size-x"])
    if nt > most:
        return f"{nt} threads a workgroup, over the device's {most}"
    need, have = (
        4 * cb * ph * pw + 16 * taps * cb * (tn * wg_n + 1),
        lim["max-compute-workgroup-storage-size"],
    )
    if need > have:
        return f"{need} bytes of workgroup memory, over the device's {have}"
    return None


PATCH_DEFAULT_TILES = [(8, 2), (4, 4), (4, 2), (2, 4), (2, 2), (1, 4), (1, 2), (1, 1)]
# `auto` on a GPU, where no measured choice exists, runs a conv of groups == 1 and a kernel bigger
# than 1x1 on the patch kernel (default configuration) where its output has at most this many
# m-blocks (batch-1 sizes) or its input at most 4 channels (RGB first layers). Measured on the H200
# (bench/analysis.md: ResNet-18/50 and MobileNetV2, per layer in a chain against the tuned
# im2col / implicit choices): the default configuration took 0.70x-0.93x their time on such
# convs at batch 1 but for one strided 7x7-output layer, the first convs 0.69x-0.85x at batch 1
# and 8; on bigger outputs (batch 8 from 28x28) up to 1.3x, and on 1x1 strided convs 1.1x-2.5x.
PATCH_DEFAULT_MAX_MBLOCKS = 1024
# default_patch_config splits K while the workgroups stay at most this many: the H200's shipped
# choices for the batch-1 ResNet 3x3 convs (patch_conv.py, per layer in a chain) run 128 to 512
# workgroups, 7 of 9 at 224 or more (K split 4-16 ways for 16-64 tiles).
PATCH_DEFAULT_MAX_WORKGROUPS = 256


def patch_fits(
    geo: ConvGeometry, limits: DeviceLimits, in_layout: str = "4W4C", out_layout: str = "4W4C"
) -> bool:
    """Whether the patch kernel can run conv `geo` on this device (whole tensors in one binding,
    a configuration that fits)."""
    try:
        chunks = _split.m_chunks(
            limits, geo, False, in_layout, out_layout, MAX_DISPATCH_MBLOCKS, a_matrix=False
        )
        default_patch_config(geo, limits)
    except ValueError:
        return False
    return whole_tensors(chunks, _split.channel_slices(limits, geo))


def whole_tensors(chunks: Sequence[_split.Chunk], slices: Sequence[tuple[int, int]]) -> bool:
    """Whether a conv's chunks and channel slices are one each, binding whole tensors (what the
    patch kernel needs)."""
    return len(chunks) == 1 and len(slices) == 1 and chunks[0].x_win is None and chunks[0].y_win is None


def untuned_method(method: str, geo: ConvGeometry, in_layout: str, limits: DeviceLimits) -> str:
    """The method `method` (as asked: "auto" or another) runs with where no measured choice
    exists: `resolve_method`'s, except that "auto" on a GPU takes the patch kernel where it was
    measured faster untuned (PATCH_DEFAULT_MAX_MBLOCKS)."""
    resolved = resolve_method(method, geo, in_layout)
    if (
        method == "auto"
        and not limits.on_cpu
        and resolved in ("im2col_4w4c", "implicit_4w4c")
        and geo.groups == 1
        and geo.KH * geo.KW > 1
        and (geo.m_blocks <= PATCH_DEFAULT_MAX_MBLOCKS or geo.C_in <= 4)
        and patch_fits(geo, limits, in_layout)
    ):
        return "patch_4w4c"
    return resolved


def default_patch_config(geo: ConvGeometry, limits: DeviceLimits) -> GemmConfig:
    """conv_patch_4w4c.wgsl's untuned configuration: the biggest tile of 4 rows x 4 m-blocks or
    less (no bigger than the output, unless only a bigger one has threads enough for the loads),
    8 threads along channel blocks (for few channels 4, or more where the loads need them), then
    the most input words a stage, that the loads per thread allow; where the kernel can reduce K
    slices, as many slices (powers of 2) as keep the workgroups at most
    PATCH_DEFAULT_MAX_WORKGROUPS."""
    fitted = [(min(tr, geo.H_out), min(tw, ceil4(geo.W_out))) for tr, tw in PATCH_DEFAULT_TILES]
    for tr, tw in fitted + PATCH_DEFAULT_TILES:  # (bigger than the output: threads to share the loads)
        for wg_n in (8, 4) if ceil4(geo.C_out) > 4 else (4, 8, 16):
            for cb in (8, 4, 2, 1):
                consts = {"TR": tr, "TW": tw, "WG_N": wg_n, "TN": 1, "CB": min(cb, geo.C_in // 4)}
                if patch_config_error(limits, consts, geo) is None:
                    groups = (geo.N * -(-geo.H_out // consts["TR"]) * -(-ceil4(geo.W_out) // consts["TW"])
                              * -(-ceil4(geo.C_out) // wg_n))  # fmt: skip
                    splits = 1
                    while (
                        limits.reduce_in_gemm
                        and groups * splits * 2 <= PATCH_DEFAULT_MAX_WORKGROUPS
                        and geo.C_in // 4 >= splits * 2 * consts["CB"]
                    ):
                        splits *= 2
                    return GemmConfig.make(PATCH_KERNEL, consts, splits)
    raise ValueError(f"method 'patch_4w4c': no configuration fits {limits.name} for this conv")


# ---- pass specs ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Bound:
    """A buffer bound by role, whole or as a window [offset, offset + size) in bytes. Roles:
    "x", "y" (the call's input and output), "weights" (prepacked for C_in/groups = `cin_pg`),
    "weights_dw" (depthwise-packed), "chan" (per-channel epilogue records), "residual" (the
    tensor a fused add reads), "unused" / "unused_read" (tiny buffers for read-write / read-only
    bindings a kernel variant ignores: one buffer cannot be both in a dispatch) and scratch
    buffers (`ConvPlan.scratch`)."""

    role: str
    offset: int | None = None
    size: int | None = None
    cin_pg: int = 0  # for "weights"

    def window(self, offset: int, size: int) -> Bound:
        return dataclasses.replace(self, offset=offset, size=size)


@dataclass(frozen=True)
class UniformData:
    """A uniform buffer holding these 32-bit words (a struct of uniforms.py, packed)."""

    words: tuple[int, ...]

    @classmethod
    def of(cls, words: np.ndarray) -> UniformData:
        return cls(tuple(int(w) for w in np.asarray(words, np.uint32)))


Resource = Bound | UniformData


@dataclass(frozen=True)
class PassSpec:
    """One dispatch: kernel (a shader library name), its override constants, the resource of
    each of its bindings by the binding's name in the kernel (`var<...> name`), its workgroup
    grid, and a label for errors and timings."""

    kernel: str
    constants: tuple[tuple[str, int | bool], ...]
    bindings: tuple[tuple[str, Resource], ...]
    workgroups: tuple[int, int, int]
    label: str


@dataclass
class ConvPlan:
    """The pass specs of one conv for one input shape and layout, and the scratch buffers they
    bind (role -> bytes)."""

    geo: ConvGeometry
    method: str
    in_layout: str
    out_layout: str
    specs: list[PassSpec]
    scratch: dict[str, int] = field(default_factory=dict)


def _spec(
    kernel: str,
    consts: Mapping[str, int | bool],
    res: Mapping[str, Resource],
    wgs: tuple[int, int, int],
    label: str,
) -> PassSpec:
    return PassSpec(kernel, tuple(sorted(consts.items())), tuple(res.items()), wgs, label)


def conv_params(geo: ConvGeometry, mb_base: int, m_count: int) -> np.ndarray:
    """The ConvParams uniform of m-blocks [mb_base, mb_base + m_count) of `geo`."""
    return CONV_PARAMS.pack(
        h_out=geo.H_out, w_out=geo.W_out, w4_out=ceil4(geo.W_out), k4=geo.K // 4,
        kh=geo.KH, kw=geo.KW, stride_h=geo.stride[0], stride_w=geo.stride[1],
        pad_h=geo.padding[0], pad_w=geo.padding[1], dil_h=geo.dilation[0], dil_w=geo.dilation[1],
        cin_pg=geo.C_in_per_group, taps_pg=geo.KH * geo.KW * geo.C_in_per_group, k_pg=geo.K_per_group,
        mb_base=mb_base, m_count=m_count,
    )  # fmt: skip


@dataclass(frozen=True)
class Residual:
    """A quantized add fused into a conv's epilogue (kernels/epilogue.wgsl): the conv's int8
    output plus a residual int8 tensor of the output's shape and layout, computed as the add
    pass (ops.QAdd, kernels/add_q8.wgsl) computes it from the conv's output bytes, so the bytes
    are those of the two passes. `ops.QAdd.residual` makes one from an add."""

    zero_point: int  # the residual tensor's
    scale: float  # the residual tensor's
    output_zero_point: int  # the add's output's
    requant: AddRequant  # the add's, operands in the graph's order
    relu: bool
    q_max: int  # the add's upper clamp (relu6's quantized 6; else 127)
    residual_first: bool  # the residual is the add's first operand (a), the conv's output b

    def gemm_fields(self) -> dict[str, int | float]:
        """GemmParams' residual fields."""
        rq = self.requant
        return dict(res_first=int(self.residual_first), add_m_a=rq.m_a, add_m_b=rq.m_b, add_fix_a=rq.fix_a,
                    add_fix_b=rq.fix_b, add_fix_e=rq.fix_e, add_relu=int(self.relu), add_q_max=self.q_max)  # fmt: skip


# The quantize uniform of a conv whose input is already int8 (bound, never read).
_NO_QUANTIZE = UniformData.of(QUANTIZE_PARAMS.pack(inv_scale=0.0, scale_m=0, scale_e=0))

_NO_RESIDUAL: dict[str, int | float] = dict(
    res_first=0, add_m_a=0.0, add_m_b=0.0, add_fix_a=0, add_fix_b=0, add_fix_e=1, add_relu=0, add_q_max=127
)


@dataclass(frozen=True)
class QuantizedInput:
    """A conv whose input is the caller's float32 NCHW tensor (role "x"), quantized as the conv
    loads it (conv_patch_4w4c.wgsl's QUANT_IN) with the conv's input zero point and `params`
    (the QuantizeParams words, `ops.quantize_params`): the bytes quantize_pack.wgsl would write
    (one function, quantize_word.wgsl), and one dispatch less. `channels`: the tensor's C (the
    kernel geometry's may be rounded up to 4)."""

    channels: int
    params: tuple[int, ...]


def dw_in_gemm_config(k4: int) -> GemmConfig:
    """The GEMM configuration of a 1x1 conv that computes a depthwise conv's output as its A (K =
    4*k4 columns): small tiles (each thread computes one A block of a stage), K split into
    slices of 2 stages, reduced in the GEMM where the device can. Each workgroup computes the
    depthwise output its slice needs, so more slices spread that work: on the H200
    (bench/probes/depthwise_fusion.py) MobileNetV2 took 1.7x the unfused GPU time with the
    1x1 convs' own configurations, 1.14x-1.17x (batch 1) and 0.98x-1.03x (batch 8) with these."""
    consts = {"WG_M": 8, "WG_N": 8, "BK": 8, "TM": 1, "TN": 1}
    return GemmConfig.make("gemm_q8_tiled.wgsl", consts, max(1, min(16, -(-k4 // 16))), "gemm")


@dataclass(frozen=True)
class DwInput:
    """A depthwise conv whose output is a 1x1 conv's input, computed by that conv's GEMM as it
    stages its A tiles (DW_IN_KERNEL's DW_IN, kernels/dw_in.wgsl) instead of written by a
    dispatch of its own: the same bytes, one dispatch and one round trip through memory less.
    The plan's "x" is then the depthwise conv's input, "dw_aux" its records and weights (the
    layout dw_in.wgsl reads). `geo`: the depthwise conv's kernel geometry."""

    spec: ConvSpec
    geo: ConvGeometry


def gemm_params(
    conv: ConvSpec,
    geo: ConvGeometry,
    base: int,
    count: int,
    k4_row: int,
    splits: int = 1,
    kspan: int = 0,
    g_base: int = 0,
    residual: Residual | None = None,
) -> np.ndarray:
    """The GemmParams uniform (epilogue.wgsl) of m-blocks [base, base + count) of `geo`: A's
    row stride k4_row in k-blocks, `splits` K slices of `kspan` k-blocks, first group g_base,
    and the residual add fused after the requantization (None: none)."""
    return GEMM_PARAMS.pack(
        m_count=count, mb_base=base, k4=k4_row, k4_pg=geo.K_per_group // 4,
        c4_out=ceil4(geo.C_out), cout_pg=geo.C_out_per_group, c_out=geo.C_out,
        h_out=geo.H_out, w4_out=ceil4(geo.W_out), w_out=geo.W_out,
        zp_in=conv.input_zero_point, zp_out=conv.output_zero_point,
        relu=int(conv.activation in ("relu", "relu6")), splits=splits, kspan=kspan, g_base=g_base,
        q_max=activation_bounds(conv.activation, conv.output_scale, conv.output_zero_point)[1],
        **(_NO_RESIDUAL if residual is None else residual.gemm_fields()),
    )  # fmt: skip


def plan_passes(
    conv: ConvSpec,
    geo: ConvGeometry,
    method: str,
    in_layout: str,
    out_layout: str,
    gemm: GemmConfig | None,
    limits: DeviceLimits,
    residual: Residual | None = None,
    quantized_input: QuantizedInput | None = None,
    dw_input: DwInput | None = None,
) -> ConvPlan:
    """The passes of `conv` on an input of kernel geometry `geo` (kernel_geometry) in
    `in_layout`, writing `out_layout`, with `method` (resolved) and GEMM configuration `gemm`
    (None: default_gemm_config per chunk; ignored where the tiled kernel cannot serve): an
    im2col pass (none for pointwise and implicit) and the GEMM passes, per chunk of m-blocks
    (and per slice of output channels) such that A, the input and output windows and the
    weights each fit one binding (_split.py; one chunk and one slice, binding whole tensors,
    when all fit); or one depthwise pass per chunk. With `residual`, every epilogue adds the
    tensor bound as role "residual" (the output's shape and layout, bound in the output's
    windows) to the requantized output. With `quantized_input` (method patch_4w4c only), "x" is
    a float32 NCHW tensor the conv quantizes as it loads it. With `dw_input` (method pointwise,
    4W4C, the tiled GEMM), "x" is that depthwise conv's input and the GEMM computes its output."""
    in_shape = (geo.N, geo.C_in, geo.H, geo.W)
    k4 = geo.K // 4
    k4_pg = geo.K_per_group // 4
    pointwise = method == "pointwise"
    implicit = method == "implicit_4w4c"  # the GEMM gathers A from the input: no A matrix
    depthwise = method == "depthwise_4w4c"  # one kernel reads the input: no A, no GEMM
    patch = method == "patch_4w4c"  # one kernel, its input patches staged in shared memory
    chunks = _split.m_chunks(
        limits, geo, pointwise, in_layout, out_layout, MAX_DISPATCH_MBLOCKS,
        a_matrix=not (implicit or depthwise or patch),
    )  # fmt: skip
    slices = _split.channel_slices(limits, geo)
    weights = Bound("weights", cin_pg=geo.C_in_per_group)
    chan = Bound("chan")
    s_c4_out = int(TENSOR_DESC.get(tensor_desc(geo.output_shape, out_layout, 0), "s_c4"))
    plan = ConvPlan(geo, method, in_layout, out_layout, [])
    out_zp = conv.output_zero_point if residual is None else residual.output_zero_point

    def out_binds(y_win: tuple[int, int, int] | None, base: int) -> dict[str, Resource]:
        """The epilogue's output desc and residual, for output windows `y_win` whose channel
        block 0 is word `base` of the tensor."""
        od = UniformData.of(tensor_desc(geo.output_shape, out_layout, out_zp, base))
        if residual is None:
            return {"od": od, "res": Bound("unused_read"), "rd": od}
        r_bind = Bound("residual") if y_win is None else Bound("residual", y_win[0], y_win[1])
        rd = UniformData.of(tensor_desc(geo.output_shape, out_layout, residual.zero_point, base))
        return {"od": od, "res": r_bind, "rd": rd}

    dw = None if dw_input is None else _dw_in_binds(dw_input, geo, method, in_layout, chunks, slices, limits)
    if quantized_input is not None and not patch:
        raise ValueError(f"an input quantized as it is loaded needs method 'patch_4w4c' (method {method!r})")
    if patch:
        if not whole_tensors(chunks, slices):
            raise ValueError(
                "method 'patch_4w4c' needs the input, the output and the weights each in one "
                f"binding ({limits.max_binding_size} bytes on {limits.name}); use 'implicit_4w4c'"
            )
        cfg = gemm if gemm is not None and gemm.kernel == PATCH_KERNEL else default_patch_config(geo, limits)
        why = patch_config_error(limits, cfg.consts, geo)
        if why:
            raise ValueError(f"patch config: {PATCH_KERNEL} cannot take {cfg.consts}: {why}")
        outs = out_binds(None, 0)
        plan.specs.append(
            _patch_spec(plan, conv, geo, cfg, in_layout, outs, limits, residual, quantized_input)
        )
        return plan
    if not (pointwise or implicit or depthwise):
        plan.scratch["a"] = 16 * k4 * max(c.count for c in chunks)
    for ch in chunks:
        base, count = ch.base, ch.count
        x_bind = Bound("x") if ch.x_win is None else Bound("x", ch.x_win[0], ch.x_win[1])
        y_bind = Bound("y") if ch.y_win is None else Bound("y", ch.y_win[0], ch.y_win[1])
        y_base = 0 if ch.y_win is None else ch.y_win[2]
        a_bind = x_bind  # pointwise: the input is A; implicit: A is gathered from it
        x_base = 0 if ch.x_win is None or pointwise else ch.x_win[2]
        in_desc = UniformData.of(tensor_desc(in_shape, in_layout, conv.input_zero_point, x_base))
        cp = UniformData.of(conv_params(geo, base, count))
        if dw is not None:  # A is computed from the depthwise conv's input (whole tensors)
            in_desc, cp = dw[2], dw[3]
        if depthwise:  # the whole output's channels: its weights and records are small
            gp = UniformData.of(gemm_params(conv, geo, base, count, k4, residual=residual))
            outs = out_binds(ch.y_win, y_base)
            kind = "cpu" if limits.on_cpu else "gpu"
            small = geo.KH * geo.KW <= DEPTHWISE_UNROLL_TAPS[kind]
            wpt = DEPTHWISE_WPT[kind]
            consts = {"WG": DEPTHWISE_WG, "KH": geo.KH if small else 0, "KW": geo.KW if small else 0,
                      "RESIDUAL": residual is not None, "WPT": wpt}  # fmt: skip
            res: dict[str, Resource] = {
                "x": x_bind, "wts": Bound("weights_dw"), "chan": chan, "o": y_bind, "od": outs["od"],
                "p": gp, "xd": in_desc, "cv": cp, "res": outs["res"], "rd": outs["rd"],
            }  # fmt: skip
            wgs = limits.workgroups(-(-count * ceil4(geo.C_out) * (4 // wpt) // DEPTHWISE_WG))
            plan.specs.append(_spec("depthwise_4w4c.wgsl", consts, res, wgs, "depthwise_4w4c"))
            continue
        if not (pointwise or implicit):
            a_bind = Bound("a", 0, 16 * k4 * count)
            im2col_consts, threads = im2col_pass_shape(limits.on_cpu, method, count, k4)
            wgs = limits.workgroups(-(-threads // im2col_consts["WG"]))
            im2col_res: dict[str, Resource] = {"src": x_bind, "dst": a_bind, "d": in_desc, "p": cp}
            plan.specs.append(_spec(f"{method}.wgsl", im2col_consts, im2col_res, wgs, method))
        for c4_lo, c4_hi in slices:
            # Output channel block c4 of the slice is block c4_lo + c4 of the tensor.
            outs = out_binds(ch.y_win, y_base - c4_lo * s_c4_out)
            sub_geo, g_base = geo, 0
            w_bind, chan_bind = weights, chan
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
                w_bind = weights.window(16 * k4_pg * c4_lo, 16 * k4_pg * (c4_hi - c4_lo))
                chan_bind = chan.window(CHAN_BLOCK_BYTES * c4_lo, CHAN_BLOCK_BYTES * (c4_hi - c4_lo))
            plan.specs += _gemm_specs(
                plan, conv, sub_geo, a_bind, base, count, outs, (in_desc, cp), w_bind, chan_bind,
                y_bind, implicit, k4, g_base, gemm, limits, residual, None if dw is None else dw[:2],
            )  # fmt: skip
    return plan


def _dw_in_binds(
    dw: DwInput,
    geo: ConvGeometry,
    method: str,
    in_layout: str,
    chunks: Sequence[_split.Chunk],
    slices: Sequence[tuple[int, int]],
    limits: DeviceLimits,
) -> tuple[Resource, Resource, UniformData, UniformData]:
    """The DW_IN bindings of a 1x1 conv (kernel geometry `geo`) computing depthwise conv `dw`'s
    output as its A: its records and weights, its GemmParams, its input's TensorDesc and its
    ConvParams; or ValueError naming the rule the pair breaks."""
    g = dw.geo
    if method != "pointwise" or in_layout != "4W4C" or geo.groups != 1:
        raise ValueError(f"a depthwise conv's output as A needs a pointwise conv on 4W4C (method {method!r})")
    dw_out = (g.N, align4(g.C_out), g.H_out, g.W_out)  # (the 1x1 conv's kernel geometry pads C to 4)
    if not (g.groups == g.C_in == g.C_out and dw_out == (geo.N, align4(geo.C_in), geo.H, geo.W)):
        raise ValueError(
            f"the depthwise conv's output {(g.N, g.C_out, g.H_out, g.W_out)} is not this conv's "
            f"input {(geo.N, geo.C_in, geo.H, geo.W)}, or it is not depthwise"
        )
    check_binding(limits, "the depthwise conv's input", 4 * packed_words((g.N, g.C_in, g.H, g.W), "4W4C"))
    if not whole_tensors(chunks, slices):
        raise ValueError(
            f"a depthwise conv's output as A needs this conv's tensors each in one binding "
            f"({limits.max_binding_size} bytes on {limits.name})"
        )
    m_count = ceil4(g.W_out) * g.H_out * g.N
    dq = UniformData.of(gemm_params(dw.spec, g, 0, m_count, ceil4(g.C_out)))
    desc = UniformData.of(tensor_desc((g.N, g.C_in, g.H, g.W), "4W4C", dw.spec.input_zero_point, 0))
    return Bound("dw_aux"), dq, desc, UniformData.of(conv_params(g, 0, m_count))


def k_slices(total: int, splits: int, step: int) -> tuple[int, int]:
    """`total` K units split into at most `splits` slices of a whole number of `step`s: (the
    slices there are, the units a slice; the last slice may be shorter)."""
    per_slice = -(-total // splits)
    span = -(-per_slice // step) * step
    return -(-total // span), span


def _patch_spec(
    plan: ConvPlan,
    conv: ConvSpec,
    geo: ConvGeometry,
    cfg: GemmConfig,
    in_layout: str,
    outs: Mapping[str, Resource],
    limits: DeviceLimits,
    residual: Residual | None,
    quantized_input: QuantizedInput | None = None,
) -> PassSpec:
    """The one pass of method patch_4w4c over the whole input and output (`cfg`: its constants,
    checked, and K slices: input words split between workgroups, reduced in the kernel, which
    needs a device that orders that, `limits.reduce_in_gemm`); with `quantized_input`, "x" is the
    float32 NCHW input, quantized as the patch is loaded."""
    c = cfg.consts
    count = geo.m_blocks
    c4_in = geo.C_in // 4
    splits = min(cfg.splits, -(-c4_in // c["CB"]))
    if splits > 1 and not limits.reduce_in_gemm:
        raise ValueError(
            f"method 'patch_4w4c' splits K only where the kernel can reduce the slices itself "
            f"(Vulkan GPUs); {limits.name} cannot (config splits={cfg.splits})"
        )
    splits, kspan = k_slices(c4_in, splits, c["CB"])  # input words a slice
    qi = quantized_input
    # A float input's desc gives the kernel its C, H, W and zero point (its strides are unused).
    x_shape = (geo.N, geo.C_in if qi is None else qi.channels, geo.H, geo.W)
    if qi is not None:
        if not 1 <= qi.channels <= geo.C_in:
            raise ValueError(f"a quantized input has 1 to {geo.C_in} channels, got {qi.channels}")
        check_binding(limits, "the float32 input", 4 * int(np.prod(x_shape)))
    in_desc = UniformData.of(tensor_desc(x_shape, in_layout, conv.input_zero_point, 0))
    q_params = _NO_QUANTIZE if qi is None else UniformData(qi.params)
    gp = gemm_params(conv, geo, 0, count, geo.K // 4, splits, kspan, residual=residual)
    res: dict[str, Resource] = {
        "x": Bound("x"), "wts": Bound("weights", cin_pg=geo.C_in_per_group), "chan": Bound("chan"),
        "o": Bound("y"), "od": outs["od"], "p": UniformData.of(gp),
        "xd": in_desc, "cv": UniformData.of(conv_params(geo, 0, count)), "res": outs["res"], "rd": outs["rd"],
        "ksum": Bound("unused"), "qp": q_params,
    }  # fmt: skip
    tiles = geo.N * -(-geo.H_out // c["TR"]) * -(-ceil4(geo.W_out) // c["TW"])
    grid = (-(-ceil4(geo.C_out) // (c["TN"] * c["WG_N"])), tiles, splits)
    if max(grid) > limits.max_workgroups:
        raise ValueError(f"patch_4w4c grid {grid} exceeds {limits.max_workgroups} workgroups per dimension")
    if splits > 1:  # 16 sums a tile position, then an arrival counter a workgroup tile
        ksum_bytes = 4 * (16 * count * ceil4(geo.C_out) + grid[0] * grid[1])
        check_binding(limits, "the split-K sums", ksum_bytes)
        ksum = Bound(f"ksums{len([r for r in plan.scratch if r.startswith('ksums')])}")
        plan.scratch[ksum.role] = ksum_bytes
        res["ksum"] = ksum
    consts = {
        **c, "KH": geo.KH, "KW": geo.KW, "SH": geo.stride[0], "SW": geo.stride[1],
        "DH": geo.dilation[0], "DW": geo.dilation[1], "RESIDUAL": residual is not None, "REDUCE": splits > 1,
        "QUANT_IN": qi is not None, "STEP_STORES": True,
    }  # fmt: skip
    return _spec(
        PATCH_KERNEL,
        consts,
        res,
        grid,
        "conv_patch_4w4c"
        + ("(split-K, reduced in it)" if splits > 1 else "")
        + ("(input quantized in it)" if qi is not None else ""),
    )


def _gemm_specs(
    plan: ConvPlan,
    conv: ConvSpec,
    geo: ConvGeometry,
    a_bind: Bound,
    base: int,
    count: int,
    outs: Mapping[str, Resource],
    conv_binds: tuple[UniformData, UniformData],
    weights: Bound,
    chan: Bound,
    y_bind: Bound,
    implicit: bool,
    k4_row: int,
    g_base: int,
    gemm: GemmConfig | None,
    limits: DeviceLimits,
    residual: Residual | None,
    dw: tuple[Resource, Resource] | None = None,
) -> list[PassSpec]:
    """GEMM pass specs for m-blocks [base, base + count) whose A is bound as `a_bind` (with
    implicit=True: the 4W4C input, A gathered on the fly using conv_binds = (input desc,
    conv params) uniforms, which the tiled kernel always binds). For a slice of whole groups,
    geo is the slice's own geometry, k4_row A's row stride in blocks (all groups) and g_base
    the slice's first group. Split-K partial sums go to a scratch buffer of their own. `outs`:
    the epilogue's output desc and residual bindings (plan_passes' out_binds). With `dw` = (the
    depthwise conv's records and weights, its GemmParams), A is that conv's output computed
    from a_bind (DW_IN; conv_binds then describe it)."""
    cfg = gemm_config_for(geo, count, gemm, limits)
    tiled = cfg.tiled
    if implicit and not tiled:
        raise ValueError("method 'implicit_4w4c' needs groups == 1 or C_out/groups % 4 == 0")
    if dw is not None:
        if cfg.kernel != "gemm_q8_tiled.wgsl":  # (DW_IN_KERNEL takes its configurations)
            raise ValueError(
                f"a depthwise conv's output as A needs the tiled GEMM's configuration ({cfg.kernel})"
            )
        cfg = dataclasses.replace(cfg, kernel=DW_IN_KERNEL)
    consts, splits = cfg.consts, cfg.splits
    k4_pg = geo.K_per_group // 4
    c4_out = ceil4(geo.C_out)
    if tiled:
        why = tiled_config_error(limits, consts, cfg.kernel)
        if why:
            raise ValueError(f"gemm config: {cfg.kernel} cannot take {consts}: {why}")
        # Fewer K slices where their partial sums would not fit one binding (big chunks).
        while splits > 1 and 64 * splits * count * c4_out > limits.max_binding_size:
            splits //= 2
        bk = consts["BK"]
        splits, kspan = k_slices(k4_pg, splits, bk)  # k-blocks per slice
    else:
        kspan = k4_pg
    gp = UniformData.of(gemm_params(conv, geo, base, count, k4_row, splits, kspan, g_base, residual))
    res: dict[str, Resource] = {"a": a_bind, "wts": weights, "chan": chan, "o": y_bind, "od": outs["od"],
                                "p": gp, "res": outs["res"], "rd": outs["rd"]}  # fmt: skip
    fused = {"RESIDUAL": residual is not None}  # the epilogue's residual add, compiled in or out
    if cfg.kernel == "gemm_q8.wgsl":
        threads = -(-count // consts["TM"]) * -(-c4_out // consts["TN"])
        wgs = limits.workgroups(-(-threads // consts["WG"]))
        return [_spec("gemm_q8.wgsl", {**consts, **fused}, res, wgs, "gemm_q8")]
    partial = splits > 1
    gemm_consts: dict[str, int | bool] = {**consts, "PARTIAL": partial, "IMPLICIT": implicit, **fused}
    tk = tiled_kernel(cfg.kernel, consts)
    if dw is not None:
        gemm_consts["DW_IN"] = True
    c4_pg = c4_out if geo.groups == 1 else geo.C_out_per_group // 4
    grid = (
        -(-c4_pg // (tk.tn * consts["WG_N"])),
        -(-count // (tk.tm * consts["WG_M"])),
        geo.groups * splits,
    )
    if max(grid) > limits.max_workgroups:
        raise ValueError(f"GEMM grid {grid} exceeds {limits.max_workgroups} workgroups per dimension")
    name = "gemm_q8_implicit" if implicit else "gemm_q8_dw_in" if dw is not None else "gemm_q8_tiled"

    def tail(part: Bound, ksum: Bound) -> dict[str, Resource]:  # the bindings after `rd`
        out: dict[str, Resource] = {"part": part, "xd": conv_binds[0], "cv": conv_binds[1]}
        if tk.reduces:
            out["ksum"] = ksum
        if dw is not None:
            out["dwx"], out["dq"] = dw
        return out

    if not partial:
        res |= tail(Bound("unused"), Bound("unused"))
        return [_spec(cfg.kernel, gemm_consts, res, grid, name)]
    # Split-K reduced inside the GEMM: where the device orders it, the kernel can, and the
    # configuration asks for it ("auto": where reduce_in_gemm_pays).
    asked = cfg.reduce == "gemm" or (cfg.reduce == "auto" and reduce_in_gemm_pays(splits, kspan))
    if limits.reduce_in_gemm and tk.reduces and asked:
        # One dispatch: the slices add into int32 sums, the last one of a tile requantizes them;
        # after it, 16 sums a tile position and one arrival counter a workgroup tile (all zero
        # again when the dispatch ends).
        ksum_bytes = 4 * (16 * count * c4_out + grid[0] * grid[1] * geo.groups)
        check_binding(limits, "the split-K sums", ksum_bytes)
        ksum = Bound(f"ksums{len([r for r in plan.scratch if r.startswith('ksums')])}")
        plan.scratch[ksum.role] = ksum_bytes
        res |= tail(Bound("unused"), ksum)
        reduce_consts = {**gemm_consts, "PARTIAL": False, "REDUCE": True}
        return [_spec(cfg.kernel, reduce_consts, res, grid, f"{name}(split-K, reduced in it)")]
    part_bytes = 16 * 4 * splits * count * c4_out
    check_binding(limits, "the split-K partial sums", part_bytes)
    part = Bound(f"partials{len([r for r in plan.scratch if r.startswith('partials')])}")
    plan.scratch[part.role] = part_bytes
    res |= tail(part, Bound("unused"))
    red_res: dict[str, Resource] = {"part": part, "chan": chan, "o": y_bind, "od": outs["od"], "p": gp,
                                    "res": outs["res"], "rd": outs["rd"]}  # fmt: skip
    return [
        _spec(cfg.kernel, gemm_consts, res, grid, f"{name}(split-K)"),
        _spec("gemm_q8_splitk.wgsl", {"WG": 64, **fused}, red_res, limits.workgroups(-(-count * c4_out // 64)), "gemm_q8_splitk"),
    ]  # fmt: skip
