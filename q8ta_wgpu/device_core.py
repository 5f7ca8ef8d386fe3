"""What every part of a Device shares: its state (declared here, set by `Device.__init__`),
the errors it raises, and `Pass`, one dispatch."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any


class NoAdapterError(RuntimeError):
    """Raised when no WebGPU adapter (matching the request) exists on this machine."""


class KernelError(RuntimeError):
    """A WGSL kernel failed to compile or validate; the message names the file and has naga's text."""


class DeviceLostError(RuntimeError):
    """The WebGPU device is gone (driver reset, device destroyed): create a new `Device`.
    wgpu-py 0.32 has no `device.lost` promise (NotImplementedError); a lost device shows up as
    a validation error "Parent device is lost" on the next call, which `Device` turns into this."""


def is_device_lost(message: str) -> bool:
    m = message.lower()
    return "device is lost" in m or "device lost" in m or "device was lost" in m


@dataclass(frozen=True)
class Pass:
    """One compute dispatch: a pipeline, its bind group and a workgroup count (x, y, z)."""

    pipeline: Any
    bind_group: Any
    workgroups: tuple[int, int, int]
    label: str = ""


def encode(cp: Any, passes: Sequence[Pass]) -> None:
    """Record `passes` into wgpu-py compute pass encoder `cp` and end it."""
    for p in passes:
        cp.set_pipeline(p.pipeline)
        cp.set_bind_group(0, p.bind_group)
        cp.dispatch_workgroups(*p.workgroups)
    cp.end()


class DeviceState:
    """The state the parts of a Device (pipelines.py, resources.py, submission.py, timing.py)
    share, declared for type checking; `Device.__init__` sets it."""

    adapter: Any
    device: Any  # the wgpu device
    queue: Any
    limits: dict[str, int]
    features: set[str]
    has_timestamps: bool
    timestamp_period_ns: float
    lock: threading.RLock
    lost: str | None
    dot4_mode: str
    dot4_forced: bool
    loop_bounding: bool
    reduce_in_gemm: bool
    spin_wait_s: float
    library: Any  # shaders.ShaderLibrary
    _submitter: Any
    _modules: dict[tuple, Any]
    _pipelines: dict[tuple, Any]
    _bind_groups: OrderedDict[tuple, Any]
    _bg_keys: dict[int, set[tuple]]
    _uniforms: OrderedDict[bytes, Any]
    _staging: Any
    _recording: int
    _pending: list[Pass]

    if TYPE_CHECKING:  # provided by Device and its parts

        @property
        def name(self) -> str: ...
        @property
        def backend(self) -> str: ...
        @property
        def on_cpu(self) -> bool: ...
        @property
        def default_reduce_in_gemm(self) -> bool: ...
        @property
        def max_buffer_size(self) -> int: ...
        @property
        def max_workgroups(self) -> int: ...
        def buffer(self, nbytes: int, usage: int | None = None, label: str = "") -> Any: ...
        def upload(self, array: Any, usage: int | None = None, label: str = "") -> Any: ...
        def bind_group(self, pipeline: Any, resources: Sequence[Any]) -> Any: ...
        def bind(self, kernel: str, pipeline: Any, resources: Any) -> Any: ...
        def read(self, buffer: Any, nbytes: int | None = None, offset: int = 0) -> memoryview: ...
        def sync(self) -> None: ...
        def flush(self) -> None: ...
        def run(
            self, passes: Sequence[Pass], *, timestamps: bool = False, whole: bool = False
        ) -> list[float] | None: ...
        def _timed(self, passes: Sequence[Pass], whole: bool) -> list[float]: ...
        def _submit(self, enc: Any, passes: Sequence[Pass]) -> None: ...
        def _dispatch_copy(self, source: Any, destination: Any, nbytes: int) -> None: ...
        def read_mapped(self, staging: Any, nbytes: int) -> memoryview: ...
        def _error(self, e: Exception, what: str, *, kernel: bool = False) -> Exception: ...
