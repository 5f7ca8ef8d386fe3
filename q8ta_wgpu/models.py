"""Built-in PyTorch float models with random weights, for the demo, the tests and the benchmark
where no weights can be downloaded: ResNet-18/50 and MobileNetV2 in their ImageNet shapes, and
two small ones of the same kinds. Needs torch (imported here only); each model's BatchNorm
statistics are random too, so that folding them into the convs is exercised.

    m = q8ta_wgpu.models.build("resnet18", seed=0)   # torch.nn.Module, eval mode
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def randomize_bn(bn: nn.BatchNorm2d, gen: torch.Generator) -> nn.BatchNorm2d:
    """`bn` with random affine parameters and running statistics drawn from `gen` (so that a
    conv with BN folded in has non-trivial scales and biases); returns it."""
    c = bn.num_features
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("bn has no running statistics (track_running_stats=False)")
    with torch.no_grad():
        bn.weight.copy_(torch.rand(c, generator=gen) + 0.5)
        bn.bias.copy_(torch.randn(c, generator=gen) * 0.2)
        bn.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
        bn.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
    return bn


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    """Random BatchNorm affine parameters and running statistics (seeded), in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None and m.running_var is not None:
            randomize_bn(m, gen)
    return model.eval()


def _conv_bn(
    cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: type | None = nn.ReLU
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn(cin, width, 3, stride), _conv_bn(width, width, 3, act=None))
        self.down = _conv_bn(cin, width, 1, stride, act=None) if stride != 1 or cin != width else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + (x if self.down is None else self.down(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.body = nn.Sequential(
            _conv_bn(cin, width, 1), _conv_bn(width, width, 3, stride), _conv_bn(width, cout, 1, act=None)
        )
        self.down = _conv_bn(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + (x if self.down is None else self.down(x)))


class ResNet(nn.Module):
    """ResNet (He et al. 2015): 7x7/2 stem, 3x3/2 max pool, four stages, global average pool,
    linear. `widths` per stage, `depths` blocks per stage."""

    def __init__(
        self, block: Any, depths: list[int], widths: list[int], classes: int = 1000, stem: int = 64
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 7, 2, 3, bias=False), nn.BatchNorm2d(stem), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        layers: list[nn.Module] = []
        cin = stem
        for i, (d, w) in enumerate(zip(depths, widths, strict=True)):
            for j in range(d):
                layers.append(block(cin, w, 2 if j == 0 and i > 0 else 1))
                cin = w * block.expansion
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hid = cin * expand
        layers: list[nn.Module] = [] if expand == 1 else [_conv_bn(cin, hid, 1, act=nn.ReLU6)]
        layers += [_conv_bn(hid, hid, 3, stride, groups=hid, act=nn.ReLU6), _conv_bn(hid, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al. 2018): inverted residuals (t, c, n, s) as in the paper's
    table 2, ReLU6, a 1x1 conv to `last` channels, mean over H and W, dropout, linear."""

    SETTINGS = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]

    def __init__(
        self, classes: int = 1000, settings: list | None = None, stem: int = 32, last: int = 1280
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, stem, 3, 2, act=nn.ReLU6)]
        cin = stem
        for t, c, n, s in settings or self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_conv_bn(cin, last, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


# Each model by name: classes -> its module (PyTorch's default initialization).
ARCHITECTURES: dict[str, Callable[[int], nn.Module]] = {
    "resnet18": lambda classes: ResNet(BasicBlock, [2, 2, 2, 2], [64, 128, 256, 512], classes),
    "resnet50": lambda classes: ResNet(Bottleneck, [3, 4, 6, 3], [64, 128, 256, 512], classes),
    "mobilenet_v2": lambda classes: MobileNetV2(classes),
    # Small ones of the same kinds (CI-sized: 32x32 inputs).
    "tiny_resnet": lambda classes: ResNet(BasicBlock, [1, 1], [16, 32], classes, stem=16),
    "tiny_mobilenet_v2": lambda classes: MobileNetV2(
        classes, [(1, 16, 1, 1), (4, 24, 2, 2)], stem=16, last=64
    ),
}
DEFAULT_CLASSES = {
    "resnet18": 1000,
    "resnet50": 1000,
    "mobilenet_v2": 1000,
    "tiny_resnet": 10,
    "tiny_mobilenet_v2": 10,
}
# The models as built by default (their default classes), by name.
MODELS: dict[str, Callable[[], nn.Module]] = {
    name: functools.partial(make, DEFAULT_CLASSES[name]) for name, make in ARCHITECTURES.items()
}


def architecture(name: str, classes: int | None = None, seed: int = 0) -> nn.Module:
    """Model `name` (one of MODELS) with `classes` outputs (None: its default) and PyTorch's
    default initialization, seeded, in train mode: to be trained (bench/trained.py)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"model must be one of {', '.join(ARCHITECTURES)}, got {name!r}")
    with torch.random.fork_rng(devices=[]):  # seeded (CPU) weights, the caller's random state untouched
        torch.manual_seed(seed)
        return ARCHITECTURES[name](DEFAULT_CLASSES[name] if classes is None else classes)


def build(name: str, seed: int = 0) -> nn.Module:
    """Model `name` (one of MODELS) with seeded random weights and BN statistics, in eval mode."""
    return _randomize(architecture(name, seed=seed), seed)
