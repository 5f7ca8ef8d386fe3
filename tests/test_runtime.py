"""The runtime: adapter facts, dot4I8Packed probe, caches, uploads/readbacks, timestamps."""

from __future__ import annotations

import re

import numpy as np
import pytest

import q8ta_wgpu as q8
from q8ta_wgpu.shaders import DOT4_INCLUDE, DOT4_SOURCES, LIBRARY, ShaderLibrary, kernels_dir

from .helpers import assert_within_1lsb


def test_info_names_adapter_and_limits(device):
    info = q8.info(device)
    assert info["adapter"] and info["backend"] in {"Vulkan", "Metal", "D3D12", "OpenGL"}
    assert info["dot4I8Packed"] in {"builtin", "fallback"}
    assert info["timestamp_period_ns"] == device.timestamp_period_ns > 0
    lim = info["limits"]
    assert lim["max-storage-buffer-binding-size"] >= 128 * 2**20
    assert lim["max-compute-workgroups-per-dimension"] >= 65535
    assert device.max_binding_size == lim["max-storage-buffer-binding-size"]


def test_default_device_is_shared(device):
    assert q8.default_device() is device


def test_kernels_found_and_have_one_entry_point():
    root = kernels_dir()
    files = LIBRARY.files()
    assert files == sorted(p.name for p in root.glob("*.wgsl"))
    for need in [
        "pack_nchw.wgsl",
        "unpack_nchw.wgsl",
        "im2col_generic.wgsl",
        "im2col_4w4c.wgsl",
        "gemm_q8.wgsl",
        *DOT4_SOURCES.values(),
    ]:
        assert need in files
    raw = {f: (root / f).read_text() for f in files}
    included = {inc for src in raw.values() for inc in re.findall(r'// #include "([\w.]+)"', src)}
    assert DOT4_INCLUDE in included and DOT4_INCLUDE not in files  # resolved per dot4 mode
    included |= set(DOT4_SOURCES.values())
    for f in files:
        for mode in DOT4_SOURCES:
            src = LIBRARY.source(f, dot4=mode)
            assert "// #include" not in src, f
            # One entry point per kernel file; files without one exist only to be included.
            assert src.count("@compute") == (0 if f in included else 1), f
        assert raw[f].startswith(f"// {f} --"), f"{f}: header comment must start with its name"
    # The kernels that call the packed dot product include it, so the fallback can replace it.
    for f in files:
        if "dot4I8Packed(" in raw[f] and f not in DOT4_SOURCES.values():
            assert f'// #include "{DOT4_INCLUDE}"' in raw[f], f
            assert "fn dot4I8Packed(" in LIBRARY.source(f, dot4="fallback"), f
            assert "fn dot4I8Packed(" not in LIBRARY.source(f, dot4="builtin"), f


def test_shader_library_includes_guards_cycles_and_registration(tmp_path):
    (tmp_path / "a.wgsl").write_text(
        '// a.wgsl -- A\n// #include "b.wgsl"\n// #include "c.wgsl"\nfn a() {}\n'
    )
    (tmp_path / "b.wgsl").write_text('// b.wgsl -- B\n// #include "c.wgsl"\nfn b() {}\n')
    (tmp_path / "c.wgsl").write_text("// c.wgsl -- C\nfn c() {}\n")
    (tmp_path / "x.wgsl").write_text('// x.wgsl -- X\n// #include "y.wgsl"\n')
    (tmp_path / "y.wgsl").write_text('// y.wgsl -- Y\n// #include "x.wgsl"\n')
    lib = ShaderLibrary(tmp_path)
    src = lib.source("a.wgsl")
    assert src.count("fn c()") == 1 and src.index("fn c()") < src.index("fn b()") < src.index("fn a()")
    with pytest.raises(ValueError, match="include cycle: x.wgsl -> y.wgsl -> x.wgsl"):
        lib.source("x.wgsl")
    with pytest.raises(FileNotFoundError, match="nope.wgsl"):
        lib.source("nope.wgsl")
    with pytest.raises(ValueError, match="dot4 mode"):
        lib.source("a.wgsl", dot4="maybe")
    lib.register("v.wgsl", '// #include "c.wgsl"\nfn v() {}\n')
    assert "fn c()" in lib.source("v.wgsl")
    lib.register("v.wgsl", '// #include "c.wgsl"\nfn v() {}\n')  # the same text again: fine
    with pytest.raises(ValueError, match="already registered"):
        lib.register("v.wgsl", "fn w() {}\n")
    with pytest.raises(ValueError, match="kernel file"):
        lib.register("a.wgsl", "fn z() {}\n")
    with pytest.raises(ValueError, match="must be"):
        lib.register("../evil.wgsl", "fn z() {}\n")


def test_pipeline_and_bind_group_caches(device):
    p1 = device.pipeline("pack_nchw.wgsl", {"WG": 64})
    assert device.pipeline("pack_nchw.wgsl", {"WG": 64}) is p1
    assert device.pipeline("pack_nchw.wgsl", {"WG": 32}) is not p1
    a, b = device.buffer(64), device.buffer(64)
    desc = q8.layouts.tensor_desc((1, 2, 3, 4), "4C", 0)
    u = device.uniform(desc)
    assert device.uniform(desc.copy()) is u
    assert device.uniform(np.array([1, 2, 3, 0], np.uint32)) is not u
    g1 = device.bind_group(p1, [a, b, u])
    assert device.bind_group(p1, [a, b, u]) is g1
    assert device.bind_group(p1, [b, a, u]) is not g1
    n = len(device._bind_groups)
    del a, g1
    import gc

    gc.collect()
    assert len(device._bind_groups) < n  # entries of dead buffers are dropped


@pytest.mark.parametrize("nbytes", [1, 3, 4, 17, 4096])
def test_upload_read_round_trip(device, nbytes):
    data = np.random.default_rng(nbytes).integers(0, 256, nbytes, dtype=np.uint8)
    buf = device.upload(data)
    assert buf.size % 4 == 0 and buf.size >= nbytes
    assert bytes(device.read(buf, nbytes)) == data.tobytes()


def test_workgroup_folding(device):
    lim = device.max_workgroups
    assert device.workgroups(5) == (5, 1, 1)
    x, y, z = device.workgroups(lim * 3 + 1)
    assert x <= lim and y <= lim and x * y >= lim * 3 + 1


def test_folded_dispatch_covers_every_thread(device):
    # A pack over more than 65535 workgroups of 64 threads: every output word must be written.
    n_words = 65535 * 64 + 1000
    x = np.random.default_rng(0).integers(-128, 128, (1, 4, 1, n_words), dtype=np.int8)
    assert device.workgroups(-(-n_words // 64))[1] > 1
    got = q8.pack_gpu(x, "4C", 9, device=device)
    assert got.tobytes() == q8.pack(x, "4C", 9).tobytes()


def test_timestamps(device):
    if not device.has_timestamps:
        pytest.skip(f"{device.name} has no timestamp-query feature")
    x = np.zeros((1, 8, 16, 16), np.int8)
    src = device.upload(x)
    dst = device.buffer(4 * q8.layouts.packed_words(x.shape, "4C"))
    p = q8.layouts.pack_pass(device, src, dst, x.shape, "4C", 0)
    t = device.time_passes([p, p], warmup=1, repeats=3)
    assert t.shape == (3, 2) and np.all(t > 0) and np.all(t < 10)


def test_timestamps_are_converted_with_the_queues_period(device, monkeypatch):
    """wgpu-native returns timestamps in GPU ticks; the runtime multiplies by the queue's period
    (read from wgpu-native), so times are seconds on GPUs whose tick is not 1 ns."""
    from q8ta_wgpu import _native

    period = _native.timestamp_period(device.queue)
    assert period is not None and period > 0, "the pinned wgpu reports the timestamp period"
    assert device.timestamp_period_ns == period
    x = np.zeros((1, 8, 64, 64), np.int8)
    src = device.upload(x)
    dst = device.buffer(4 * q8.layouts.packed_words(x.shape, "4C"))
    p = q8.layouts.pack_pass(device, src, dst, x.shape, "4C", 0)
    base = np.median(device.time_passes([p], warmup=1, repeats=9))
    monkeypatch.setattr(device, "timestamp_period_ns", period * 1000.0)
    scaled = np.median(device.time_passes([p], warmup=1, repeats=9))
    assert 100 < scaled / base < 10000, (base, scaled)


def test_kernel_error_names_file(device):
    LIBRARY.register("test_broken.wgsl", "fn main( { }\n")
    LIBRARY.register("test_ok.wgsl", "@compute @workgroup_size(1) fn main() {}\n")
    with pytest.raises(q8.KernelError, match=r"test_broken\.wgsl[\s\S]*expected"):
        device.shader("test_broken.wgsl")
    with pytest.raises(q8.KernelError, match=r"test_ok\.wgsl[\s\S]*NOPE"):
        device.pipeline("test_ok.wgsl", {"NOPE": 1})
    # The device still works afterwards.
    x = np.arange(16, dtype=np.int8).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(q8.unpack_gpu(q8.pack(x, "4C", 0), "4C", x.shape, device=device), x)


def test_no_adapter_error_names_the_fix(monkeypatch):
    from q8ta_wgpu import runtime

    monkeypatch.setattr(runtime.wgpu.gpu, "enumerate_adapters_sync", lambda: [])
    with pytest.raises(q8.NoAdapterError, match="mesa-vulkan-drivers"):
        q8.Device()


def test_adapter_selection_by_name_and_backend(monkeypatch):
    with pytest.raises(q8.NoAdapterError, match="available"):
        q8.Device("no-such-adapter-xyz")
    monkeypatch.setenv("Q8TA_WGPU_ADAPTER", "no-such-adapter-xyz")
    with pytest.raises(q8.NoAdapterError):
        q8.Device()
    monkeypatch.delenv("Q8TA_WGPU_ADAPTER")
    names = q8.list_adapters()
    assert names
    d = q8.Device(names[0]["name"][:5], backend=names[0]["backend"])
    assert d.backend == names[0]["backend"]


def test_kernels_compile_without_forced_loop_bounding(monkeypatch):
    """Kernels go through wgpu-native's trusted entry point with bounds checks only (no forced
    loop bounding); Device(loop_bounding=True) takes wgpu's ordinary call. Both compute the same
    bytes, within 1 LSB of the reference's."""
    from q8ta_wgpu import _native, reference
    from q8ta_wgpu.configs import ConvConfig, make_case

    trusted = []
    real = _native.create_module

    def spy(device, code, label, checks=_native.BOUNDS_CHECKS):
        mod = real(device, code, label, checks)
        assert mod is not None, "the pinned wgpu has wgpuDeviceCreateShaderModuleTrusted"
        trusted.append((label, checks))
        return mod

    monkeypatch.setattr(_native, "create_module", spy)
    case = make_case(ConvConfig("lb", 12, 20, 9, 7, padding=(1, 1)), seed=3)
    x, w, ws, b = case["args"]
    want = reference.conv2d(x, w, ws, b, **case["kwargs"])
    outs = {}
    for bounded in (False, True):
        dev = q8.Device(loop_bounding=bounded)
        before = len(trusted)
        conv = q8.QConv2d(w, ws, b, device=dev, method="im2col_4w4c", **case["kwargs"])
        conv.gemm_override = {
            "kernel": "gemm_q8_tiled.wgsl",
            "constants": {"WG_M": 4, "WG_N": 4, "BK": 8},
            "splits": 2,
        }
        outs[bounded] = conv(x)
        labels = {lb for lb, _ in trusted[before:]}
        if bounded:
            assert not labels
        else:
            assert {"gemm_q8_tiled.wgsl", "im2col_4w4c.wgsl"} <= labels
            assert {c for _, c in trusted[before:]} == {_native.BOUNDS_CHECKS}
    np.testing.assert_array_equal(outs[False], outs[True])
    assert_within_1lsb(outs[False], want, "compiled without loop bounding")


def test_calls_submit_through_wgpu_natives_c_functions(device, monkeypatch):
    """Untimed runs and readbacks record and submit through _native.Submitter (the pinned wgpu
    has it): the same bytes as through wgpu-py's objects, in as many submits, and a dispatch that
    fails validation is a KernelError there too (never submitted)."""
    from q8ta_wgpu import reference
    from q8ta_wgpu.configs import ConvConfig, make_case
    from q8ta_wgpu.runtime import Pass

    sub = device._submitter
    assert sub is not None, "the pinned wgpu has what _native.Submitter uses"
    calls: list[int | str] = []

    class Counting:  # the Submitter, each submit counted (its passes, or "copy" for a readback's)
        def __call__(self, passes, copy=None):
            calls.append(len(passes) if copy is None else "copy")
            return sub(passes, copy)

        def __getattr__(self, name):
            return getattr(sub, name)

    monkeypatch.setattr(device, "_submitter", Counting())
    case = make_case(ConvConfig("sub", 12, 16, 9, 7, padding=(1, 1)), seed=5)
    x, w, ws, b = case["args"]
    conv = q8.QConv2d(w, ws, b, device=device, method="im2col_4w4c", **case["kwargs"])
    xt = q8.QTensor.from_numpy(x, conv.input_scale, conv.input_zero_point, device=device)
    direct = conv(xt).numpy()
    assert calls == [1, 2, 1, "copy"], (
        "pack, conv (im2col + GEMM), unpack: one submit each; the readback's copy"
    )
    monkeypatch.setattr(device, "_submitter", None)
    np.testing.assert_array_equal(conv(xt).numpy(), direct)
    assert_within_1lsb(direct, reference.conv2d(x, w, ws, b, **case["kwargs"]), "direct submit")
    monkeypatch.setattr(device, "_submitter", sub)
    pipe = device.pipeline("pack_nchw.wgsl", {"WG": 64})
    u = device.uniform(q8.layouts.tensor_desc((1, 4, 1, 4), "4C", 0))
    bg = device.bind_group(pipe, [device.buffer(64), device.buffer(64), u])
    with pytest.raises(q8.KernelError, match="dispatch group size"):
        device.run([Pass(pipe, bg, (device.max_workgroups + 1, 1, 1), "pack")])
    np.testing.assert_array_equal(conv(xt).numpy(), direct)  # the device still works
