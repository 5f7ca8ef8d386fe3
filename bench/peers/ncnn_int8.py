"""The same-API peer: ncnn's int8 Vulkan convolution, checked and timed per layer on the conv shapes
q8ta_wgpu benchmarks (`q8ta_wgpu.configs.ConvConfig`).

Each shape becomes a small ncnn net written in ncnn's own formats (a .param text and a .bin of
int8 weights) and run through the `ncnn` PyPI wheel on a Vulkan GPU:

- groups == 1 is a `Convolution` layer with int8_scale_term 2 (per-output-channel weight scales, as
  tools/quantize/ncnn2int8 writes it); grouped and depthwise convs are `ConvolutionDepthWise` with
  int8_scale_term 1 (per-group weight scales, ncnn2int8's value for that layer; 2 would mean one
  scale for all groups). A layer whose output feeds another int8 conv gets +100 (102 / 101): it
  requantizes and writes int8, as ncnn2int8's fuse_requantize lays out consecutive int8 convs.
- ncnn quantizes symmetrically, q = round(x * scale), pads with 0 and dequantizes by dividing by the
  scales; there is no batch dimension (a Mat is c, h, w), so configs with n > 1 are not run.

Options: Vulkan compute and int8 inference on; fp16 storage, packing and arithmetic off (see
`_make_net`); everything else (int8 storage / arithmetic, packing layout, winograd, sgemm) at
ncnn's defaults. Every net gets ncnn's shape hints (param 30, as ncnnoptimize writes them), so
ncnn specializes its shaders on the shapes, its best case.
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from q8ta_wgpu.bench import stats

if TYPE_CHECKING:
    from q8ta_wgpu.configs import ConvConfig

INT8_TAG = 0x000D4B38  # ncnn ModelBin: "int8 weights follow" (src/modelbin.cpp)

# check()'s bias offset. ncnn's fp32 output is float(int32 sum) * descale + bias, descale computed on
# the host as 1 / (bottom_scale * weight_scale). With both scales 1.0 it should be 1.0, but the PyPI
# wheel (built with -ffast-math) gets ConvolutionDepthWise's as 1 - 2**-24 (a reciprocal estimate
# plus a Newton step; 0.99999994 * 2 for weight scale 0.5, ...), which shifts most outputs by an ulp;
# no ncnn option changes that. With the bias near 2**23 every output lands in [2**22, 2**24), where
# float32's spacing is 0.5 or 1, and rounds back to exactly sum + bias while |sum| < 2**22 and the
# descale is within a few ulps of 1. Any integer error in the int8 conv itself still shows.
BIAS_OFFSET = 2**23


# ---------------------------------------------------------------------------------------- ncnn


def _ncnn() -> Any:
    """The ncnn module, or None when it is not importable."""
    try:
        import ncnn  # an optional bench dependency, imported lazily
    except ImportError:
        return None
    return ncnn


class _quiet_fd2:
    """Silence C-level stderr (fd 2) inside the block: ncnn logs every GPU it finds when it creates
    its Vulkan instance."""

    def __enter__(self) -> None:
        self._saved = None
        try:
            self._saved = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        except OSError:
            self._saved = None

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            os.dup2(self._saved, 2)
            os.close(self._saved)


def _gpu_count(ncnn: Any) -> int:
    with _quiet_fd2():
        return int(ncnn.get_gpu_count())


def ncnn_info(gpu_index: int = 0) -> dict | None:
    """{"ncnn": version, "gpu": name of the GPU it will use}, or None when ncnn is not importable or
    sees no GPU (or no GPU gpu_index)."""
    ncnn = _ncnn()
    if ncnn is None:
        return None
    if not 0 <= gpu_index < _gpu_count(ncnn):
        return None
    return {"ncnn": ncnn.__version__, "gpu": ncnn.get_gpu_info(gpu_index).device_name()}


# ---------------------------------------------------------------------------------------- shapes


def _out_hw(cfg: ConvConfig) -> tuple[int, int]:
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = cfg.kernel, cfg.stride, cfg.padding, cfg.dilation
    return (
        (cfg.h + 2 * ph - dh * (kh - 1) - 1) // sh + 1,
        (cfg.w + 2 * pw - dw * (kw - 1) - 1) // sw + 1,
    )


def chainable(cfg: ConvConfig) -> bool:
    """True when the conv's output has its input's shape (C_out == C_in, H_out == H, W_out == W) and
    n == 1, so that identical layers can be chained."""
    return cfg.n == 1 and cfg.c_out == cfg.c_in and _out_hw(cfg) == (cfg.h, cfg.w)


def _unsupported(cfg: ConvConfig) -> str | None:
    """Why ncnn can't run cfg as one of these nets, or None."""
    if cfg.n != 1:
        return "ncnn has no batch dimension (n must be 1)"
    if cfg.groups < 1 or cfg.c_in % cfg.groups or cfg.c_out % cfg.groups:
        return "groups must divide c_in and c_out"
    if min(_out_hw(cfg)) < 1:
        return "empty output"
    return None


# ---------------------------------------------------------------------------------------- nets


def _layer_param(cfg: ConvConfig, name: str, bottom: str, top: str, term: int) -> str:
    """One conv layer's .param line (ncnn's param ids: 0 num_output, 1/11 kernel w/h, 2/12 dilation,
    3/13 stride, 4/15/14/16 pad left/right/top/bottom, 5 bias_term, 6 weight_data_size, 7 group,
    8 int8_scale_term, -23330 the top blob's shape hint [dims, w, h, d, c])."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = cfg.kernel, cfg.stride, cfg.padding, cfg.dilation
    oh, ow = _out_hw(cfg)
    size = int(np.prod(cfg.weight_shape))
    kind = "Convolution" if cfg.groups == 1 else "ConvolutionDepthWise"
    p = (
        f"0={cfg.c_out} 1={kw} 11={kh} 2={dw} 12={dh} 3={sw} 13={sh} "
        f"4={pw} 15={pw} 14={ph} 16={ph} 5=1 6={size}"
    )
    if cfg.groups != 1:
        p += f" 7={cfg.groups}"
    p += f" 8={term} -23330=5,3,{ow},{oh},1,{cfg.c_out}"
    return f"{kind:<24} {name:<8} 1 1 {bottom} {top} {p}"


def _param_text(cfg: ConvConfig, terms: list[int]) -> str:
    """A net of len(terms) chained conv layers: in0 -> b1 -> ... -> out0."""
    blobs = ["in0", *(f"b{i}" for i in range(1, len(terms))), "out0"]
    lines = [
        "7767517",
        f"{len(terms) + 1} {len(terms) + 1}",
        f"{'Input':<24} {'in0':<8} 0 1 in0 0={cfg.w} 1={cfg.h} 2={cfg.c_in} "
        f"-23330=5,3,{cfg.w},{cfg.h},1,{cfg.c_in}",
    ]
    for i, term in enumerate(terms):
        lines.append(_layer_param(cfg, f"conv{i}", blobs[i], blobs[i + 1], term))
    return "\n".join(lines) + "\n"


def _layer_bin(
    cfg: ConvConfig,
    w: np.ndarray,
    bias: np.ndarray,
    term: int,
    *,
    weight_scale: float,
    bottom_scale: float,
    top_scale: float,
) -> bytes:
    """One conv layer's model data, in the order its load_model reads it: the weights (int8 tag, the
    OIHW int8 bytes, zero padding to 4 bytes), the bias (float32, raw), the weight scales (C_out
    floats for Convolution; `group` floats for ConvolutionDepthWise with int8_scale_term 1 / 101),
    the bottom scale, and with int8_scale_term > 100 the top scale."""
    wb = np.ascontiguousarray(w, dtype=np.int8).tobytes()
    out = [struct.pack("<I", INT8_TAG), wb, b"\0" * (-len(wb) % 4)]
    out.append(np.ascontiguousarray(bias, dtype="<f4").tobytes())
    n_scales = cfg.c_out if cfg.groups == 1 else cfg.groups
    out.append(np.full(n_scales, weight_scale, dtype="<f4").tobytes())
    out.append(struct.pack("<f", bottom_scale))
    if term > 100:
        out.append(struct.pack("<f", top_scale))
    return b"".join(out)


def _terms(cfg: ConvConfig, layers: int) -> list[int]:
    """int8_scale_term of each layer of a chain: requantizing (+100) but for the last (fp32 out)."""
    base = 2 if cfg.groups == 1 else 1
    return [base + 100] * (layers - 1) + [base]


# ---------------------------------------------------------------------------------------- reference


def reference_conv(x: np.ndarray, w: np.ndarray, bias: np.ndarray, cfg: ConvConfig) -> np.ndarray:
    """Integer conv2d in numpy: x [C_in, H, W] and w [C_out, C_in/groups, KH, KW] integer-valued,
    zero padding, int64 accumulation (explicit im2col, then einsum per group), plus bias.
    Returns float64 [C_out, H_out, W_out]."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = cfg.kernel, cfg.stride, cfg.padding, cfg.dilation
    oh, ow = _out_hw(cfg)
    g = cfg.groups
    xp = np.zeros((cfg.c_in, cfg.h + 2 * ph, cfg.w + 2 * pw), dtype=np.int64)
    xp[:, ph : ph + cfg.h, pw : pw + cfg.w] = x
    # cols[c, i, j, y, x] = xp[c, y*sh + i*dh, x*sw + j*dw]
    cols = np.empty((cfg.c_in, kh, kw, oh, ow), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            y0, x0 = i * dh, j * dw
            cols[:, i, j] = xp[:, y0 : y0 + (oh - 1) * sh + 1 : sh, x0 : x0 + (ow - 1) * sw + 1 : sw]
    cols = cols.reshape(g, cfg.c_in // g, kh, kw, oh, ow)
    wg = w.astype(np.int64).reshape(g, cfg.c_out // g, cfg.c_in // g, kh, kw)
    acc = np.einsum("gockl,gckl...->go...", wg, cols).reshape(cfg.c_out, oh, ow)
    return acc.astype(np.float64) + np.asarray(bias, dtype=np.float64)[:, None, None]


# ---------------------------------------------------------------------------------------- peer


def ncnn_mat(ncnn: Any, x: np.ndarray) -> Any:
    """x [c, h, w] float32 as an ncnn-allocated Mat. Not ncnn.Mat(x): that wraps the array with
    channel step h*w, while VkCompute::record_upload copies the Mat's bytes into a staging buffer
    laid out with ncnn's 16-byte aligned channel step, so where h*w*4 % 16 != 0 every channel but
    the first lands shifted: garbage wherever the fp32 input is uploaded as is (fp16 storage off,
    or not a discrete GPU: lavapipe)."""
    c, h, w = x.shape
    m = ncnn.Mat(w, h, c)
    np.asarray(m)[...] = x  # a view honouring the Mat's channel step
    return m


class NcnnInt8Conv:
    """ncnn's int8 Vulkan conv on GPU gpu_index: `check` runs one layer against a numpy reference,
    `layer_time` times one requantizing layer inside a chain."""

    def __init__(self, gpu_index: int = 0) -> None:
        ncnn = _ncnn()
        if ncnn is None:
            raise RuntimeError("ncnn is not importable (pip install ncnn)")
        count = _gpu_count(ncnn)
        if not 0 <= gpu_index < count:
            raise RuntimeError(f"ncnn sees {count} Vulkan GPU(s); no GPU {gpu_index}")
        self._ncnn = ncnn
        self.gpu_index = gpu_index
        self.gpu = ncnn.get_gpu_info(gpu_index).device_name()

    def _make_net(self, param: str, model: bytes) -> Any:
        """Load a net on the GPU; raise RuntimeError unless every layer runs there."""
        ncnn = self._ncnn
        net = ncnn.Net()
        net.opt.use_vulkan_compute = True
        net.opt.use_int8_inference = True
        # fp16 off: with fp16 storage or fp16 packed (ncnn's default where the GPU has them, lavapipe
        # included) the dequantizing layer writes its fp32 output as fp16 (Convolution_vulkan::
        # forward_int8's out_elemsize): sums above 2048 lose bits and check()'s outputs near 2**23
        # read back inf. The int8 layers themselves run with fp16 arithmetic off whatever the options
        # (create_pipeline_int8), and a chain's inner layers read and write int8 either way.
        # Left at ncnn's defaults: int8 storage / packed / arithmetic, packing layout, winograd and
        # sgemm (with packing layout or int8 storage off, this wheel's int8 convs segfault on lavapipe).
        net.opt.use_fp16_storage = False
        net.opt.use_fp16_packed = False
        net.opt.use_fp16_arithmetic = False
        net.set_vulkan_device(self.gpu_index)
        with tempfile.TemporaryDirectory() as tmp:
            pp, mp = Path(tmp) / "net.param", Path(tmp) / "net.bin"
            pp.write_text(param)
            mp.write_bytes(model)
            if net.load_param(str(pp)) != 0:
                raise RuntimeError(f"ncnn load_param failed:\n{param}")
            if net.load_model(str(mp)) != 0:
                raise RuntimeError("ncnn load_model failed")
        if not (net.opt.use_vulkan_compute and net.opt.use_int8_inference):
            raise RuntimeError("ncnn turned Vulkan compute or int8 inference off")
        cpu = [layer.name for layer in net.layers() if not layer.support_vulkan]
        if cpu:
            raise RuntimeError(f"ncnn layers fell back to the CPU: {cpu}")
        return net

    def _run(self, net: Any, x: Any) -> np.ndarray:
        """One inference: fresh extractor, input (c, h, w float32 Mat), extract (upload, submit, wait,
        download)."""
        ex = net.create_extractor()
        ex.input("in0", x)
        ret, out = ex.extract("out0")
        if ret != 0:
            raise RuntimeError(f"ncnn extract failed ({ret})")
        return out

    def check(self, cfg: ConvConfig, *, seed: int = 0) -> dict:
        """Run cfg as one int8 layer (int8_scale_term 2, or 1 for grouped / depthwise; fp32 out) on the
        GPU and compare with `reference_conv`: all scales 1.0, integer-valued input in [-16, 16]
        (so ncnn's int8 input equals it), int8 weights in [-8, 8], bias 2**23 + an integer in
        [-100, 100]. ncnn's output is then its int32 sums plus the bias, exactly (see BIAS_OFFSET).
        Returns {"exact", "max_abs_diff", "elements"}; raises ValueError for configs ncnn can't
        run as such a layer."""
        why = _unsupported(cfg)
        if why:
            raise ValueError(f"{cfg.name} ({cfg.label()}): {why}")
        kh, kw = cfg.kernel
        if 16 * 8 * (cfg.c_in // cfg.groups) * kh * kw + 100 >= 2**22:
            raise ValueError(
                f"{cfg.name} ({cfg.label()}): sums could reach 2**22, the check would not be exact"
            )
        rng = np.random.default_rng(seed)
        x = rng.integers(-16, 17, size=(cfg.c_in, cfg.h, cfg.w)).astype(np.float32)
        w = rng.integers(-8, 9, size=cfg.weight_shape).astype(np.int8)
        bias = (BIAS_OFFSET + rng.integers(-100, 101, size=cfg.c_out)).astype(np.float32)
        term = _terms(cfg, 1)[0]
        param = _param_text(cfg, [term])
        model = _layer_bin(cfg, w, bias, term, weight_scale=1.0, bottom_scale=1.0, top_scale=1.0)
        net = self._make_net(param, model)
        got = np.array(self._run(net, ncnn_mat(self._ncnn, x)), dtype=np.float64)
        want = reference_conv(x, w, bias, cfg)
        if got.shape != want.shape:
            raise RuntimeError(f"{cfg.name}: ncnn output shape {got.shape}, expected {want.shape}")
        diff = float(np.max(np.abs(got - want), initial=0.0))
        return {"exact": diff == 0.0, "max_abs_diff": diff, "elements": int(want.size)}

    def layer_time(
        self, cfg: ConvConfig, *, repeats: int = 20, k0: int = 2, k: int = 22, warm_s: float = 0.2
    ) -> dict | None:
        """Per-layer GPU-side time of one int8 -> int8 requantizing conv of cfg's shape: wall times of
        one inference of a k0-layer and a k-layer chain (runs interleaved k0, k, k0, k, ... after
        keeping the GPU busy warm_s seconds), per layer = (t_k - t_k0) / (k - k0) for each repeat's
        pair. None unless `chainable(cfg)`."""
        if not chainable(cfg):
            return None
        if not 1 <= k0 < k:
            raise ValueError(f"need 1 <= k0 < k, got k0={k0}, k={k}")
        rng = np.random.default_rng(0)
        w = rng.integers(-127, 128, size=cfg.weight_shape).astype(np.int8)
        bias = rng.uniform(-1, 1, size=cfg.c_out).astype(np.float32)
        kh, kw = cfg.kernel
        # Input in [-1, 1] quantized by 127; requantized by 127 / sqrt(K), which keeps a layer's
        # outputs in int8's range roughly (the timing does not depend on the values).
        top = 127.0 / math.sqrt((cfg.c_in // cfg.groups) * kh * kw)

        def net_of(layers: int) -> Any:
            terms = _terms(cfg, layers)
            model = b"".join(
                _layer_bin(cfg, w, bias, t, weight_scale=1.0, bottom_scale=127.0, top_scale=top)
                for t in terms
            )
            return self._make_net(_param_text(cfg, terms), model)

        nets = {k0: net_of(k0), k: net_of(k)}
        x = ncnn_mat(self._ncnn, rng.uniform(-1, 1, size=(cfg.c_in, cfg.h, cfg.w)).astype(np.float32))

        def timed(n: int) -> float:
            t = time.perf_counter()
            self._run(nets[n], x)
            return time.perf_counter() - t

        for n in (k0, k):  # the first runs allocate ncnn's blob and staging memory
            timed(n)
        end = time.perf_counter() + warm_s
        while time.perf_counter() < end:
            for n in (k0, k):
                timed(n)
        t0s, tks, per_layer = [], [], []
        for _ in range(repeats):
            t0, tk = timed(k0), timed(k)
            t0s.append(t0)
            tks.append(tk)
            per_layer.append((tk - t0) / (k - k0))
        return {
            "layer_s": stats(per_layer),
            "net_k0_s": stats(t0s),
            "net_k_s": stats(tks),
            "k0": k0,
            "k": k,
            "includes": (
                "one int8->int8 layer's GPU work as ncnn records it inside a chain (zero padding where "
                "padding > 0, winograd transforms where ncnn picks winograd, the conv with fused "
                "requantize), plus the host's recording of its commands (ncnn records a whole inference "
                "before it submits it: anchors' ncnn_floor_layer_s bounds that fixed part), as "
                "(t_k - t_k0) / (k - k0) of whole-inference wall times, in which upload, download, "
                "submit and wait, the first layer's quantize and the last's dequantize cancel"
            ),
        }
