"""The WebGPU runtime: one `Device` owns the wgpu device and caches shader modules, pipelines
and bind groups; ops never create a device, they take one (or the lazily created default)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import wgpu

from . import _native
from .geometry import fold_workgroups
from .shaders import LIBRARY, ShaderLibrary

ADAPTER_ENV = "Q8TA_WGPU_ADAPTER"
BACKEND_ENV = "WGPU_BACKEND_TYPE"

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
# Optional features: GPU timestamps for timing passes.
OPTIONAL_FEATURES = ("timestamp-query",)

_ADAPTER_RANK = {"DiscreteGPU": 0, "IntegratedGPU": 1, "VirtualGPU": 2, "CPU": 3}
_BACKEND_RANK = {"Vulkan": 0, "Metal": 1, "D3D12": 2, "OpenGL": 3}

NO_ADAPTER_HELP = (
    "No WebGPU adapter was found{detail}. q8ta_wgpu needs a GPU driver reachable by wgpu: on "
    "Debian/Ubuntu without a GPU install Mesa's software Vulkan driver with "
    "`sudo apt-get update && sudo apt-get install -y mesa-vulkan-drivers` (lavapipe); on other "
    "Linux distributions install the Mesa Vulkan drivers package (Fedora: mesa-vulkan-drivers, "
    "Arch: vulkan-swrast, Alpine: mesa-vulkan-swrast); macOS (Metal) and Windows (D3D12) need "
    "nothing extra."
)


class NoAdapterError(RuntimeError):
    """Raised when no WebGPU adapter (matching the request) exists on this machine."""


class KernelError(RuntimeError):
    """A WGSL kernel failed to compile or validate; the message names the file and has naga's text."""


class DeviceLostError(RuntimeError):
    """The WebGPU device is gone (driver reset, device destroyed): create a new `Device`.
    wgpu-py 0.32 has no `device.lost` promise (NotImplementedError); a lost device shows up as
    a validation error "Parent device is lost" on the next call, which `Device` turns into this."""


def _is_device_lost(message: str) -> bool:
    m = message.lower()
    return "device is lost" in m or "device lost" in m or "device was lost" in m


_DOT4_PROBE = """
@group(0) @binding(0) var<storage, read> a: array<u32>;
@group(0) @binding(1) var<storage, read_write> o: array<i32>;
@compute @workgroup_size(1) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  o[g.x] = dot4I8Packed(a[2u * g.x], a[2u * g.x + 1u]);
}
"""


@dataclass(frozen=True)
class Pass:
    """One compute dispatch: a pipeline, its bind group and a workgroup count (x, y, z)."""

    pipeline: Any
    bind_group: Any
    workgroups: tuple[int, int, int]
    label: str = ""


def _adapter_sort_key(adapter: Any) -> tuple[int, int]:
    info = adapter.info
    return (
        _ADAPTER_RANK.get(info.get("adapter_type", ""), 4),
        _BACKEND_RANK.get(info.get("backend_type", ""), 4),
    )


def list_adapters() -> list[dict[str, Any]]:
    """Every adapter wgpu sees: name, backend and type, in the order `Device()` prefers them."""
    ads = sorted(wgpu.gpu.enumerate_adapters_sync(), key=_adapter_sort_key)
    return [
        {
            "name": a.info.get("device", ""),
            "backend": a.info.get("backend_type", ""),
            "type": a.info.get("adapter_type", ""),
            "description": a.info.get("description", ""),
        }
        for a in ads
    ]


def select_adapter(
    name: str | None = None,
    backend: str | None = None,
    power_preference: str = "high-performance",
) -> Any:
    """Pick an adapter: by name substring (argument or $Q8TA_WGPU_ADAPTER), by backend (argument or
    $WGPU_BACKEND_TYPE), else a discrete GPU first, then integrated, virtual, CPU; Vulkan first."""
    name = name if name is not None else os.environ.get(ADAPTER_ENV) or None
    backend = backend if backend is not None else os.environ.get(BACKEND_ENV) or None
    adapters = list(wgpu.gpu.enumerate_adapters_sync())
    if not adapters:
        raise NoAdapterError(NO_ADAPTER_HELP.format(detail=""))
    cands = adapters
    if backend:
        cands = [a for a in cands if a.info.get("backend_type", "").lower() == backend.lower()]
    if name:
        cands = [a for a in cands if name.lower() in a.info.get("device", "").lower()]
    if not cands:
        seen = ", ".join(f"{a.info.get('device')} ({a.info.get('backend_type')})" for a in adapters)
        want = " and ".join(
            s
            for s in (f"name containing {name!r}" if name else "", f"backend {backend!r}" if backend else "")
            if s
        )
        raise NoAdapterError(f"No WebGPU adapter with {want}; available: {seen}")
    if power_preference == "low-power":
        rank = {"IntegratedGPU": 0, "DiscreteGPU": 1, "VirtualGPU": 2, "CPU": 3}
        return min(
            cands, key=lambda a: (rank.get(a.info.get("adapter_type", ""), 4), _adapter_sort_key(a)[1])
        )
    return min(cands, key=_adapter_sort_key)


class Device:
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

    Features requested: "timestamp-query" where the adapter has it (for timing). Limits requested:
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

    BIND_GROUP_CACHE_SIZE = 1024

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
        self.loop_bounding = loop_bounding
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

    def dot_product(self) -> tuple[str, str]:
        """How the kernels' packed int8 dot product runs here: (kind, detail), kind one of
        "native" (the driver's packed-dot instruction: SPIR-V OpSDot), "naga polyfill" (naga
        expands dot4I8Packed into byte extracts, multiplies and adds), "q8ta fallback" (our own
        by-hand replacement, kernels/dot4_fallback.wgsl) or "unknown" (wgpu does not say which naga chose)."""
        if self.dot4_mode == "fallback":
            why = "forced by Device(dot4='fallback')" if self.dot4_forced else "dot4I8Packed failed the probe"
            return "q8ta fallback", f"by-hand extractBits + dot(vec4<i32>) ({why})"
        backend = self.backend
        if backend == "Vulkan":
            from ._vkquery import vulkan_integer_dot_product

            has = vulkan_integer_dot_product(self.name)
            if has is True:
                return "native", (
                    "naga emits SPIR-V OpSDot: the Vulkan driver reports shaderIntegerDotProduct "
                    "(VK_KHR_shader_integer_dot_product), which is what wgpu-hal checks"
                    + ("; a CPU driver (e.g. lavapipe) lowers OpSDot itself" if self.on_cpu else "")
                )
            if has is False:
                return (
                    "naga polyfill",
                    "the Vulkan driver lacks shaderIntegerDotProduct, so naga polyfills OpSDot",
                )
            return "unknown", (
                "naga emits OpSDot if the driver has shaderIntegerDotProduct, else a polyfill; "
                "the Vulkan loader could not be queried to tell which"
            )
        if backend == "OpenGL":
            return (
                "naga polyfill",
                "naga's GLSL backend always polyfills dot4I8Packed (GLSL has no packed dot)",
            )
        if backend == "Metal":
            return "unknown", (
                "naga writes MSL dot(packed_char4, packed_char4) (MSL 2.1+); whether that becomes a "
                "hardware instruction is up to Apple's compiler, which wgpu does not report"
            )
        if backend == "D3D12":
            return "unknown", (
                "naga writes HLSL dot4add_i8packed for shader model 6.4+ (DXC), else a polyfill "
                "(FXC); wgpu does not report which compiler and shader model it used"
            )
        return "unknown", f"no information for backend {backend!r}"

    # ---- dot4I8Packed probe ----------------------------------------------------------------
    def _probe_dot4(self) -> str:
        """'builtin' if WGSL dot4I8Packed compiles and is exact here, else 'fallback'."""
        rng = np.random.default_rng(0)
        words = rng.integers(0, 2**32, size=64, dtype=np.uint64).astype(np.uint32)
        words[:4] = [0x80808080, 0x80808080, 0x7F7F7F7F, 0x80808080]  # extremes: -128*-128, 127*-128
        b = words.view(np.int8).reshape(32, 2, 4).astype(np.int32)
        want = (b[:, 0] * b[:, 1]).sum(axis=1)
        try:
            mod = self._compile(_DOT4_PROBE, "dot4_probe")
            pipe = self.device.create_compute_pipeline(
                layout="auto", compute={"module": mod, "entry_point": "main"}
            )
        except Exception:  # noqa: BLE001 - any compile failure means: use the fallback
            return "fallback"
        src = self.upload(words)
        out = self.buffer(4 * 32)
        bg = self.bind_group(pipe, [src, out])
        self.run([Pass(pipe, bg, (32, 1, 1))])
        got = np.frombuffer(self.read(out), np.int32)
        return "builtin" if np.array_equal(got, want) else "fallback"

    # ---- shaders and pipelines -------------------------------------------------------------
    def _compile(self, src: str, label: str) -> Any:
        """A shader module of WGSL `src`: without loop bounding unless asked for (and where
        this wgpu cannot, with it)."""
        if not self.loop_bounding:
            mod = _native.create_module(self.device, src, label)
            if mod is not None:
                return mod
        return self.device.create_shader_module(code=src, label=label)

    def shader(self, name: str) -> Any:
        """The shader module of `name` (a kernel file or a registered source, includes resolved
        for this device's dot4 mode: shaders.py), compiled once."""
        key = (name, self.dot4_mode)
        mod = self._modules.get(key)
        if mod is None:
            src = self.library.source(name, dot4=self.dot4_mode)
            try:
                mod = self._compile(src, name)
            except wgpu.GPUError as e:
                if _is_device_lost(str(e)):
                    raise self._error(e, f"compiling {name}") from None
                raise KernelError(f"kernel {name} failed to compile on {self.name}:\n{e}") from None
            self._modules[key] = mod
        return mod

    def pipeline(self, name: str, constants: Mapping[str, int | float | bool] | None = None) -> Any:
        """The compute pipeline of kernels/<name> (entry point `main`) with these override
        constants; cached by (file, constants)."""
        consts = dict(sorted((constants or {}).items()))
        key = (name, tuple(consts.items()))
        with self.lock:
            pipe = self._pipelines.get(key)
            if pipe is None:
                mod = self.shader(name)
                stage: dict[str, Any] = {"module": mod, "entry_point": "main"}
                if consts:
                    stage["constants"] = {k: float(v) for k, v in consts.items()}
                try:
                    pipe = self.device.create_compute_pipeline(
                        label=f"{name}{consts or ''}", layout="auto", compute=stage
                    )
                except wgpu.GPUError as e:
                    if _is_device_lost(str(e)):
                        raise self._error(e, f"creating the pipeline of {name}") from None
                    raise KernelError(
                        f"kernel {name} with constants {consts} failed to validate on {self.name}:\n{e}"
                    ) from None
                self._pipelines[key] = pipe
        return pipe

    def bind_group(self, pipeline: Any, resources: Sequence[Any]) -> Any:
        """A bind group for group 0 of `pipeline`, binding i = resources[i] (a buffer, or a
        (buffer, offset, size) triple). Cached while all its buffers live (evicted when one dies)."""
        parts = [(r, 0, r.size) if not isinstance(r, tuple) else r for r in resources]
        key = (id(pipeline), tuple((id(b), off, size) for b, off, size in parts))
        bg = self._bind_groups.get(key)  # fast path: no entry dicts on a hit
        if bg is not None:
            return bg
        entries = [
            {"binding": i, "resource": {"buffer": b, "offset": off, "size": size}}
            for i, (b, off, size) in enumerate(parts)
        ]
        bufs = [b for b, _, _ in parts]
        with self.lock:
            bg = self._bind_groups.get(key)
            if bg is not None:
                self._bind_groups.move_to_end(key)
                return bg
            try:
                bg = self.device.create_bind_group(layout=pipeline.get_bind_group_layout(0), entries=entries)
            except wgpu.GPUError as e:
                raise self._error(
                    e, f"binding buffers to {getattr(pipeline, 'label', '')}", kernel=True
                ) from None
            self._bind_groups[key] = bg
            for obj in (pipeline, *bufs):
                self._track(obj, key)
            while len(self._bind_groups) > self.BIND_GROUP_CACHE_SIZE:
                self._drop_bind_group(next(iter(self._bind_groups)))
        return bg

    # One finalizer per buffer or pipeline (not one per bind group: a long-lived buffer or
    # pipeline would collect a finalizer per call on short-lived buffers, a slow leak).
    def _track(self, obj: Any, key: tuple) -> None:
        keys = self._bg_keys.get(id(obj))
        if keys is None:
            keys = self._bg_keys[id(obj)] = set()
            weakref.finalize(obj, self._forget, id(obj))
        keys.add(key)

    def _drop_bind_group(self, key: tuple) -> None:
        self._bind_groups.pop(key, None)
        for oid in (key[0], *(part[0] for part in key[1])):
            keys = self._bg_keys.get(oid)
            if keys is not None:
                keys.discard(key)

    def _forget(self, oid: int) -> None:
        """Finalizer of a buffer or pipeline: drop the bind groups that used it."""
        with self.lock:
            for key in self._bg_keys.pop(oid, set()):
                self._drop_bind_group(key)

    # ---- buffers -----------------------------------------------------------------------------
    STORAGE = wgpu.BufferUsage.STORAGE | wgpu.BufferUsage.COPY_SRC | wgpu.BufferUsage.COPY_DST
    UNIFORM = wgpu.BufferUsage.UNIFORM | wgpu.BufferUsage.COPY_DST

    def buffer(self, nbytes: int, usage: int | None = None, label: str = "") -> Any:
        """An uninitialised storage buffer of at least nbytes (rounded up to 16, minimum 16)."""
        size = max(16, (int(nbytes) + 15) // 16 * 16)
        if size > self.max_buffer_size:
            raise ValueError(
                f"buffer of {nbytes} bytes exceeds this adapter's max-buffer-size "
                f"({self.max_buffer_size} bytes) on {self.name}"
            )
        try:
            return self.device.create_buffer(size=size, usage=usage or self.STORAGE, label=label)
        except wgpu.GPUError as e:
            raise self._error(e, f"creating a buffer of {size} bytes") from None

    def upload(self, array: np.ndarray, usage: int | None = None, label: str = "") -> Any:
        """A new buffer holding the bytes of `array` (zero-padded to a multiple of 4 bytes)."""
        data = np.ascontiguousarray(array).view(np.uint8).reshape(-1)
        pad = (-data.size) % 16
        if pad or data.size == 0:
            data = np.concatenate([data, np.zeros(pad or 16, np.uint8)])
        buf = self.buffer(data.size, usage, label)
        self.queue.write_buffer(buf, 0, data)
        return buf

    def write(self, buffer: Any, array: np.ndarray, offset: int = 0) -> None:
        """Copy `array`'s bytes into `buffer` at `offset` (length padded to 4 bytes)."""
        data = np.ascontiguousarray(array).view(np.uint8).reshape(-1)
        if data.size % 4:
            data = np.concatenate([data, np.zeros(4 - data.size % 4, np.uint8)])
        # A queue write lands before the next submit's work: recorded passes that read the old
        # bytes go first.
        self.flush()
        try:
            self.queue.write_buffer(buffer, offset, data)
        except wgpu.GPUError as e:
            raise self._error(e, "writing a buffer") from None

    UNIFORM_CACHE_SIZE = 4096

    def uniform(self, words: np.ndarray) -> Any:
        """A read-only uniform buffer holding `words` (a struct of uniforms.py, packed); cached by
        content, so equal parameters give the same buffer (and the same cached bind groups)."""
        data = np.ascontiguousarray(words).tobytes()
        with self.lock:
            buf = self._uniforms.get(data)
            if buf is None:
                buf = self.upload(np.frombuffer(data, np.uint8), self.UNIFORM, "params")
                self._uniforms[data] = buf
                while len(self._uniforms) > self.UNIFORM_CACHE_SIZE:
                    self._uniforms.popitem(last=False)
            else:
                self._uniforms.move_to_end(data)
        return buf

    def read(self, buffer: Any, nbytes: int | None = None, offset: int = 0) -> memoryview:
        """Read back `nbytes` bytes of `buffer` from `offset` (waits for submitted work)."""
        size = buffer.size - offset if nbytes is None else int(nbytes)
        size4 = (size + 3) // 4 * 4
        with self.lock:  # a readback submits and polls the queue: one thread at a time
            self.flush()
            try:
                data = self.queue.read_buffer(buffer, offset, size4)
            except wgpu.GPUError as e:
                raise self._error(e, "reading back a buffer") from None
        return memoryview(data)[:size]

    def sync(self) -> None:
        """Wait until all submitted work is done (a tiny readback: on_submitted_work_done_sync is
        broken in wgpu 0.32)."""
        if not hasattr(self, "_sync_buf"):
            self._sync_buf = self.buffer(16)
        self.read(self._sync_buf, 4)

    # ---- recording ---------------------------------------------------------------------------
    MAX_PENDING = 4096  # recorded passes that force a submit (bounds one command buffer)

    @contextlib.contextmanager
    def recording(self) -> Iterator[Device]:
        """Collect the dispatches of every call in the block, submitted together when the
        outermost block ends (or at `flush()`), in one compute pass, in call order.

            with dev.recording():
                y = conv3(conv2(conv1(x)))  # QTensors: nothing submitted yet
            out = y.numpy()

        Anything that must see the GPU's results or the queue in order submits what is recorded
        first: reading back (`numpy()`, `read`, `sync`), writing a buffer (a numpy input),
        timing. So calls in a block give the same bytes as outside it; what a block saves is
        the host's cost of a submit per call. Blocks nest; the device is shared by threads, so
        a block also collects other threads' calls made meanwhile, in the order they came."""
        with self.lock:
            self._recording += 1
        try:
            yield self
        finally:
            with self.lock:
                self._recording -= 1
                if not self._recording:
                    self.flush()

    def flush(self) -> None:
        """Submit the passes recorded so far (see `recording`); nothing when none are."""
        with self.lock:
            if self._pending:
                passes, self._pending = self._pending, []
                self._dispatch(passes)

    # ---- running -----------------------------------------------------------------------------
    def workgroups(self, count: int) -> tuple[int, int, int]:
        """Fold a 1-D workgroup count into (x, y, 1) with x, y <= max-workgroups-per-dimension;
        kernels rebuild the linear index as gid.x + gid.y * num_workgroups.x * WG."""
        return fold_workgroups(count, self.max_workgroups, self.name)

    def run(
        self, passes: Sequence[Pass], *, timestamps: bool = False, whole: bool = False
    ) -> list[float] | None:
        """Record and submit the passes in one command buffer, in order, all in one compute pass
        (inside `recording()`: record them only). With timestamps=True (and adapter support)
        returns each pass's GPU time in seconds, each timed in its own compute pass; with
        whole=True too, one time: that of the single compute pass running them all, as an
        untimed call runs them (waits for completion)."""
        timed = timestamps and self.has_timestamps
        if timestamps and not timed:
            raise RuntimeError(f"adapter {self.name} has no timestamp-query feature")
        with self.lock:
            if timed:
                self.flush()  # recorded work goes first, untimed
                return self._timed(passes, whole)
            if self._recording:
                self._pending.extend(passes)
                if len(self._pending) >= self.MAX_PENDING:
                    self.flush()
                return None
            self._dispatch(passes)  # (nothing is pending outside a block: its end flushed)
        return None

    def _dispatch(self, passes: Sequence[Pass]) -> None:
        """Submit `passes` in one compute pass: every dispatch of a call (or of a recording) in
        one pass. wgpu orders them and inserts the barriers between dispatches that touch what
        an earlier one wrote; fewer passes and submits = less host time per call."""
        if self._submitter is not None:  # wgpu-native's C calls (_native.Submitter)
            try:
                self._submitter(passes)
            except wgpu.GPUError as e:
                raise self._dispatch_error(e, passes) from None
            return
        enc = self.device.create_command_encoder()
        _encode(enc.begin_compute_pass(), passes)
        self._submit(enc, passes)

    def _timed(self, passes: Sequence[Pass], whole: bool) -> list[float]:
        """Run `passes` with timestamp queries: each in its own compute pass, or (whole) all in
        one; their GPU times in seconds (waits for completion)."""
        enc = self.device.create_command_encoder()
        groups = [list(passes)] if whole else [[p] for p in passes]
        qs = self.device.create_query_set(type="timestamp", count=2 * len(groups))
        for i, group in enumerate(groups):
            tw = {
                "query_set": qs,
                "beginning_of_pass_write_index": 2 * i,
                "end_of_pass_write_index": 2 * i + 1,
            }
            label = group[0].label if len(group) == 1 else None
            _encode(enc.begin_compute_pass(label=label, timestamp_writes=tw), group)
        qbuf = self.device.create_buffer(
            size=16 * len(groups), usage=wgpu.BufferUsage.QUERY_RESOLVE | wgpu.BufferUsage.COPY_SRC
        )
        enc.resolve_query_set(qs, 0, 2 * len(groups), qbuf, 0)
        self._submit(enc, passes)
        t = np.frombuffer(self.queue.read_buffer(qbuf), np.uint64).astype(np.int64)
        qs.destroy()
        qbuf.destroy()
        return [float(d) * self.timestamp_period_ns * 1e-9 for d in (t[1::2] - t[0::2])]

    def _submit(self, enc: Any, passes: Sequence[Pass]) -> None:
        """Finish and submit `enc`. Validation errors of the recorded dispatches surface at
        finish(): raised as KernelError naming the kernels (or DeviceLostError)."""
        try:
            self.queue.submit([enc.finish()])
        except wgpu.GPUError as e:
            raise self._dispatch_error(e, passes) from None

    def _dispatch_error(self, e: Exception, passes: Sequence[Pass]) -> Exception:
        kernels = ", ".join(dict.fromkeys(getattr(p.pipeline, "label", "") or p.label for p in passes))
        return self._error(e, f"dispatch of {kernels}", kernel=True)

    def _error(self, e: Exception, what: str, *, kernel: bool = False) -> Exception:
        """The exception for wgpu error `e` during `what`: DeviceLostError (and the device marked
        lost) when the device is gone, else (kernel=True) KernelError with wgpu's message, else e."""
        msg = str(e).strip()
        if self.lost is not None or _is_device_lost(msg):
            self.lost = self.lost or msg
            return DeviceLostError(
                f"the WebGPU device {self.name!r} was lost ({what} failed): {msg}\n"
                "Create a new q8ta_wgpu.Device (q8ta_wgpu.default_device() does so by itself)."
            )
        return KernelError(f"{what} failed on {self.name}:\n{msg}") if kernel else e

    def keep_busy(self, passes: Sequence[Pass], seconds: float) -> None:
        """Run `passes` back to back for about `seconds` of wall time. GPUs lower their clocks when
        idle (after 1 s idle the H100 ran a GEMM 4.8x slower, and still 2.8x slower after 0.3 s of
        work; 1 s brought it to speed), so timing starts from a busy GPU."""
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            self.run(passes)
            n += 1
            if n % 8 == 0:
                self.sync()  # bounded queue: `seconds` of submitting ~ of GPU work
        self.sync()

    def time_passes(
        self,
        passes: Sequence[Pass],
        *,
        warmup: int = 3,
        repeats: int = 20,
        warm_s: float = 0.0,
        whole: bool = False,
    ) -> np.ndarray:
        """GPU time of each pass, in seconds, over `repeats` runs after `warmup` untimed runs (and
        `warm_s` seconds of keeping the GPU busy with them): an array [repeats, len(passes)] from
        timestamp queries (needs "timestamp-query"). whole=True: [repeats, 1], the time of all
        passes run in one compute pass, as a call runs them."""
        self.keep_busy(passes, warm_s)
        for _ in range(warmup):
            self.run(passes)
        self.sync()
        return np.array([self.run(passes, timestamps=True, whole=whole) for _ in range(repeats)])


def _encode(cp: Any, passes: Sequence[Pass]) -> None:
    """Record `passes` into wgpu-py compute pass encoder `cp` and end it."""
    for p in passes:
        cp.set_pipeline(p.pipeline)
        cp.set_bind_group(0, p.bind_group)
        cp.dispatch_workgroups(*p.workgroups)
    cp.end()


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
