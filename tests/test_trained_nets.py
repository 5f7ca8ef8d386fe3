"""Deep networks with trained weights: q8ta_wgpu.models' full ResNet-18 and MobileNetV2 (10
classes) trained for a few epochs on scikit-learn's digits (bench/trained.py: real images,
upscaled to 32x32, 3 channels), quantized through PT2E with Q8taQuantizer calibrated on training
digits, run on the GPU with `q8.from_torch` on the 539 held-out digits and checked against
PyTorch's int8 result of the same graph and against the float64 evaluation of that graph
(bench/networks.torch_float64_forward: every dequantize, op and quantize in float64). The issue's
bound: at least 99.9% of the int8 output elements within 1 LSB and top-1 agreeing on at least
99% of the images; where PyTorch's float32 evaluation is itself off by more than that from the
float64 one, the comparison is with the float64 evaluation.

Measured on lavapipe: ResNet-18 max 1 LSB from PyTorch (every element within 1 LSB). MobileNetV2
is such a network: PyTorch's float32 output is 98.72% within 1 LSB of the float64 evaluation
(max 5 LSB: 1-LSB rounding differences of float32 sums grow through its 17 inverted residuals),
and the GPU's is equal to it on every element (max 0 LSB): its requantizations round exactly
(kernels/exact_round.wgsl), so only a value that is a tie to within 2^-30 could differ."""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import q8ta_wgpu as q8

from .helpers import LSB_REPORT

torch = pytest.importorskip("torch")
pytest.importorskip("torchao")
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning)

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.networks import (  # noqa: E402
    compare,
    per_op_check,
    torch_float64_forward,
    torch_int8_out,
    torch_int8_values,
)
from bench.trained import (  # noqa: E402
    DIGITS_ENV,
    DigitsSplit,
    accuracy,
    builtin_model,
    digits_split,
    load_digits,
    save_digits,
    train,
)

HW = 32  # digits upscaled from 8x8 (ResNet-18 reaches 1x1 at its last stage, MobileNetV2 too)
EPOCHS = {"resnet18": 2, "mobilenet_v2": 3}  # test accuracy (float) 0.96 / 0.91
CALIB = 256  # training images the PT2E observers see


@pytest.fixture(scope="module")
def split() -> DigitsSplit:
    return digits_split(HW, seed=0)


@pytest.fixture(scope="module")
def runs() -> Any:
    """_run's results by model name, shared by this module's tests and dropped after them."""
    done: dict[str, dict[str, Any]] = {}
    yield done
    done.clear()


def _pt2e(model: Any, x_calib: np.ndarray) -> Any:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    example = torch.from_numpy(x_calib[:2])
    exported = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    m = prepare_pt2e(exported.module(), q8.Q8taQuantizer())
    with torch.no_grad():
        for i in range(0, len(x_calib), 64):
            m(torch.from_numpy(x_calib[i : i + 64]))
    return convert_pt2e(m)


def _run(runs: dict[str, dict[str, Any]], name: str, split: DigitsSplit, device: q8.Device) -> dict[str, Any]:
    """Trained, quantized, run on the GPU and by PyTorch on the test digits: once per module."""
    if name in runs:
        return runs[name]
    t0 = time.perf_counter()
    fmodel = train(builtin_model(name, seed=0), split, epochs=EPOCHS[name], seed=0)
    t_train = time.perf_counter() - t0
    x, labels = split.x_test, split.y_test
    with torch.no_grad():
        acc_float = accuracy(fmodel(torch.from_numpy(x)).numpy(), labels)
    t0 = time.perf_counter()
    m = _pt2e(fmodel, split.x_train[:CALIB])
    with torch.no_grad():
        y_torch = m(torch.from_numpy(x)).numpy()
    t_torch = time.perf_counter() - t0
    t0 = time.perf_counter()
    net = q8.from_torch(m, device=device)
    got = net.run_int8(x).reshape(len(x), -1)
    t_gpu = time.perf_counter() - t0
    want = torch_int8_out(y_torch, net.output_scale, net.output_zero_point)
    r = compare(got, want.reshape(got.shape))
    LSB_REPORT.append((f"trained/{name}/digits", r["max_lsb"], r["differ"], r["elements"]))
    print(
        f"\n{name} ({len(net.steps)} ops, {HW}x{HW} digits, {len(x)} test images): GPU vs PyTorch int8: "
        f"max {r['max_lsb']} LSB, {100 * r['within_1lsb']:.3f}% within 1 LSB, {r['differ']} of "
        f"{r['elements']} differ; top-1 agrees {100 * r['top1_agree']:.2f}%; accuracy float "
        f"{acc_float:.4f}, PyTorch int8 {accuracy(want, labels):.4f}, GPU int8 {accuracy(got, labels):.4f}; "
        f"train {t_train:.1f} s, PT2E + PyTorch int8 {t_torch:.1f} s, import + GPU {t_gpu:.1f} s"
    )
    runs[name] = {"m": m, "net": net, "got": got, "want": want, "acc_float": acc_float, **r}
    return runs[name]


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_trained_network_meets_the_bound(device, split, runs, name):
    """The issue's bound on a trained network: >= 99.9% of int8 outputs within 1 LSB of PyTorch's
    (or, where PyTorch's own float32 result is not within that of the float64 evaluation of its
    graph, of the float64 evaluation's), top-1 agreeing with PyTorch on >= 99% of the test
    digits; the GPU always within that of the float64 evaluation, and every op run alone on
    PyTorch's int8 inputs within 1 LSB of PyTorch's output of that node."""
    r = _run(runs, name, split, device)
    x, net = split.x_test, r["net"]
    assert r["acc_float"] > 0.9, f"{name}: training failed (float accuracy {r['acc_float']:.4f})"
    assert r["top1_agree"] >= 0.99, f"{name}: top-1 agrees on {100 * r['top1_agree']:.2f}% of images"
    t0 = time.perf_counter()
    y64 = torch_float64_forward(r["m"], x).astype(np.float32)
    exact = torch_int8_out(y64, net.output_scale, net.output_zero_point).reshape(r["got"].shape)
    gpu, pytorch = compare(r["got"], exact), compare(r["want"].reshape(exact.shape), exact)
    LSB_REPORT.append((f"trained/{name}/digits vs float64", gpu["max_lsb"], gpu["differ"], gpu["elements"]))
    ops = per_op_check(net, torch_int8_values(r["m"], x[:4]))
    checked = [o for o in ops if o["max_lsb"] is not None]
    print(
        f"\n{name} against the float64 evaluation of its int8 graph: GPU max {gpu['max_lsb']} LSB, "
        f"{100 * gpu['within_1lsb']:.3f}% within 1 LSB; PyTorch float32 max {pytorch['max_lsb']} LSB, "
        f"{100 * pytorch['within_1lsb']:.3f}%; each op alone: {len(checked)} checked, max "
        f"{max(o['max_lsb'] for o in checked)} LSB ({time.perf_counter() - t0:.1f} s)"
    )
    assert gpu["within_1lsb"] >= 0.999, f"{name}: GPU vs float64: {gpu}"
    if pytorch["within_1lsb"] >= 0.999:  # PyTorch is within the bound itself: compare with it
        assert r["within_1lsb"] >= 0.999, (
            f"{name}: {100 * r['within_1lsb']:.3f}% within 1 LSB of PyTorch (worst {r['max_lsb']} LSB)"
        )
    assert len(checked) > 20 and all(o["max_lsb"] <= 1 for o in checked), [
        o for o in checked if o["max_lsb"] > 1
    ]


def test_digits_npz_stands_in_for_sklearn(tmp_path, monkeypatch):
    """The .npz that `python bench/trained.py --save-digits` writes (for a machine without
    scikit-learn) gives the same images and split, from a path or from $Q8TA_DIGITS."""
    monkeypatch.delenv(DIGITS_ENV, raising=False)
    images, target = load_digits()  # scikit-learn's
    sk = digits_split(16)
    path = save_digits(tmp_path / "digits.npz")
    monkeypatch.setenv(DIGITS_ENV, str(path))
    for got_images, got_target in (load_digits(), load_digits(path)):
        np.testing.assert_array_equal(got_images, images)
        np.testing.assert_array_equal(got_target, target)
    npz = digits_split(16)
    assert npz.x_train.shape == (1258, 3, 16, 16) and npz.x_test.shape == (539, 3, 16, 16)
    for a, b in zip(dataclasses.astuple(npz), dataclasses.astuple(sk), strict=True):
        np.testing.assert_array_equal(a, b)
