"""Bad input: every case raises a ValueError/TypeError naming the argument and the rule, and the
device keeps working; a hypothesis property test throws random valid and invalid arguments at
`conv2d` (valid ones match the reference within 1 LSB, invalid ones raise the documented
exception)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import q8ta_wgpu as q8
from q8ta_wgpu import reference

from .helpers import assert_within_1lsb

RNG = np.random.default_rng(0)
X = RNG.integers(-128, 128, (1, 8, 6, 6), dtype=np.int8)
W = RNG.integers(-127, 128, (4, 8, 3, 3), dtype=np.int8)
WS = np.full(4, 0.01, np.float32)
B = np.linspace(-1, 1, 4).astype(np.float32)
KW = dict(input_scale=0.02, input_zero_point=3, output_scale=0.1, output_zero_point=-2, padding=1)


@pytest.fixture(scope="module")
def other_device() -> q8.Device:
    return q8.Device()


def _readonly(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


# (id, overrides of x/weight/weight_scales/bias and keyword arguments, exception, message regex)
BAD = [
    ("x_list", dict(x=X.tolist()), TypeError, r"x must be a numpy\.ndarray"),
    ("x_float", dict(x=X.astype(np.float32)), TypeError, r"x must have dtype int8"),
    ("x_uint8", dict(x=X.view(np.uint8)), TypeError, r"x must have dtype int8"),
    ("x_rank3", dict(x=X[0]), ValueError, r"x must have 4 dimensions"),
    ("x_rank5", dict(x=X[None]), ValueError, r"x must have 4 dimensions"),
    ("x_empty", dict(x=X[:, :, :0]), ValueError, r"x must have no empty dimension"),
    ("x_channels", dict(x=X[:, :5].copy()), ValueError, r"x has C_in = 5.*weight\.shape\[1\] must be"),
    ("weight_float", dict(weight=W.astype(np.float32)), TypeError, r"weight must have dtype int8"),
    ("weight_rank", dict(weight=W[0]), ValueError, r"weight must have 4 dimensions"),
    ("weight_list", dict(weight=W.tolist()), TypeError, r"weight must be a numpy\.ndarray"),
    (
        "groups_cin",
        dict(weight=np.zeros((6, 2, 3, 3), np.int8), weight_scales=np.ones(6), groups=3, bias=None),
        ValueError,
        r"groups \(3\) must divide the input channels C_in \(8\)",
    ),
    (
        "groups_cout2",
        dict(weight=np.zeros((6, 2, 3, 3), np.int8), weight_scales=np.ones(6), groups=4, bias=None),
        ValueError,
        r"groups \(4\) must divide the output channels",
    ),
    ("groups_zero", dict(groups=0), ValueError, r"groups must be >= 1"),
    ("groups_float", dict(groups=1.0), TypeError, r"groups must be an int"),
    (
        "kernel_too_big",
        dict(weight=np.zeros((4, 8, 9, 3), np.int8), padding=1),
        ValueError,
        r"kernel extent 9 .* larger than the padded input H = 6 \+ 2\*1",
    ),
    (
        "kernel_too_big_dilated",
        dict(dilation=(1, 4), padding=0),
        ValueError,
        r"kernel extent 9 .*padded input W",
    ),
    ("stride_zero", dict(stride=0), ValueError, r"stride must be >= 1"),
    ("stride_negative", dict(stride=(1, -2)), ValueError, r"stride must be >= 1"),
    ("stride_float", dict(stride=1.5), TypeError, r"stride must be an int"),
    ("stride_triple", dict(stride=(1, 1, 1)), ValueError, r"stride must be an int or an \(h, w\) pair"),
    ("stride_array", dict(stride=np.array([1, 2])), TypeError, r"stride must be an int"),
    ("stride_huge", dict(stride=2**40), ValueError, r"stride must be < 2\*\*31"),
    ("dilation_zero", dict(dilation=0), ValueError, r"dilation must be >= 1"),
    ("padding_negative", dict(padding=-1), ValueError, r"padding must be >= 0"),
    ("padding_str", dict(padding="same"), TypeError, r"padding must be an int"),
    ("input_scale_zero", dict(input_scale=0.0), ValueError, r"input_scale must be > 0"),
    ("output_scale_negative", dict(output_scale=-0.1), ValueError, r"output_scale must be > 0"),
    ("input_scale_nan", dict(input_scale=float("nan")), ValueError, r"input_scale must be finite"),
    ("output_scale_inf", dict(output_scale=float("inf")), ValueError, r"output_scale must be finite"),
    ("output_scale_f32_overflow", dict(output_scale=1e39), ValueError, r"output_scale must be finite"),
    ("input_scale_f32_underflow", dict(input_scale=1e-46), ValueError, r"input_scale must be > 0"),
    ("input_scale_str", dict(input_scale="0.1"), TypeError, r"input_scale must be a real number"),
    ("output_scale_none", dict(output_scale=None), TypeError, r"output_scale must be a real number"),
    (
        "input_scale_missing",
        dict(input_scale=None),
        TypeError,
        r"input_scale and input_zero_point are required",
    ),
    (
        "scale_product_underflow",
        dict(input_scale=1e-30, weight_scales=np.full(4, 1e-20)),
        ValueError,
        r"input_scale \* weight_scales must be a finite float32 > 0",
    ),
    ("input_zp_128", dict(input_zero_point=128), ValueError, r"input_zero_point must be in \[-128, 127\]"),
    (
        "output_zp_-129",
        dict(output_zero_point=-129),
        ValueError,
        r"output_zero_point must be in \[-128, 127\]",
    ),
    ("input_zp_float", dict(input_zero_point=1.5), TypeError, r"input_zero_point must be an integer"),
    ("output_zp_bool", dict(output_zero_point=True), TypeError, r"output_zero_point must be an integer"),
    ("bias_length", dict(bias=np.zeros(5, np.float32)), ValueError, r"bias must have shape \(4,\)"),
    ("bias_2d", dict(bias=np.zeros((4, 1), np.float32)), ValueError, r"bias must have shape \(4,\)"),
    ("bias_nan", dict(bias=np.array([0, np.nan, 0, 0], np.float32)), ValueError, r"bias must be finite"),
    ("bias_str", dict(bias="zeros"), TypeError, r"bias must be an array of floats"),
    ("bias_complex", dict(bias=np.zeros(4, np.complex64)), TypeError, r"bias must be an array of floats"),
    ("scales_length", dict(weight_scales=WS[:3]), ValueError, r"weight_scales must have shape \(4,\)"),
    (
        "scales_zero",
        dict(weight_scales=np.array([0.01, 0, 0.01, 0.01])),
        ValueError,
        r"weight_scales must be > 0",
    ),
    (
        "scales_inf",
        dict(weight_scales=np.array([0.01, np.inf, 0.01, 0.01])),
        ValueError,
        r"weight_scales must be finite",
    ),
    ("activation", dict(activation="gelu"), ValueError, r"activation must be one of none, relu"),
    ("activation_none", dict(activation=None), ValueError, r"activation must be one of"),
    ("method", dict(method="winograd"), ValueError, r"method must be one of auto"),
    ("method_pointwise_3x3", dict(method="pointwise"), ValueError, r"method 'pointwise' needs a 1x1 kernel"),
    (
        # 2 groups of 3 channels (with groups == 1, any C_in runs padded to a multiple of 4)
        "method_4w4c_odd_c",
        dict(x=X[:, :6].copy(), weight=W[:, :3].copy(), groups=2, method="im2col_4w4c"),
        ValueError,
        r"method 'im2col_4w4c' needs .*C_in/groups % 4 == 0",
    ),
    (
        "method_depthwise_not_depthwise",
        dict(method="depthwise_4w4c"),
        ValueError,
        r"method 'depthwise_4w4c' needs .*one input and one output channel per group",
    ),
    ("output_layout", dict(output_layout="NCHW"), ValueError, r"output_layout must be one of 4W4C"),
    ("device", dict(device="cuda"), TypeError, r"device must be a q8ta_wgpu\.Device"),
]


def _call(dev, /, **over):
    args = dict(x=X, weight=W, weight_scales=WS, bias=B)
    kw = dict(KW, device=dev)
    for k, v in over.items():
        (args if k in args else kw)[k] = v
    return q8.conv2d(args["x"], args["weight"], args["weight_scales"], args["bias"], **kw)


@pytest.fixture(scope="module")
def good(device):
    return reference.conv2d(X, W, WS, B, **KW)


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_argument_raises_and_device_still_works(device, good, case):
    _, over, exc, pattern = case
    with pytest.raises(exc, match=pattern):
        _call(device, **over)
    assert_within_1lsb(_call(device), good, "after a bad call")


@pytest.mark.parametrize(
    "over",
    [
        dict(x=np.asfortranarray(X)),
        dict(x=np.ascontiguousarray(np.transpose(X, (0, 1, 3, 2))).transpose(0, 1, 3, 2)),  # strided view
        dict(x=_readonly(X)),
        dict(weight=W[:, :, ::-1, :][:, :, ::-1, :]),  # negative-stride view of a view
        dict(weight=_readonly(W), weight_scales=_readonly(WS), bias=_readonly(B)),
        dict(bias=B.tolist(), weight_scales=WS.astype(np.float64)),
        dict(stride=np.int64(1), padding=(np.int32(1), 1), input_zero_point=np.int8(3)),
        dict(input_zero_point=3.0, input_scale=np.float32(0.02)),
    ],
    ids=["fortran", "strided", "readonly", "weight_view", "readonly_params", "lists_f64", "numpy_ints",
         "float_zp"],
)  # fmt: skip
def test_accepted_by_copying(device, good, over):
    assert_within_1lsb(_call(device, **over), good, "accepted variant")


def test_non_contiguous_x_slice(device):
    xs = RNG.integers(-128, 128, (2, 8, 12, 13), dtype=np.int8)[:, :, ::2, 1::2]
    assert not xs.flags.c_contiguous
    got = _call(device, x=xs)
    assert_within_1lsb(got, reference.conv2d(np.ascontiguousarray(xs), W, WS, B, **KW), "strided slice")


def test_qtensor_of_another_device(device, other_device, good):
    xt = q8.QTensor.from_numpy(X, KW["input_scale"], KW["input_zero_point"], device=other_device)
    conv = q8.QConv2d(W, WS, B, device=device, **KW)
    with pytest.raises(ValueError, match=r"x is a QTensor of another Device"):
        conv(xt)
    with pytest.raises(ValueError, match=r"x is a QTensor of another Device"):
        q8.conv2d(xt, W, WS, B, device=device, **{k: v for k, v in KW.items() if "input" not in k})
    # Without device=, conv2d runs on the QTensor's own device.
    y = q8.conv2d(xt, W, WS, B, **{k: v for k, v in KW.items() if "input" not in k})
    assert y.device is other_device
    assert_within_1lsb(y.numpy(), good, "qtensor on its own device")
    assert_within_1lsb(conv(X), good, "after a bad call")


def test_qtensor_quantization_mismatch(device):
    xt = q8.QTensor.from_numpy(X, 0.05, 3, device=device)
    conv = q8.QConv2d(W, WS, B, device=device, **KW)
    with pytest.raises(ValueError, match=r"x has scale .* this conv expects input_scale"):
        conv(xt)


def test_k_per_group_over_int32_exact_range(device):
    with pytest.raises(ValueError, match=r"weight has 65536 columns per group"):
        q8.QConv2d(np.zeros((4, 4096, 4, 4), np.int8), np.ones(4, np.float32), input_scale=1.0,
                   input_zero_point=0, output_scale=1.0, output_zero_point=0, device=device)  # fmt: skip


# The takers of ConvOptions (as **options, which Python does not check) and the name Python's own
# messages would give them.
CONV_OPTION_TAKERS = {
    "conv2d": ("conv2d", lambda dev, **kw: q8.conv2d(X, W, WS, B, device=dev, **kw)),
    "QConv2d": ("QConv2d.__init__", lambda dev, **kw: q8.QConv2d(W, WS, B, device=dev, **kw)),
    "reference": ("conv2d", lambda dev, **kw: reference.conv2d(X, W, WS, B, **kw)),
}


@pytest.mark.parametrize("taker", list(CONV_OPTION_TAKERS))
def test_conv_options_are_checked_as_declared_keywords(device, taker):
    # A misspelt option is not ignored; a missing required one is Python's TypeError.
    name, call = CONV_OPTION_TAKERS[taker]
    with pytest.raises(TypeError, match=rf"^{name}\(\) got an unexpected keyword argument 'strides'$"):
        call(device, strides=2, **KW)
    if taker != "QConv2d":  # QConv2d's own keyword, not an option
        with pytest.raises(TypeError, match=rf"^{name}\(\) got an unexpected keyword argument 'tune'$"):
            call(device, tune=True, **KW)
    no_output = {k: v for k, v in KW.items() if not k.startswith("output")}
    missing = "missing 2 required keyword-only arguments: 'output_scale' and 'output_zero_point'"
    with pytest.raises(TypeError, match=rf"^{name}\(\) {missing}$"):
        call(device, **no_output)


def test_avg_pool_options_are_checked_as_declared_keywords(device):
    q = dict(input_scale=0.1, input_zero_point=0, output_scale=0.1, output_zero_point=0)
    x = np.zeros((1, 4, 4, 4), np.int8)
    with pytest.raises(
        TypeError, match=r"^QAvgPool2d\.__init__\(\) got an unexpected keyword argument 'relu'$"
    ):
        q8.ops.QAvgPool2d(2, relu=True, device=device, **q)
    with pytest.raises(
        TypeError,
        match=r"^QAdaptiveAvgPool2d\.__init__\(\) missing 1 required keyword-only argument: 'output_zero_point'$",
    ):
        q8.ops.QAdaptiveAvgPool2d(
            1, device=device, **{k: v for k, v in q.items() if k != "output_zero_point"}
        )
    with pytest.raises(
        TypeError,
        match=r"^avg_pool2d\(\) missing 4 required keyword-only arguments: 'input_scale', 'input_zero_point', 'output_scale', and 'output_zero_point'$",
    ):
        reference.avg_pool2d(x, 2)
    with pytest.raises(
        TypeError, match=r"^adaptive_avg_pool2d\(\) got an unexpected keyword argument 'device'$"
    ):
        reference.adaptive_avg_pool2d(x, 1, device=device, **q)


# ---- property test ----------------------------------------------------------------------------
# One valid conv is drawn, then at most one mutation that makes it invalid in a known way (or one
# of the accepted variants). Invalid calls must raise exactly the documented exception.

MUTATIONS = {
    "x_dtype": (TypeError, r"x must have dtype int8"),
    "x_rank": (ValueError, r"x must have 4 dimensions"),
    "x_channels": (ValueError, r"x has C_in = \d+ channels"),
    "weight_dtype": (TypeError, r"weight must have dtype int8"),
    "groups_not_dividing": (ValueError, r"groups \(\d+\) must divide the (input|output) channels"),
    "kernel_too_big": (ValueError, r"kernel extent \d+ .* larger than the padded input"),
    "stride": (ValueError, r"stride must be >= 1"),
    "dilation": (ValueError, r"dilation must be >= 1"),
    "padding": (ValueError, r"padding must be >= 0"),
    "scale_nonpositive": (ValueError, r"(input|output)_scale must be > 0"),
    "scale_nonfinite": (ValueError, r"(input|output)_scale must be finite"),
    "zp_range": (ValueError, r"(input|output)_zero_point must be in \[-128, 127\]"),
    "bias_length": (ValueError, r"bias must have shape"),
    "scales_length": (ValueError, r"weight_scales must have shape"),
    "scales_nan": (ValueError, r"weight_scales must be finite"),
    "activation": (ValueError, r"activation must be one of"),
    "method": (ValueError, r"method must be one of"),
    "other_device": (ValueError, r"x is a QTensor of another Device"),
    "x_type": (TypeError, r"x must be a numpy\.ndarray"),
    "weight_rank": (ValueError, r"weight must have 4 dimensions"),
    "param_type": (TypeError, r"(stride|padding|dilation) must be an int"),
    "scale_type": (TypeError, r"(input|output)_scale must be a real number"),
    "zp_type": (TypeError, r"(input|output)_zero_point must be an integer"),
    "output_layout": (ValueError, r"output_layout must be one of"),
}
VARIANTS = ["none", "fortran_x", "readonly", "bias_none", "list_bias", "qtensor"]


@st.composite
def conv_cases(draw):
    g = draw(st.sampled_from([1, 1, 2, 3]))
    cin_pg = draw(st.integers(1, 6))
    cout_pg = draw(st.integers(1, 5))
    n = draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    # Input at least as big as the padded kernel extent (else it is the kernel_too_big case).
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 11))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 11))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    case = dict(
        x=rng.integers(-128, 128, (n, g * cin_pg, h, w), dtype=np.int8),
        weight=rng.integers(-128, 128, (g * cout_pg, cin_pg, kh, kw), dtype=np.int8),
        weight_scales=rng.uniform(0.002, 0.02, g * cout_pg).astype(np.float32),
        bias=rng.uniform(-1, 1, g * cout_pg).astype(np.float32),
        kw=dict(
            input_scale=float(rng.uniform(0.005, 0.05)),
            input_zero_point=int(rng.integers(-128, 128)),
            output_scale=float(rng.uniform(0.02, 0.2) * np.sqrt(kh * kw * cin_pg)),
            output_zero_point=int(rng.integers(-128, 128)),
            stride=(sh, sw) if sh != sw else sh,
            padding=(ph, pw),
            dilation=(dh, dw),
            groups=g,
            activation=draw(st.sampled_from(["none", "relu"])),
            method=draw(st.sampled_from(["auto", "auto", "im2col_generic"])),
        ),
    )
    kind = draw(st.sampled_from(["valid"] * 3 + ["invalid"] * 2))
    mutation = draw(st.sampled_from(sorted(MUTATIONS))) if kind == "invalid" else None
    variant = draw(st.sampled_from(VARIANTS)) if kind == "valid" else "none"
    return case, mutation, variant, draw(st.sampled_from(q8.LAYOUTS)), draw(st.integers(0, 10**6))


def _mutate(case, mutation, pick):
    """Apply one mutation (pick: a number to choose among its variants)."""
    x, wt, kw = case["x"], case["weight"], case["kw"]
    n, c_in, h, w = x.shape
    c_out, cpg, kh, kwid = wt.shape
    g = kw["groups"]
    two = pick % 2
    if mutation == "x_dtype":
        case["x"] = x.astype([np.int16, np.uint8, np.float32][pick % 3])
    elif mutation == "x_rank":
        case["x"] = x[0] if two else x[None]
    elif mutation == "x_channels":
        case["x"] = np.zeros((n, c_in + g, h, w), np.int8)  # still divisible by groups
    elif mutation == "weight_dtype":
        case["weight"] = wt.astype(np.int32 if two else np.float16)
    elif mutation == "groups_not_dividing":
        bad = next(v for v in range(2, 50) if c_in % v or c_out % v)
        kw["groups"] = bad
    elif mutation == "kernel_too_big":
        kw["padding"] = 0
        kw["dilation"] = 1
        case["weight"] = np.zeros((c_out, cpg, h + 1 + pick % 3, kwid), np.int8)
    elif mutation in ("stride", "dilation"):
        kw[mutation] = (1, -(pick % 3)) if two else -(pick % 3)
    elif mutation == "padding":
        kw["padding"] = (-1 - pick % 3, 0)
    elif mutation == "scale_nonpositive":
        kw["input_scale" if two else "output_scale"] = [0.0, -1e-3, -5.0][pick % 3]
    elif mutation == "scale_nonfinite":
        kw["input_scale" if two else "output_scale"] = [float("nan"), float("inf"), -float("inf")][pick % 3]
    elif mutation == "zp_range":
        kw["input_zero_point" if two else "output_zero_point"] = [128, -129, 1000, -(2**40)][pick % 4]
    elif mutation == "bias_length":
        case["bias"] = np.zeros(c_out + 1 + pick % 3, np.float32)
    elif mutation == "scales_length":
        case["weight_scales"] = np.full(max(0, c_out - 1 - pick % 2), 0.01, np.float32)
    elif mutation == "scales_nan":
        case["weight_scales"][pick % c_out] = np.nan
    elif mutation == "activation":
        kw["activation"] = ["gelu", "RELU", "", "sigmoid"][pick % 4]
    elif mutation == "method":
        kw["method"] = ["direct", "im2col", "AUTO"][pick % 3]
    elif mutation == "x_type":
        case["x"] = x.tolist() if two else x.astype(np.int8).tobytes()
    elif mutation == "weight_rank":
        case["weight"] = wt[:, :, 0] if two else wt[None]
    elif mutation == "param_type":
        kw[["stride", "padding", "dilation"][pick % 3]] = [1.0, "1", (1, 2.5), None][pick % 4]
    elif mutation == "scale_type":
        kw["input_scale" if two else "output_scale"] = ["0.1", [0.1], None, np.ones(2)][pick % 4]
    elif mutation == "zp_type":
        kw["input_zero_point" if two else "output_zero_point"] = [1.5, "3", None, True][pick % 4]
    elif mutation == "output_layout":
        kw["output_layout"] = ["NCHW", "4w4c", "NHWC"][pick % 3]


@pytest.mark.slow
@settings(
    max_examples=800,  # ~6 s on lavapipe
    deadline=None,
    derandomize=True,  # the same examples every run: CI is reproducible
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    print_blob=True,
)
@given(conv_cases())
def test_property_valid_match_reference_invalid_raise(device, other_device, drawn):
    case, mutation, variant, layout, pick = drawn
    if mutation is not None and mutation != "other_device":
        _mutate(case, mutation, pick)
    x, wt, ws, b, kw = case["x"], case["weight"], case["weight_scales"], case["bias"], dict(case["kw"])
    if variant == "fortran_x":
        x = np.asfortranarray(x)
    elif variant == "readonly":
        x, wt = _readonly(x), _readonly(wt)
    elif variant == "bias_none":
        b = None
    elif variant == "list_bias":
        b = b.tolist()
    if mutation is not None:
        exc, pattern = MUTATIONS[mutation]
        with pytest.raises(exc, match=pattern):
            if mutation == "other_device":
                xt = q8.QTensor.from_numpy(x, kw["input_scale"], kw["input_zero_point"], device=other_device)
                q8.conv2d(xt, wt, ws, b, device=device, **kw)
            else:
                q8.conv2d(x, wt, ws, b, device=device, **kw)
        return
    ref = reference.conv2d(x, wt, ws, b, **{k: v for k, v in kw.items() if k != "method"})
    if variant == "qtensor":
        xt = q8.QTensor.from_numpy(x, kw["input_scale"], kw["input_zero_point"], layout=layout, device=device)
        if layout != "4W4C":
            kw["method"] = "im2col_generic"
        y = q8.conv2d(xt, wt, ws, b, output_layout=layout, **kw)
        assert isinstance(y, q8.QTensor) and y.layout == layout
        got = y.numpy()
    else:
        got = q8.conv2d(x, wt, ws, b, device=device, **kw)
    assert_within_1lsb(got, ref, f"hypothesis {x.shape} {wt.shape} {kw}")
