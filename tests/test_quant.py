"""quantize / dequantize / quantize_weights: ties, clamping, extreme zero points, bad arguments.

Expected values are stated by hand or come from Python's round() (half-to-even), never from the
functions under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from q8ta_wgpu.quant import dequantize, quantize, quantize_weights


def _py_quantize(x: float, scale: float, zp: int) -> int:
    """Scalar model: the float32 quotient, then Python's half-to-even round() and a clamp."""
    quot = float(np.float32(x) / np.float32(scale))
    if math.isinf(quot):
        return 127 if quot > 0 else -128
    return max(-128, min(127, round(quot) + zp))


# --- quantize ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        # x / scale lands exactly on .5: round half to even.
        (0.5, 0),
        (1.5, 2),
        (2.5, 2),
        (3.5, 4),
        (-0.5, 0),
        (-1.5, -2),
        (-2.5, -2),
        (126.5, 126),
        (-127.5, -128),
        # just off the tie
        (2.5000002, 3),
        (2.4999998, 2),
    ],
)
def test_quantize_ties_half_to_even(x: float, expected: int) -> None:
    got = quantize(np.array([x], np.float32), 1.0, 0)
    assert got.dtype == np.int8
    assert int(got[0]) == expected


def test_quantize_ties_with_scale_and_zero_point() -> None:
    # scale 0.25 and zp 3: x/scale = 0.5, 1.5, 2.5, -2.5, -0.5 -> 0, 2, 2, -2, 0, then + 3.
    x = np.array([0.125, 0.375, 0.625, -0.625, -0.125], np.float32)
    np.testing.assert_array_equal(quantize(x, 0.25, 3), np.array([3, 5, 5, 1, 3], np.int8))


@pytest.mark.parametrize(
    ("zp", "x", "expected"),
    [
        (0, [1e6, -1e6, 127.0, -128.0, 127.6, -128.6], [127, -128, 127, -128, 127, -128]),
        (0, [np.inf, -np.inf], [127, -128]),
        # zp 127: zero sits at the top of the range, everything positive saturates.
        (127, [0.0, 1.0, 0.4, -255.0, -255.4, -255.6, -1e9], [127, 127, 127] + [-128] * 4),
        # zp -128: zero sits at the bottom, everything negative saturates.
        (-128, [0.0, -1.0, -0.4, 255.0, 255.4, 255.6, 1e9], [-128, -128, -128] + [127] * 4),
        (-128, [0.5, 1.5, 254.5], [-128, -126, 126]),
        (127, [-0.5, -1.5, -254.5], [127, 125, -127]),
    ],
)
def test_quantize_clamps(zp: int, x: list[float], expected: list[int]) -> None:
    got = quantize(np.array(x, np.float32), 1.0, zp)
    np.testing.assert_array_equal(got, np.array(expected, np.int8))


def test_quantize_keeps_shape_and_accepts_float64_and_ints() -> None:
    x = np.arange(-6, 6, dtype=np.float64).reshape(2, 3, 2) * 0.5
    got = quantize(x, 0.5, 1)
    assert got.shape == (2, 3, 2) and got.dtype == np.int8
    np.testing.assert_array_equal(got.ravel(), np.arange(-6, 6) + 1)
    np.testing.assert_array_equal(quantize(np.array([3, -3]), 1.0, 0), [3, -3])


def test_quantize_divides_in_float32() -> None:
    # x (the float32 just above 0.45) / float32(0.1) is exactly 4.5 in float32 (-> 4, half to
    # even), while the float64 quotient of the same two numbers is 4.5000001 (-> 5).
    x, s = np.float32(0.45000001788139343), np.float32(0.1)
    assert x / s == np.float32(4.5) and float(x) / float(s) > 4.5  # the premise
    assert int(quantize(np.array([x]), float(s), 0)[0]) == 4
    assert int(quantize(np.array([float(x)], np.float64), 0.1, 0)[0]) == 4


@settings(max_examples=300, deadline=None)
@given(
    x=st.floats(-1e4, 1e4, allow_nan=False, width=32),
    scale=st.floats(2.0**-10, 128.0, width=32),
    zp=st.integers(-128, 127),
)
def test_quantize_matches_python_round(x: float, scale: float, zp: int) -> None:
    assert int(quantize(np.array([x], np.float32), scale, zp)[0]) == _py_quantize(x, scale, zp)


def test_quantize_many_values_match_python_round() -> None:
    rng = np.random.default_rng(7)
    x = rng.uniform(-3, 3, 2000).astype(np.float32)
    x[:200] = (np.arange(-100, 100) + 0.5) * np.float32(0.0078125)  # exact ties for scale 2^-7
    for scale, zp in [(0.0078125, 0), (0.008123, 2), (0.05314, -1), (0.02, -128), (0.02, 127)]:
        expected = np.array([_py_quantize(float(v), scale, zp) for v in x], np.int8)
        np.testing.assert_array_equal(quantize(x, scale, zp), expected)


# --- dequantize --------------------------------------------------------------------------------


def test_dequantize_values() -> None:
    q = np.array([-128, -1, 0, 1, 5, 127], np.int8)
    got = dequantize(q, 0.5, 5)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.array([-66.5, -3.0, -2.5, -2.0, 0.0, 61.0], np.float32))
    # extreme zero points: q - zp spans [-255, 255] without int8 wraparound
    np.testing.assert_array_equal(dequantize(q[[0, 5]], 1.0, 127), [-255.0, 0.0])
    np.testing.assert_array_equal(dequantize(q[[0, 5]], 1.0, -128), [0.0, 255.0])


@pytest.mark.parametrize(
    ("scale", "zp"), [(1.0, 0), (0.008123, 2), (0.05314, -1), (1e-6, -128), (3.7e4, 127), (0.1, 37)]
)
def test_round_trip_is_identity(scale: float, zp: int) -> None:
    q = np.arange(-128, 128, dtype=np.int16).astype(np.int8).reshape(16, 16)
    np.testing.assert_array_equal(quantize(dequantize(q, scale, zp), scale, zp), q)


@pytest.mark.parametrize(
    "bad",
    [np.array([1, 2], np.int16), np.array([1.0]), [1, 2], np.uint8(3), np.array([1, 2], np.uint8)],
)
def test_dequantize_rejects_non_int8(bad: object) -> None:
    with pytest.raises(TypeError, match="q"):
        dequantize(bad, 1.0, 0)  # type: ignore[arg-type]


# --- bad scales and zero points (both functions) -----------------------------------------------

_BAD_SCALES_VALUE = [0.0, -1.0, -0.0, float("nan"), float("inf"), float("-inf"), 1e-50, 1e40]
# (a numeric string such as "0.1" is accepted by _checks.check_scale, so it is not listed here)
_BAD_SCALES_TYPE = [None, [0.1, 0.2], 1j, "abc"]


# _checks.check_scale casts 1e40 to float32 (-> inf) and numpy warns about the overflow.
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("scale", _BAD_SCALES_VALUE)
def test_bad_scale_value(scale: float) -> None:
    with pytest.raises(ValueError, match="scale"):
        quantize(np.zeros(2, np.float32), scale, 0)
    with pytest.raises(ValueError, match="scale"):
        dequantize(np.zeros(2, np.int8), scale, 0)


@pytest.mark.parametrize("scale", _BAD_SCALES_TYPE)
def test_bad_scale_type(scale: object) -> None:
    with pytest.raises(TypeError, match="scale"):
        quantize(np.zeros(2, np.float32), scale, 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="scale"):
        dequantize(np.zeros(2, np.int8), scale, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("zp", "exc"),
    [
        (128, ValueError),
        (-129, ValueError),
        (1000, ValueError),
        (1.5, TypeError),
        ("3", TypeError),
        (None, TypeError),
        (True, TypeError),
        (np.float32(0.5), TypeError),
    ],
)
def test_bad_zero_point(zp: object, exc: type[Exception]) -> None:
    with pytest.raises(exc, match="zero_point"):
        quantize(np.zeros(2, np.float32), 1.0, zp)  # type: ignore[arg-type]
    with pytest.raises(exc, match="zero_point"):
        dequantize(np.zeros(2, np.int8), 1.0, zp)  # type: ignore[arg-type]


def test_integral_float_zero_point_and_numpy_ints_accepted() -> None:
    x = np.array([0.0], np.float32)
    assert int(quantize(x, 1.0, 3.0)[0]) == 3  # type: ignore[arg-type]
    assert int(quantize(x, np.float64(1.0), np.int64(-128))[0]) == -128


def test_quantize_rejects_nan_and_non_numeric_input() -> None:
    with pytest.raises(ValueError, match="x"):
        quantize(np.array([0.0, np.nan]), 1.0, 0)
    with pytest.raises(TypeError, match="x"):
        quantize(np.array(["a"]), 1.0, 0)
    with pytest.raises(TypeError, match="x"):
        quantize(np.array([True]), 1.0, 0)


# --- quantize_weights --------------------------------------------------------------------------


def test_quantize_weights_by_hand() -> None:
    w = np.zeros((4, 6), np.float32)
    # channel 0: max |w| = 63.5 -> scale 0.5; w/scale = 127, -127, 0.5, 1.5, 2.5, -63.5
    w[0] = [63.5, -63.5, 0.25, 0.75, 1.25, -31.75]
    # channel 1: all zeros -> scale 1.0 and q = 0
    # channel 2: max |w| is a negative value, -254 -> scale 2.0
    w[2] = [-254.0, 1.0, 3.0, 5.0, -1.0, 127.0]
    # channel 3: max |w| = 127 -> scale 1.0
    w[3] = [127.0, -126.5, 0.5, -0.5, 1.5, 100.0]
    q, scale = quantize_weights(w)
    assert q.dtype == np.int8 and scale.dtype == np.float32
    assert q.shape == (4, 6) and scale.shape == (4,)
    np.testing.assert_array_equal(scale, np.array([0.5, 1.0, 2.0, 1.0], np.float32))
    np.testing.assert_array_equal(
        q,
        np.array(
            [
                [127, -127, 0, 2, 2, -64],
                [0, 0, 0, 0, 0, 0],
                [-127, 0, 2, 2, 0, 64],  # 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0, 63.5 -> 64
                [127, -126, 0, 0, 2, 100],
            ],
            np.int8,
        ),
    )


def test_quantize_weights_symmetric_per_channel() -> None:
    rng = np.random.default_rng(3)
    # Channels with very different magnitudes so one shared scale would be visibly wrong.
    mags = np.array([1e-3, 0.1, 1.0, 50.0, 3e4], np.float32)
    w = (rng.standard_normal((5, 3, 3, 3)) * mags[:, None, None, None]).astype(np.float32)
    q, scale = quantize_weights(w)
    assert q.shape == w.shape and scale.shape == (5,)
    assert q.min() >= -127 and q.max() <= 127  # -128 is never produced
    flat_q = q.reshape(5, -1).astype(np.int32)
    flat_w = w.reshape(5, -1)
    for oc in range(5):
        amax = float(np.abs(flat_w[oc]).max())
        assert math.isclose(float(scale[oc]), amax / 127, rel_tol=1e-6)
        assert np.abs(flat_q[oc]).max() == 127  # the largest weight hits the end of the range
        # each weight is within half a step of its quantized value
        recon = flat_q[oc] * float(scale[oc])
        assert np.all(np.abs(recon - flat_w[oc]) <= 0.5 * float(scale[oc]) * (1 + 1e-5))
    # symmetric: negating the weights negates q exactly and keeps the scales
    q_neg, scale_neg = quantize_weights(-w)
    np.testing.assert_array_equal(scale_neg, scale)
    np.testing.assert_array_equal(q_neg, -q)


def test_quantize_weights_matches_python_round() -> None:
    rng = np.random.default_rng(11)
    w = rng.uniform(-2, 2, (3, 40)).astype(np.float32)
    q, scale = quantize_weights(w)
    for oc in range(3):
        s = np.float32(np.abs(w[oc]).max()) / np.float32(127)
        assert scale[oc] == s
        expected = [max(-127, min(127, round(float(v / s)))) for v in w[oc]]
        np.testing.assert_array_equal(q[oc], np.array(expected, np.int8))


def test_quantize_weights_tiny_channel_never_gives_zero_scale() -> None:
    w = np.array([[1e-45, 0.0], [1.0, -1.0]], np.float32)  # 1e-45 / 127 underflows float32
    q, scale = quantize_weights(w)
    assert np.all(scale > 0)
    np.testing.assert_array_equal(q, np.array([[0, 0], [127, -127]], np.int8))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e300])
def test_quantize_weights_rejects_non_finite(bad: float) -> None:
    w = np.ones((2, 3, 1, 1), np.float64)
    w[1, 2, 0, 0] = bad
    with pytest.raises(ValueError, match="w"):
        quantize_weights(w)


def test_quantize_weights_rejects_bad_types_and_shapes() -> None:
    with pytest.raises(TypeError, match="w"):
        quantize_weights(np.array([["a"]]))
    with pytest.raises(ValueError, match="w"):
        quantize_weights(np.float32(1.0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="w"):
        quantize_weights(np.zeros((0, 3), np.float32))


# --- the exact requantization's fixed-point forms (quant.ConvRequant, AddRequant, PoolRequant) ---
# Oracle: Python's Fraction arithmetic and round() (half to even, exact on fractions).


@settings(max_examples=300, deadline=None)
@given(
    st.integers(-(2**31) + 1, 2**31 - 1),
    st.floats(1e-9, 2.0**16, exclude_max=True),
    st.floats(-(2.0**15), 2.0**15, exclude_min=True, exclude_max=True),
)
def test_conv_requant_rounds_its_fixed_point_value_exactly(adj: int, m: float, b: float) -> None:
    """ConvRequant.rint = round(adj * fix_m / 2^e + bi + bf / 2^e) exactly, and that fixed-point
    value lies within 2^-30 of |adj * M| plus 2^-(min(e, 32) + 1) of adj * M + B."""
    from fractions import Fraction

    from q8ta_wgpu.quant import ConvRequant

    rq = ConvRequant.of(1.0, np.array([m]), np.array([b]), 1.0, 2**16)
    e = int(rq.fix_e[0])
    fixed = Fraction(adj * int(rq.fix_m[0]) + int(rq.fix_bf[0]), 2**e) + int(rq.fix_bi[0])
    assert int(rq.rint(np.array([adj]))[0]) == round(fixed)
    exact = Fraction(adj) * Fraction(m) + Fraction(b)
    b_error = Fraction(1, 2 ** (min(e, 32) + 1))  # B's fraction holds min(e, 32) bits
    assert abs(fixed - exact) <= abs(Fraction(adj) * Fraction(m)) * Fraction(1, 2**30) + b_error
    assert 0 <= rq.fix_bf[0] < 2**e and 1 <= e <= 60 and rq.fix_m[0] <= 2**30


@settings(max_examples=200, deadline=None)
@given(st.integers(-255, 255), st.integers(-255, 255), st.floats(1e-6, 1e3), st.floats(1e-6, 1e3))
def test_add_requant_rounds_exactly(a: int, b: int, ma: float, mb: float) -> None:
    from fractions import Fraction

    from q8ta_wgpu.quant import AddRequant

    rq = AddRequant.of(ma, mb, 1.0)
    fixed = Fraction(a * rq.fix_a + b * rq.fix_b, 2**rq.fix_e)
    assert int(rq.rint(np.array([a]), np.array([b]))[0]) == round(fixed)
    exact = a * Fraction(ma) + b * Fraction(mb)
    assert abs(fixed - exact) <= (abs(a) + abs(b)) * max(Fraction(ma), Fraction(mb)) * Fraction(1, 2**29)


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**23), 2**23), st.integers(1, 5000), st.floats(1e-3, 1e3), st.booleans())
def test_pool_requant_rounds_exactly(total: int, divisor: int, m: float, negative: bool) -> None:
    from fractions import Fraction

    from q8ta_wgpu.quant import PoolRequant

    rq = PoolRequant.of(m, 1.0, 5000)
    d = -divisor if negative else divisor
    fixed = Fraction(total * rq.fix_m, 2**rq.fix_e) / d
    assert int(rq.rint(np.array([total]), np.array([d]))[0]) == round(fixed)
    assert abs(fixed - Fraction(total) * Fraction(m) / d) <= abs(fixed) * Fraction(rq.margin_rel) / 2


def test_fixed_point_forms_reject_what_they_cannot_hold() -> None:
    from q8ta_wgpu.quant import AddRequant, ConvRequant, PoolRequant

    with pytest.raises(ValueError, match=r"input_scale \* weight_scales / output_scale must be .* < 2\^16"):
        ConvRequant.of(1.0, np.array([1.0, 2.0**16]), None, 1.0, 9)
    # A bias beyond every sum's reach saturates: clipped to 2^15 steps, it saturates alike; one
    # that sums could still cancel is refused.
    rq = ConvRequant.of(1.0, np.array([1e-3, 1e-3]), np.array([-(2.0**20), 2.0**15 + 0.5]), 1.0, 9)
    assert list(rq.b) == [-(2.0**15), 2.0**15]
    assert list(rq.rint(np.array([[9 * 255 * 128, -9 * 255 * 128]]))[0]) == [
        round(-(2**15) + 293.76),
        round(2**15 - 293.76),
    ]
    with pytest.raises(ValueError, match=r"bias / output_scale must be finite and below 2\^16"):
        ConvRequant.of(1.0, np.array([0.5]), np.array([2.0**16]), 1.0, 9)
    with pytest.raises(ValueError, match="a_scale / output_scale"):
        AddRequant.of(2.0**17, 1.0, 1.0)
    with pytest.raises(ValueError, match="too small for exact rounding over windows of up to 4194304 taps"):
        PoolRequant.of(1e-9, 1.0, 2**22)
