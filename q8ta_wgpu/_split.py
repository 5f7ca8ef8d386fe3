"""Splitting a conv whose tensors exceed one storage binding (max-storage-buffer-binding-size)
or one buffer (max-buffer-size) into dispatches that each fit, with exactly the same result.

- m-chunks: ranges of m-blocks (4 output widths of one output row) small enough that the im2col
  matrix A of the chunk, the window of input rows it reads and the window of output rows it
  writes each fit one binding. Windows are bound as (buffer, offset, size) with offset aligned
  to min-storage-buffer-offset-alignment; the kernels subtract the window's first word through
  TensorDesc.base (kernels/layout.wgsl). A whole (n, h) row is contiguous in 4W4C, 4C and 4C1W,
  so a range of rows is one contiguous window.
- channel slices: ranges of output-channel blocks whose prepacked weights fit one binding (the
  prepacked layout is c4-major, so a slice is a contiguous window; so is its `chan` records).
- batch slices (numpy inputs only): when a per-call buffer would exceed max-buffer-size.
"""

from __future__ import annotations

from dataclasses import dataclass

from .geometry import ConvGeometry, ceil4
from .layouts import packed_words, tensor_desc
from .uniforms import CHAN_BLOCK_BYTES, TENSOR_DESC


def offset_alignment(dev) -> int:
    return int(dev.limits.get("min-storage-buffer-offset-alignment", 256))


def window(first_word: int, end_word: int, align: int) -> tuple[int, int, int]:
    """(offset bytes, size bytes, base word) of the smallest aligned binding holding words
    [first_word, end_word)."""
    off = (4 * first_word) // align * align
    return off, 4 * end_word - off, off // 4


def row_stride(shape: tuple[int, int, int, int], layout: str) -> int:
    """Words per (n, h) row of a packed tensor."""
    return int(TENSOR_DESC.get(tensor_desc(shape, layout, 0), "s_h"))


@dataclass(frozen=True)
class Chunk:
    """m-blocks [base, base + count); x_win / y_win: (offset, size, base word) of the input and
    output windows, or None where the whole tensor is bound."""

    base: int
    count: int
    x_win: tuple[int, int, int] | None
    y_win: tuple[int, int, int] | None


def input_rows(geo: ConvGeometry, o0: int, o1: int) -> tuple[int, int]:
    """Input rows (n*H + h) that output rows [o0, o1) read (clipped to the tensor; may include a
    row or two they do not need)."""
    n0, h0 = divmod(o0, geo.H_out)
    n1, h1 = divmod(o1 - 1, geo.H_out)
    sh, ph, dh = geo.stride[0], geo.padding[0], geo.dilation[0]
    lo = min(max(h0 * sh - ph, 0), geo.H - 1)
    hi = min(max(h1 * sh - ph + dh * (geo.KH - 1), 0), geo.H - 1)
    return n0 * geo.H + lo, n1 * geo.H + hi + 1


def m_chunks(
    dev,
    geo: ConvGeometry,
    pointwise: bool,
    in_layout: str,
    out_layout: str,
    max_count: int | None = None,
    *,
    a_matrix: bool = True,
) -> list[Chunk]:
    """Split the m-blocks of a conv so every binding of every dispatch fits (see module doc),
    with at most max_count m-blocks per chunk; a_matrix=False: no im2col matrix is stored (the
    implicit GEMM gathers it from the input). Raises ValueError naming the tensor when even one
    m-block cannot fit."""
    limit, align = dev.max_binding_size, offset_alignment(dev)
    k4 = geo.K // 4
    w4_out = ceil4(geo.W_out)
    m_blocks = geo.N * geo.H_out * w4_out
    in_shape = (geo.N, geo.C_in, geo.H, geo.W)
    win_in = 4 * packed_words(in_shape, in_layout) > limit
    win_out = 4 * packed_words(geo.output_shape, out_layout) > limit
    s_in = row_stride(in_shape, in_layout)
    s_out = row_stride(geo.output_shape, out_layout)
    a_row = 16 * k4  # bytes of one m-block of A (pointwise: of the input)

    def wins(b: int, c: int) -> tuple[tuple | None, tuple | None]:
        o0, o1 = b // w4_out, (b + c - 1) // w4_out + 1
        xw = yw = None
        if pointwise:  # A is the input itself, read from the binding's block 0: always a window
            xw = (a_row * b, a_row * c, a_row * b // 4)
        elif win_in:
            r0, r1 = input_rows(geo, o0, o1)
            xw = window(r0 * s_in, r1 * s_in, align)
        if win_out:
            yw = window(o0 * s_out, o1 * s_out, align)
        return xw, yw

    def fits(b: int, c: int) -> str | None:
        """None, or what does not fit in one binding."""
        if max_count is not None and c > max_count:
            return "the dispatch size"
        if a_matrix and (not pointwise or win_in) and a_row * c > limit:
            return f"the im2col matrix ({a_row} bytes per block of 4 rows)"
        xw, yw = wins(b, c)
        if xw is not None and xw[1] > limit:
            return "the input rows one output row reads"
        if yw is not None and yw[1] > limit:
            return "one output row"
        return None

    # Pointwise input windows start at m-block offsets: keep them aligned.
    step = 1
    if pointwise:
        while (a_row * step) % align:
            step += 1
    chunks: list[Chunk] = []
    b = 0
    while b < m_blocks:
        rem = m_blocks - b
        if fits(b, rem) is None:
            c = rem
        else:
            why = fits(b, min(step, rem))
            if why is not None:
                raise ValueError(
                    f"{why} exceeds this adapter's storage binding limit ({limit} bytes, "
                    f"max-storage-buffer-binding-size on {dev.name}); conv {geo} cannot be split "
                    "finer than one output row"
                )
            lo, hi = min(step, rem), rem  # largest c with fits(b, c), then rounded to step
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if fits(b, mid) is None:
                    lo = mid
                else:
                    hi = mid - 1
            c = max(lo // step * step, min(step, rem))
        xw, yw = wins(b, c)
        chunks.append(Chunk(b, c, xw, yw))
        b += c
    if len(chunks) == 1 and not win_in and not win_out:  # bind whole tensors, as ever
        return [Chunk(0, m_blocks, None, None)]
    return chunks


def channel_slices(dev, geo: ConvGeometry) -> list[tuple[int, int]]:
    """Output-channel-block ranges [c4_lo, c4_hi) whose prepacked weights each fit one binding:
    [(0, C4_out)] when all fit. With groups == 1 a slice is a conv of its own on the same im2col
    matrix; with groups > 1 a slice is a run of whole groups starting on a channel-block
    boundary, or (when one group alone is too big, C_out/groups % 4 == 0) part of one group;
    the GEMM reads the slice's K columns through GemmParams.g_base."""
    limit, align = dev.max_binding_size, offset_alignment(dev)
    c4_out = ceil4(geo.C_out)
    per_c4 = 16 * (geo.K_per_group // 4)  # bytes of one channel block of prepacked weights
    if per_c4 * c4_out <= limit:
        return [(0, c4_out)]
    # Slice starts must keep both the weights window and the chan window (CHAN_BLOCK_BYTES per
    # channel block) aligned; with groups, they must also fall on a group boundary that is a block one.
    if geo.groups == 1:
        unit = 1  # channel blocks per step
    else:
        g_step = 1
        while (g_step * geo.C_out_per_group) % 4:
            g_step += 1
        unit = g_step * geo.C_out_per_group // 4

    def aligned(c4: int) -> bool:
        return (per_c4 * c4) % align == 0 and (CHAN_BLOCK_BYTES * c4) % align == 0

    step = unit
    while not aligned(step):
        step += unit
    per = limit // per_c4 // step * step
    if per >= 1:
        return [(lo, min(lo + per, c4_out)) for lo in range(0, c4_out, per)]
    if geo.groups > 1 and geo.C_out_per_group % 4 == 0:
        # One group's weights exceed a binding: slice inside each group (a slice is then a
        # one-group conv on that group's K columns); slices never cross a group boundary.
        c4_pg = geo.C_out_per_group // 4
        step = 1
        while not aligned(step):
            step += 1
        per = limit // per_c4 // step * step
        if per >= 1 and all(aligned(g * c4_pg) for g in range(geo.groups)):
            return [
                (lo, min(lo + per, (g + 1) * c4_pg))
                for g in range(geo.groups)
                for lo in range(g * c4_pg, (g + 1) * c4_pg, per)
            ]
    raise ValueError(
        f"{step} channel block(s) of prepacked weights ({per_c4 * step} bytes) exceed this "
        f"adapter's storage binding limit ({limit} bytes, max-storage-buffer-binding-size)"
        + ("" if geo.groups == 1 else " (the fewest channels a slice of this grouped conv can hold)")
    )


def batch_size_that_fits(dev, geo: ConvGeometry, out_layout: str) -> int:
    """How many samples of a numpy-input call fit max-buffer-size in every per-call buffer (the
    NCHW input and output, the packed input and output); a ValueError if not even one does."""
    limit = dev.max_buffer_size
    n1_in = (1, geo.C_in, geo.H, geo.W)
    n1_out = (1, geo.C_out, geo.H_out, geo.W_out)
    per = max(
        geo.C_in * geo.H * geo.W,
        4 * packed_words(n1_in, "4W4C"),
        geo.C_out * geo.H_out * geo.W_out,
        4 * packed_words(n1_out, out_layout),
    )
    if per > limit:
        raise ValueError(
            f"one sample of x {(geo.N, geo.C_in, geo.H, geo.W)} needs a buffer of {per} bytes (input "
            f"or output, packed); this adapter ({dev.name}) allows {limit} (max-buffer-size)"
        )
    return min(geo.N, limit // per)
