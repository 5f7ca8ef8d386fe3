"""The WebGPU runtime: one `Device` owns the wgpu device and its caches; ops never create a
device, they take one (or the lazily created default). The Device's jobs live in modules of
their own: adapter choice (adapters.py), shaders and pipelines (pipelines.py), buffers and bind
groups (resources.py), submission and recording (submission.py), GPU timing (timing.py)."""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from typing import Any

import wgpu

from . import _native
from .adapters import ADAPTER_ENV, BACKEND_ENV, NO_ADAPTER_HELP, list_adapters, select_adapter
from .device_core import DeviceLostError, KernelError, NoAdapterError, Pass
from .pipelines import PipelineCache
from .resources import ResourceCache
from .shaders import LIBRARY, ShaderLibrary
from .submission import Submission
from .timing import Timing

__all__ = [
    "ADAPTER_ENV", "BACKEND_ENV", "NO_ADAPTER_HELP", "Device", "DeviceLostError", "KernelError",
    "NoAdapterError", "Pass", "default_device", "get_device", "info", "list_adapters", "recording",
    "select_adapter",
]  # fmt: skip

# Limits the kernels need; requested at the adapter's own maximum so big tensors fit.
REQUESTED_LIMITS = (
    "max-storage-buffer-binding-size",
    "max-buffer-size",
    "max-storage-buffers-per-shader-stage",
    "max-compute-workgroup-storage-size",
    "max-compute-invocations-per-workgroup",
    "max-compute-workgroup-size-x",
    "max-compute-workgroups-per-dimension",
)
# Device(dot4=...): "auto" probes dot4I8Packed, "fallback" forces the by-hand replacement.
DOT4_MODES = ("auto", "fallback")
# Optional features: GPU timestamps for timing passes; subgroup operations (no shipped kernel uses
# them yet: bench/probes/gemm_variants.py's shuffle variants measure whether they pay).
OPTIONAL_FEATURES = ("timestamp-query", "subgroup")


class Device(PipelineCache, ResourceCache, Submission, Timing):
    """One WebGPU device and its caches.

    Args:
        adapter: substring of the adapter name to use (default: $Q8TA_WGPU_ADAPTER, else the best).
        backend: "Vulkan", "Metal", "D3D12" or "OpenGL" (default: $WGPU_BACKEND_TYPE, else any).
        power_preference: "high-performance" (default) or "low-power".
        dot4: "auto" (default): probe WGSL `dot4I8Packed` and use it when it compiles and is exact;
            "fallback": always use the by-hand replacement (kernels/dot4_fallback.wgsl), e.g. to test it.
        loop_bounding: compile kernels with wgpu's forced loop bounding (default False: every
            loop in kernels/ ends by construction, and the counter slows the GEMM; see
            `_native`). Bounds checks stay on either way.

    Features requested: "timestamp-query" (for timing) and "subgroup" where the adapter has them. Limits requested:
    the adapter's own maximum (never more) of storage-binding size, buffer size, storage buffers
    per stage and workgroup sizes (`REQUESTED_LIMITS`). On creation it checks that WGSL
    `dot4I8Packed` compiles and gives the right answer; where it does not, kernels use a by-hand
    fallback. `dot_product()` says how the packed dot product is really computed.

    Threads may share a Device: its caches and every submit/readback are guarded by `lock` (an
    RLock; QConv2d calls hold it from upload to readback). wgpu errors surface as KernelError
    (compile, validation, dispatch) or DeviceLostError (then `lost` holds wgpu's message).

    `recording()` collects the dispatches of many calls (e.g. a chain of QConv2d calls on
    QTensors) into one submit, which cuts the host time per call several-fold.
    """

    def __init__(
        self,
        adapter: str | None = None,
        *,
        backend: str | None = None,
        power_preference: str = "high-performance",
        dot4: str = "auto",
        loop_bounding: bool = False,
        library: ShaderLibrary | None = None,
    ) -> None:
        if dot4 not in DOT4_MODES:
            raise ValueError(f"dot4 must be one of {', '.join(DOT4_MODES)}, got {dot4!r}")
        self.adapter = select_adapter(adapter, backend, power_preference)
        feats = [f for f in OPTIONAL_FEATURES if f in self.adapter.features]
        lim = self.adapter.limits
        limits = {k: lim[k] for k in REQUESTED_LIMITS if k in lim}
        self.device = self.adapter.request_device_sync(
            label="q8ta_wgpu", required_features=feats, required_limits=limits
        )
        self.queue = self.device.queue
        self.limits = dict(self.device.limits)
        self.features = set(self.device.features)
        self.has_timestamps = "timestamp-query" in self.features
        self.has_subgroups = "subgroup" in self.features
        # Timestamps come back in the GPU's ticks (wgpu-native does not normalize by default).
        self.timestamp_period_ns = _native.timestamp_period(self.queue) or 1.0
        self._submitter = _native.submitter(self.device, self.queue)  # None: wgpu-py's objects
        self.lock = threading.RLock()
        self.lost: str | None = None  # wgpu's message once the device is found lost
        self._modules: dict[tuple, Any] = {}
        self._pipelines: dict[tuple, Any] = {}
        self._bind_groups: OrderedDict[tuple, Any] = OrderedDict()
        self._bg_keys: dict[int, set[tuple]] = {}  # id(buffer or pipeline) -> its cached bind groups
        self._uniforms: OrderedDict[bytes, Any] = OrderedDict()
        self._staging: Any = None  # the readback buffer kept between reads (resources.read)
        self.loop_bounding = loop_bounding
        self.reduce_in_gemm = self.default_reduce_in_gemm
        self.spin_wait_s = self.default_spin_wait_s
        self.library = library if library is not None else LIBRARY  # WGSL sources by name
        self._recording = 0  # open recording() blocks (any thread's)
        self._pending: list[Pass] = []  # passes recorded, not yet submitted
        self.dot4_forced = dot4 == "fallback"
        self.dot4_mode = "fallback" if self.dot4_forced else self._probe_dot4()

    # ---- facts -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.adapter.info.get("device", "")

    @property
    def backend(self) -> str:
        return self.adapter.info.get("backend_type", "")

    @property
    def on_cpu(self) -> bool:
        """Whether the adapter is a CPU driver (lavapipe): some measured defaults differ there."""
        return self.adapter.info.get("adapter_type") == "CPU"

    @property
    def default_reduce_in_gemm(self) -> bool:
        """Whether split-K GEMMs reduce their slices themselves here (`reduce_in_gemm`, which
        the planner reads; settable, then plan again): on Vulkan GPUs. Not on CPU adapters: on
        lavapipe the slices' atomic adds made split-K convs a median 1.15x slower than the
        reduce pass (bench/analysis.md)."""
        return self.backend == "Vulkan" and not self.on_cpu

    SPIN_WAIT_S = 0.02  # longest busy wait for a readback on a GPU, then blocking waits

    @property
    def default_spin_wait_s(self) -> float:
        """Seconds a readback waits for the GPU by polling without blocking before it blocks
        (`spin_wait_s`, settable; 0: block at once). On GPUs SPIN_WAIT_S: on the H200 a blocking
        wait returned 97-143 us after the GPU had finished a network's work, a busy wait 42-64 us
        (bench/probes/completion_wait.py, two runs). 0 on CPU adapters: there the busy wait takes
        a core from the driver's threads (lavapipe ran a network 1.4x as long)."""
        return 0.0 if self.on_cpu else self.SPIN_WAIT_S

    @property
    def max_binding_size(self) -> int:
        """Largest storage binding in bytes (lavapipe: 128 MiB)."""
        return int(self.limits["max-storage-buffer-binding-size"])

    @property
    def max_buffer_size(self) -> int:
        return int(self.limits["max-buffer-size"])

    @property
    def max_workgroups(self) -> int:
        return int(self.limits["max-compute-workgroups-per-dimension"])

    def info(self) -> dict[str, Any]:
        """Adapter name, backend, driver, features and the limits that matter to q8ta_wgpu."""
        ai = self.adapter.info
        dot_kind, dot_detail = self.dot_product()
        return {
            "adapter": ai.get("device", ""),
            "vendor": ai.get("vendor", ""),
            "backend": ai.get("backend_type", ""),
            "adapter_type": ai.get("adapter_type", ""),
            "driver": ai.get("description", ""),
            "dot4I8Packed": self.dot4_mode,
            "dot_product": dot_kind,
            "dot_product_detail": dot_detail,
            "timestamps": self.has_timestamps,
            "timestamp_period_ns": self.timestamp_period_ns,
            "features": sorted(self.features),
            "limits": {k: self.limits[k] for k in REQUESTED_LIMITS if k in self.limits},
            "wgpu": wgpu.__version__,
        }

    def __repr__(self) -> str:
        return f"<q8ta_wgpu.Device {self.name!r} ({self.backend})>"


_default: Device | None = None
_default_lock = threading.Lock()


def default_device() -> Device:
    """The process-wide Device, created on first use."""
    global _default
    with _default_lock:
        if _default is None or _default.lost is not None:  # a lost device is replaced
            _default = Device()
        return _default


def get_device(device: Device | None) -> Device:
    if device is None:
        return default_device()
    if not isinstance(device, Device):
        raise TypeError(f"device must be a q8ta_wgpu.Device or None, got {type(device).__name__}")
    return device


def recording(device: Device | None = None) -> contextlib.AbstractContextManager[Device]:
    """`Device.recording()` of `device` (default: the default device): calls in the block are
    submitted together at its end."""
    return get_device(device).recording()


def info(device: Device | None = None) -> dict[str, Any]:
    """Adapter name, backend, driver, features and the limits that matter (of the default device)."""
    return get_device(device).info()
