"""A second wgpu backend and the dot-product fallback.

1. OpenGL: llvmpipe is also served by wgpu's OpenGL (GLES/EGL) backend, where naga compiles the
   kernels to GLSL and always polyfills dot4I8Packed. Packing, unpacking and conv2d (both im2col
   kernels, every output layout) must match the host packing byte for byte and
   q8ta_wgpu.reference within 1 LSB there too. With no OpenGL adapter these tests FAIL (CI on Linux
   has one: `bash setup.sh test` installs Mesa's EGL/GL); runners without OpenGL (macOS, Windows)
   opt out with Q8TA_SKIP_OPENGL=1 (see README, "Platforms and CI").
2. The by-hand dot product (`Device(dot4="fallback")`) on the default adapter: exact on every
   pair of int8 bytes, and conv2d results identical to the builtin path.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import q8ta_wgpu as q8
from q8ta_wgpu import reference, runtime
from q8ta_wgpu.configs import POINTWISE_CONFIGS, SPEC_CONFIGS, make_case
from q8ta_wgpu.shaders import LIBRARY

from .helpers import EXTRA, SHAPES, ZPS, assert_within_1lsb, methods_for

SKIP_OPENGL_ENV = "Q8TA_SKIP_OPENGL"

# A few of test_conv's coverage shapes (batch, odd channels, groups, depthwise, dilation,
# asymmetric stride/padding, 1x1, 5x5, 7x7, H or W of 1) and small spec configs.
GL_EXTRA = [
    "batch3_generic_odd_c", "cin1", "dilation_asym", "stride_2_1_pad_0_2", "groups3_cpg3",
    "depthwise", "depthwise_multiplier2", "k1x1_strided", "k5x5", "k7x7_s2", "h1", "w1",
    "h1w1_padded_3x3", "groups4_batch2_5x5",
]  # fmt: skip
_SPEC = {c.name: c for c in SPEC_CONFIGS + POINTWISE_CONFIGS}
GL_SPEC = ["spec3", "spec6", "spec7", "pw3", "pw7"]
GL_CONFIGS = {name: EXTRA[name] for name in GL_EXTRA} | {name: _SPEC[name] for name in GL_SPEC}


@pytest.fixture(scope="module")
def gl_device() -> q8.Device:
    if os.environ.get(SKIP_OPENGL_ENV, "") not in ("", "0"):
        pytest.skip(f"{SKIP_OPENGL_ENV} is set: OpenGL backend tests opted out")
    try:
        return q8.Device(backend="OpenGL")
    except q8.NoAdapterError as e:
        pytest.fail(
            f"no OpenGL adapter: {e}. On Debian/Ubuntu `bash setup.sh test` installs Mesa's EGL/GL "
            "(apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri: llvmpipe); on a runner without "
            f"OpenGL (macOS, Windows) set {SKIP_OPENGL_ENV}=1 to skip these tests."
        )


@pytest.fixture(scope="module")
def fallback_device(device: q8.Device) -> q8.Device:
    """The default device's adapter, with the by-hand dot product forced."""
    return q8.Device(device.name, backend=device.backend, dot4="fallback")


# ---- OpenGL --------------------------------------------------------------------------------
def test_gl_info(gl_device):
    info = q8.info(gl_device)
    assert info["backend"] == "OpenGL"
    assert info["dot4I8Packed"] in {"builtin", "fallback"}
    want = "naga polyfill" if info["dot4I8Packed"] == "builtin" else "q8ta fallback"
    assert info["dot_product"] == want, info["dot_product_detail"]
    lim = info["limits"]
    # What the kernels need: their storage buffers per stage, 128 MiB bindings, 256 threads.
    most = max(LIBRARY.source(f).count("var<storage") for f in LIBRARY.files())
    assert lim["max-storage-buffers-per-shader-stage"] >= most
    assert lim["max-storage-buffer-binding-size"] >= 128 * 2**20
    assert lim["max-compute-invocations-per-workgroup"] >= 256
    for k, v in lim.items():  # requested at the adapter's own maximum, never more
        assert v <= gl_device.adapter.limits[k], k


@pytest.mark.parametrize("layout", q8.LAYOUTS)
def test_gl_pack_unpack_byte_equality(gl_device, layout):
    for shape in SHAPES:
        rng = np.random.default_rng([*shape, q8.LAYOUTS.index(layout)])
        x = rng.integers(-128, 128, shape, dtype=np.int8)
        for zp in ZPS:
            host = q8.pack(x, layout, zp)
            gpu = q8.pack_gpu(x, layout, zp, device=gl_device)
            assert host.tobytes() == gpu.tobytes(), f"OpenGL {layout} {shape} zp={zp}: pack differs from host"
            np.testing.assert_array_equal(q8.unpack_gpu(host, layout, shape, device=gl_device), x)
    # Relayout through a QTensor into every other layout.
    x = np.random.default_rng(3).integers(-128, 128, (2, 6, 5, 7), dtype=np.int8)
    t = q8.QTensor.from_numpy(x, 0.1, -3, layout=layout, device=gl_device)
    assert t.words().tobytes() == q8.pack(x, layout, -3).tobytes()
    for dst in q8.LAYOUTS:
        t2 = q8.QTensor.from_numpy(t.numpy(), 0.1, -3, layout=dst, device=gl_device)
        assert t2.words().tobytes() == q8.pack(x, dst, -3).tobytes()


@pytest.mark.parametrize("name", list(GL_CONFIGS))
def test_gl_conv_against_reference(gl_device, name):
    """Both im2col kernels x every output layout, against the reference; the packed words of a
    QTensor result (padding slots included) equal the host packing of its values."""
    cfg = GL_CONFIGS[name]
    case = make_case(cfg, seed=13, activation="relu" if len(name) % 2 else "none",
                     input_zero_point=-5, output_zero_point=3)  # fmt: skip
    x, w, ws, b = case["args"]
    kw = case["kwargs"]
    ref = reference.conv2d(x, w, ws, b, **kw)
    xt = q8.QTensor.from_numpy(x, kw["input_scale"], kw["input_zero_point"], device=gl_device)
    for method in methods_for(cfg):
        y = q8.conv2d(x, w, ws, b, method=method, device=gl_device, **kw)
        assert_within_1lsb(y, ref, f"OpenGL {name}/{method}")
        for layout in q8.LAYOUTS:
            yt = q8.conv2d(xt, w, ws, b, method=method, output_layout=layout, **kw)
            assert yt.layout == layout and yt.device is gl_device
            got = yt.numpy()
            assert_within_1lsb(got, ref, f"OpenGL {name}/{method}->{layout}")
            assert yt.words().tobytes() == q8.pack(got, layout, kw["output_zero_point"]).tobytes(), (
                f"OpenGL {name}/{method}->{layout}: packed words (padding) differ"
            )
    got = q8.im2col(x, cfg.kernel, input_zero_point=-5, device=gl_device, **cfg.conv_kwargs())
    want = reference.im2col(x, cfg.kernel, input_zero_point=-5, **cfg.conv_kwargs())
    assert got.tobytes() == want.tobytes(), f"OpenGL {name}: im2col bytes differ"


def test_gl_timestamps(gl_device):
    if not gl_device.has_timestamps:
        pytest.skip("this OpenGL adapter has no timestamp-query")
    x = np.zeros((1, 8, 16, 16), np.int8)
    src = gl_device.upload(x)
    dst = gl_device.buffer(4 * q8.layouts.packed_words(x.shape, "4C"))
    p = q8.layouts.pack_pass(gl_device, src, dst, x.shape, "4C", 0)
    t = gl_device.time_passes([p, p], warmup=1, repeats=3)
    assert t.shape == (3, 2) and np.all(t >= 0) and np.all(t < 10)


# ---- the by-hand dot product --------------------------------------------------------------
_ALL_PAIRS = """
// #include "dot4.wgsl"
@group(0) @binding(0) var<storage, read> a: array<u32>;
@group(0) @binding(1) var<storage, read_write> o: array<i32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x < arrayLength(&o)) { o[g.x] = dot4I8Packed(a[2u * g.x], a[2u * g.x + 1u]); }
}
"""


def _dot4_all_pairs(dev: q8.Device) -> None:
    """dot4I8Packed through `dev.pipeline` (so through the device's dot4.wgsl include: the
    builtin, or the by-hand fallback) on all 65536 byte pairs in each of the 4 lanes (other lanes
    random), compared exactly with numpy."""
    LIBRARY.register("test_dot4_all_pairs.wgsl", _ALL_PAIRS)
    pipe = dev.pipeline("test_dot4_all_pairs.wgsl")
    rng = np.random.default_rng(1)
    pa, pb = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij")
    n = pa.size
    for lane in range(4):
        bytes_ = rng.integers(-128, 128, (n, 2, 4), dtype=np.int64)
        bytes_[:, 0, lane] = pa.reshape(-1)
        bytes_[:, 1, lane] = pb.reshape(-1)
        want = (bytes_[:, 0] * bytes_[:, 1]).sum(axis=1).astype(np.int32)
        words = bytes_.astype(np.int8).reshape(-1).view(np.uint32)
        src, out = dev.upload(words), dev.buffer(4 * n)
        dev.run([runtime.Pass(pipe, dev.bind_group(pipe, [src, (out, 0, 4 * n)]), dev.workgroups(n // 64))])
        got = np.frombuffer(dev.read(out, 4 * n), np.int32)
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, (
            f"{dev} ({dev.dot4_mode}) lane {lane}: {bad.size} wrong, e.g. bytes {bytes_[bad[0]].tolist()} "
            f"-> {got[bad[0]]} (want {want[bad[0]]})"
        )


def test_fallback_is_forced_and_reported(fallback_device, device):
    assert fallback_device.dot4_mode == "fallback" and fallback_device.dot4_forced
    info = fallback_device.info()
    assert info["dot4I8Packed"] == "fallback" and info["dot_product"] == "q8ta fallback"
    assert info["adapter"] == device.name and info["backend"] == device.backend
    assert q8.info(device)["dot_product"] in {"native", "naga polyfill", "unknown", "q8ta fallback"}
    with pytest.raises(ValueError, match="dot4"):
        q8.Device(device.name, backend=device.backend, dot4="maybe")


def test_fallback_dot4_exact_on_all_byte_pairs(fallback_device, device):
    _dot4_all_pairs(fallback_device)
    assert ("test_dot4_all_pairs.wgsl", "fallback") in fallback_device._modules  # the fallback ran
    assert "fn dot4I8Packed(" in LIBRARY.source("test_dot4_all_pairs.wgsl", dot4="fallback")
    assert "fn dot4I8Packed(" not in LIBRARY.source("test_dot4_all_pairs.wgsl", dot4="builtin")
    _dot4_all_pairs(device)  # and the default device's own path


def test_gl_dot4_exact_on_all_byte_pairs(gl_device):
    _dot4_all_pairs(gl_device)


@pytest.mark.parametrize(
    "name", ["batch3_generic_odd_c", "groups3_cpg3", "depthwise", "k5x5", "spec3", "pw7"]
)
def test_fallback_conv_identical_to_builtin(fallback_device, device, name):
    """Integer accumulation is exact either way, so the fallback's outputs equal the builtin's."""
    cfg = GL_CONFIGS[name]
    case = make_case(cfg, seed=21, activation="relu", input_zero_point=7, output_zero_point=-4)
    x, w, ws, b = case["args"]
    ref = reference.conv2d(x, w, ws, b, **case["kwargs"])
    for method in methods_for(cfg):
        y_fb = q8.conv2d(x, w, ws, b, method=method, device=fallback_device, **case["kwargs"])
        y = q8.conv2d(x, w, ws, b, method=method, device=device, **case["kwargs"])
        np.testing.assert_array_equal(y_fb, y, err_msg=f"{name}/{method}: fallback != {device.dot4_mode}")
        assert_within_1lsb(y_fb, ref, f"fallback {name}/{method}")
    assert any(k[1] == "fallback" for k in fallback_device._modules)
