"""Packed int8 activation layouts (4W4C, 4C, 4C1W): host-side pack/unpack in numpy and the same
conversions as GPU kernels (kernels/pack_nchw.wgsl, kernels/unpack_nchw.wgsl).

Every layout packs 4 int8 values little-endian into one uint32 word (byte j = bits 8j..8j+7);
slots past C (and past W in 4W4C) hold the tensor's zero point. With C4 = ceil(C/4),
W4 = ceil(W/4), element (n, c, h, w) lives at:

    4W4C  word ((((n*H + h)*W4 + w//4)*C4 + c//4)*4 + w%4), byte c%4   (16-byte blocks)
    4C    word (((n*H + h)*W + w)*C4 + c//4), byte c%4                 (NHWC, C padded to 4)
    4C1W  word (((n*H + h)*C4 + c//4)*W + w), byte c%4
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._checks import check_int8_array, check_zero_point
from .geometry import ceil4
from .runtime import Device, Pass, get_device
from .uniforms import TENSOR_DESC

LAYOUTS = ("4W4C", "4C", "4C1W")


def check_layout(name: str, layout: str) -> str:
    """`layout` if it is one of LAYOUTS, else a ValueError naming the argument `name`."""
    if layout not in LAYOUTS:
        raise ValueError(f"{name} must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    return layout


def _shape4(shape: Sequence[int]) -> tuple[int, int, int, int]:
    if len(shape) == 4:
        n, c, h, w = map(int, shape)
        if min(n, c, h, w) >= 1:
            return n, c, h, w
    raise ValueError(f"shape must be [N, C, H, W] with sizes >= 1, got {tuple(shape)}")


def packed_words(shape: Sequence[int], layout: str) -> int:
    """Number of uint32 words (4 bytes each) of a tensor of NCHW `shape` [N, C, H, W] in `layout`,
    padding included: N*H*ceil(W/4)*ceil(C/4)*4 for 4W4C, N*H*W*ceil(C/4) for 4C and 4C1W."""
    n, c, h, w = _shape4(shape)
    check_layout("layout", layout)
    if layout == "4W4C":
        return n * h * ceil4(w) * ceil4(c) * 4
    return n * h * w * ceil4(c)


def _to_blocks(x: np.ndarray, zero_point: int) -> np.ndarray:
    """NCHW int8 -> [N, H, W_alloc, C4, 4] int8 padded with the zero point (W_alloc = W)."""
    n, c, h, w = x.shape
    xp = np.full((n, ceil4(c) * 4, h, w), zero_point, np.int8)
    xp[:, :c] = x
    return xp.reshape(n, ceil4(c), 4, h, w).transpose(0, 3, 4, 1, 2)  # n, h, w, c4, j


def pack(x: np.ndarray, layout: str, zero_point: int = 0) -> np.ndarray:
    """Pack an NCHW int8 array into `layout` on the host (numpy).

    Args:
        x: int8 [N, C, H, W].
        layout: "4W4C", "4C" or "4C1W" (addressing in the module doc).
        zero_point: int8 value written into the padded slots (past C, and past W in 4W4C).

    Returns:
        uint32 [packed_words(x.shape, layout)], 4 little-endian int8 values per word.
    """
    x = check_int8_array("x", x, ndim=4)
    check_layout("layout", layout)
    zp = check_zero_point("zero_point", zero_point)
    n, c, h, w = x.shape
    b = _to_blocks(x, zp)  # n, h, w, c4, 4
    if layout == "4W4C":
        w4 = ceil4(w)
        bp = np.full((n, h, w4 * 4, ceil4(c), 4), zp, np.int8)
        bp[:, :, :w] = b
        # n, h, w4, i, c4, j -> n, h, w4, c4, i, j: block = 4 words (widths) of 4 bytes (channels)
        out = bp.reshape(n, h, w4, 4, ceil4(c), 4).transpose(0, 1, 2, 4, 3, 5)
    elif layout == "4C":
        out = b
    else:  # 4C1W: n, h, c4, w, j
        out = b.transpose(0, 1, 3, 2, 4)
    return np.ascontiguousarray(out).reshape(-1).view(np.uint32)


def unpack(words: np.ndarray, layout: str, shape: Sequence[int]) -> np.ndarray:
    """Inverse of `pack`: uint32 words in `layout` -> int8 [N, C, H, W] of `shape`.

    `words` must hold at least packed_words(shape, layout) words (extra words are ignored);
    padded slots are dropped.
    """
    check_layout("layout", layout)
    n, c, h, w = _shape4(shape)
    words = np.asarray(words)
    if words.dtype != np.uint32:
        raise TypeError(f"words must have dtype uint32, got {words.dtype}")
    need = packed_words(shape, layout)
    if words.size < need:
        raise ValueError(f"words holds {words.size} words, {layout} {tuple(shape)} needs {need}")
    c4 = ceil4(c)
    if layout == "4W4C" and w == 1:
        return unpack_4w4c_one_width(words.reshape(-1)[:need], n, c, h)
    b = np.ascontiguousarray(words.reshape(-1)[:need]).view(np.int8)
    if layout == "4W4C":
        w4 = ceil4(w)
        t = b.reshape(n, h, w4, c4, 4, 4).transpose(0, 1, 2, 4, 3, 5).reshape(n, h, w4 * 4, c4, 4)
        t = t[:, :, :w]
    elif layout == "4C":
        t = b.reshape(n, h, w, c4, 4)
    else:
        t = b.reshape(n, h, c4, w, 4).transpose(0, 1, 3, 2, 4)
    # n, h, w, c4, j -> n, c, h, w
    return np.ascontiguousarray(t.reshape(n, h, w, c4 * 4)[..., :c].transpose(0, 3, 1, 2))


def unpack_4w4c_one_width(words: np.ndarray, n: int, c: int, h: int) -> np.ndarray:
    """`unpack` of exactly the uint32 words of a 4W4C tensor of shape [n, c, h, 1], unchecked:
    word 0 (width 0's 4 channels) of each block's 4, picked as words (the general path copies
    all 4 first): a classifier's [1, 1000] output in 1.7 us on this project's machine."""
    c4 = -(-c // 4)
    t = words.reshape(n, h, c4, 4)[..., 0].copy().view(np.int8).reshape(n, h, c4 * 4)[..., :c]
    if h == 1:
        return np.ascontiguousarray(t.reshape(n, c, 1, 1))  # copies only where c % 4 != 0
    return np.ascontiguousarray(t.transpose(0, 2, 1)).reshape(n, c, h, 1)


def tensor_desc(shape: Sequence[int], layout: str, zero_point: int, base: int = 0) -> np.ndarray:
    """The `TensorDesc` uniform (uniforms.TENSOR_DESC) of a tensor's packed layout. `base`: the word
    index of the binding's first word when a window of the tensor is bound (mod 2^32)."""
    n, c, h, w = _shape4(shape)
    c4, w4 = ceil4(c), ceil4(w)
    if layout == "4W4C":
        s_h, s_wb, s_wi, s_c4, wb, w_alloc = w4 * 4 * c4, 4 * c4, 1, 4, 4, w4 * 4
    elif layout == "4C":
        s_h, s_wb, s_wi, s_c4, wb, w_alloc = w * c4, c4, 0, 1, 1, w
    elif layout == "4C1W":
        s_h, s_wb, s_wi, s_c4, wb, w_alloc = c4 * w, 1, 0, w, 1, w
    else:
        check_layout("layout", layout)
    return TENSOR_DESC.pack(
        n=n, c=c, h=h, w=w, s_n=h * s_h, s_h=s_h, s_wb=s_wb, s_wi=s_wi, s_c4=s_c4, wb=wb,
        zp=int(zero_point), w_alloc=w_alloc, base=int(base) % 2**32,
    )  # fmt: skip


def pack_pass(dev: Device, src: object, dst: object, shape: Sequence[int], layout: str, zp: int) -> Pass:
    """A GPU pass packing NCHW bytes in `src` into `dst` (which holds packed_words words)."""
    desc = tensor_desc(shape, layout, zp)
    wg = 64
    pipe = dev.pipeline("pack_nchw.wgsl", {"WG": wg})
    ubuf = dev.uniform(desc)
    threads = packed_words(shape, layout)  # one per output word (layout.wgsl's word_coords)
    bg = dev.bind("pack_nchw.wgsl", pipe, {"src": src, "dst": dst, "d": ubuf})
    return Pass(pipe, bg, dev.workgroups(-(-threads // wg)), "pack")


def unpack_pass(dev: Device, src: object, dst: object, shape: Sequence[int], layout: str) -> Pass:
    """A GPU pass unpacking `src` (packed, `layout`) into NCHW bytes in `dst`."""
    n, c, h, w = _shape4(shape)
    wg = 64
    pipe = dev.pipeline("unpack_nchw.wgsl", {"WG": wg})
    ubuf = dev.uniform(tensor_desc(shape, layout, 0))
    words = -(-(n * c * h * w) // 4)
    bg = dev.bind("unpack_nchw.wgsl", pipe, {"src": src, "dst": dst, "d": ubuf})
    return Pass(pipe, bg, dev.workgroups(-(-words // wg)), "unpack")


def pack_gpu(x: np.ndarray, layout: str, zero_point: int = 0, device: Device | None = None) -> np.ndarray:
    """`pack` computed by the GPU kernel (kernels/pack_nchw.wgsl): int8 [N, C, H, W] -> uint32
    [packed_words(x.shape, layout)] read back from the GPU; equal to `pack(x, layout, zero_point)`."""
    x = check_int8_array("x", x, ndim=4)
    check_layout("layout", layout)
    zp = check_zero_point("zero_point", zero_point)
    dev = get_device(device)
    src = dev.upload(x)
    words = packed_words(x.shape, layout)
    dst = dev.buffer(4 * words)
    dev.run([pack_pass(dev, src, dst, x.shape, layout, zp)])
    return np.frombuffer(dev.read(dst, 4 * words), np.uint32).copy()


def unpack_gpu(
    words: np.ndarray, layout: str, shape: Sequence[int], device: Device | None = None
) -> np.ndarray:
    """`unpack` computed by the GPU kernel (kernels/unpack_nchw.wgsl): uint32 words of `layout` ->
    int8 [N, C, H, W] of `shape`, read back from the GPU; equal to `unpack(words, layout, shape)`."""
    check_layout("layout", layout)
    n, c, h, w = _shape4(shape)
    words = np.asarray(words)
    if words.dtype != np.uint32:
        raise TypeError(f"words must have dtype uint32, got {words.dtype}")
    need = packed_words(shape, layout)
    if words.size < need:
        raise ValueError(f"words holds {words.size} words, {layout} {tuple(shape)} needs {need}")
    dev = get_device(device)
    src = dev.upload(words.reshape(-1)[:need])
    total = n * c * h * w
    dst = dev.buffer(total)
    dev.run([unpack_pass(dev, src, dst, shape, layout)])
    return np.frombuffer(dev.read(dst, total), np.int8).reshape(n, c, h, w).copy()
