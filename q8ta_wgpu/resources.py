"""Buffers of a Device: storage and uniform buffers, uploads and readbacks, bind groups cached
while their buffers live."""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import wgpu

from .device_core import DeviceState


class ResourceCache(DeviceState):
    """Buffers, uniforms (cached by content) and bind groups (cached while their buffers live)."""

    BIND_GROUP_CACHE_SIZE = 1024

    def bind(self, kernel: str, pipeline: Any, resources: Mapping[str, Any]) -> Any:
        """`bind_group` with the resources given by the names the shader `kernel` declares
        (ordered by its @binding indices; a missing or unknown name raises ValueError)."""
        return self.bind_group(pipeline, self.library.ordered(kernel, resources))

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

    STAGING = wgpu.BufferUsage.MAP_READ | wgpu.BufferUsage.COPY_DST

    def staging_buffer(self, nbytes: int, label: str = "readback") -> Any:
        """A mappable buffer of at least nbytes for `read_mapped` (results copied into it by
        recorded work)."""
        return self.buffer(nbytes, self.STAGING, label)

    UPLOAD = wgpu.BufferUsage.MAP_WRITE | wgpu.BufferUsage.COPY_SRC

    def upload_buffer(self, nbytes: int, label: str = "upload") -> Any:
        """A buffer of nbytes to map for writing (`map_for_write`) and copy from in recorded work."""
        return self.buffer(nbytes, self.UPLOAD, label)

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

    STAGING_KEPT = 1 << 24  # bytes of readback buffer a Device keeps between reads

    def read(self, buffer: Any, nbytes: int | None = None, offset: int = 0) -> memoryview:
        """Read back `nbytes` bytes of `buffer` from `offset` (waits for submitted work).

        With wgpu-native's calls, from offset 0: one submit copies the bytes to a mappable
        buffer the device keeps (up to STAGING_KEPT bytes), mapped on this thread
        (`read_mapped`); wgpu-py's `queue.read_buffer` makes a buffer and an encoder per read
        and waits on its poll thread (H200: 120-200 us against 65-85 us a round trip,
        bench/probes/net_host.py)."""
        size = buffer.size - offset if nbytes is None else int(nbytes)
        size4 = (size + 3) // 4 * 4
        with self.lock:  # a readback submits and polls the queue: one thread at a time
            self.flush()
            if self._submitter is not None and offset == 0:
                staging = self._read_staging(size4)
                self._dispatch_copy(buffer, staging, size4)
                return self.read_mapped(staging, size4)[:size]
            try:
                data = self.queue.read_buffer(buffer, offset, size4)
            except wgpu.GPUError as e:
                raise self._error(e, "reading back a buffer") from None
        return memoryview(data)[:size]

    def _read_staging(self, nbytes: int) -> Any:
        """The kept readback buffer when it holds nbytes, grown up to STAGING_KEPT; beyond, one
        for this read."""
        kept = self._staging
        if kept is not None and kept.size >= nbytes:
            return kept
        staging = self.staging_buffer(nbytes)
        if nbytes <= self.STAGING_KEPT:
            self._staging = staging
        return staging

    def sync(self) -> None:
        """Wait until all submitted work is done (a tiny readback: on_submitted_work_done_sync is
        broken in wgpu 0.32)."""
        if not hasattr(self, "_sync_buf"):
            self._sync_buf = self.buffer(16)
        self.read(self._sync_buf, 4)
