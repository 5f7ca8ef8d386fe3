"""Trained weights without downloads: a classifier trained on scikit-learn's bundled digits (1797
8x8 grey images, 10 classes), upscaled to the model's input size, 3 channels, normalised.

Random networks are chaotic: a 1-LSB rounding difference grows through 50-70 layers. Trained
ones (and their BN statistics, measured on real data) are what the int8 bound is about; this
module gives the tests (tests/test_trained_nets.py) and bench/networks.py (`--weights digits`)
such a network and its held-out images.

    split = digits_split(32)                                   # DigitsSplit, numpy float32 NCHW
    model = train(model, split, epochs=3, seed=0)              # eval mode, on the CPU
    python bench/trained.py --save-digits digits.npz           # for a machine without sklearn

The digits come from `Q8TA_DIGITS` (or a path argument): an .npz written by `save_digits`, so a
machine without scikit-learn (the GPU machine) can train too; without one, from sklearn.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout: q8ta_wgpu from it
    sys.path.insert(0, str(ROOT))

DIGITS_ENV = "Q8TA_DIGITS"  # an .npz of save_digits, read in preference to scikit-learn


def load_digits(path: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images [1797, 8, 8] float32 in [0, 16], labels [1797] int64): from `path`, else the .npz
    that $Q8TA_DIGITS names, else scikit-learn's bundled copy."""
    path = path or os.environ.get(DIGITS_ENV)
    if path:
        with np.load(path) as f:
            return f["images"].astype(np.float32), f["target"].astype(np.int64)
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    return d.images.astype(np.float32), d.target.astype(np.int64)


def save_digits(path: str | os.PathLike[str]) -> Path:
    """Write the digits (scikit-learn's) to `path` as an .npz that load_digits reads."""
    images, target = load_digits()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, images=images.astype(np.uint8), target=target.astype(np.uint8))
    return out


@dataclasses.dataclass(frozen=True)
class DigitsSplit:
    """Images float32 [N, 3, hw, hw] (bilinear upscale of the 8x8 digit, repeated over 3 channels,
    normalised with the training split's mean and standard deviation), labels int64 [N]."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def digits_split(
    hw: int = 32, *, test_fraction: float = 0.3, seed: int = 0, path: str | os.PathLike[str] | None = None
) -> DigitsSplit:
    """The digits at hw x hw, split at random (seeded) into training and test images."""
    import torch

    images, target = load_digits(path)
    x = torch.from_numpy(images / 16.0)[:, None]
    x = torch.nn.functional.interpolate(x, size=(hw, hw), mode="bilinear", align_corners=False)
    x = x.expand(-1, 3, -1, -1).numpy()
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = round(test_fraction * len(x))
    test, train_ = order[:n_test], order[n_test:]
    mean, std = x[train_].mean(), x[train_].std()
    x = ((x - mean) / std).astype(np.float32)
    return DigitsSplit(x[train_], target[train_], x[test], target[test])


def train(
    model: Any,
    split: DigitsSplit,
    *,
    epochs: int = 3,
    seed: int = 0,
    batch: int = 32,
    lr: float = 2e-3,
    device: str = "cpu",
) -> Any:
    """`model` (a classifier of 10 classes taking split's images) trained on split's training
    images: Adam with a one-cycle learning rate, cross entropy, `epochs` passes of seeded shuffled
    batches. Its BN running statistics are reset first, so they end measured on the digits.
    Returns the model on the CPU, in eval mode. On the CPU the result is the same for the same
    seed; on CUDA, cuDNN's kernel choices may make it differ slightly from run to run."""
    import torch
    import torch.nn.functional as F

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = model.to(device)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
        xt, yt = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train)
        steps_per_epoch = (len(xt) + batch - 1) // batch
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, epochs=epochs, steps_per_epoch=steps_per_epoch)
        model.train()
        for _ in range(epochs):
            perm = torch.randperm(len(xt), generator=gen)
            for i in range(0, len(xt), batch):
                idx = perm[i : i + batch]
                if len(idx) < 2:  # BN needs two samples in train mode
                    continue
                loss = F.cross_entropy(model(xt[idx].to(device)), yt[idx].to(device))
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
    return model.cpu().eval()


def builtin_model(name: str, classes: int = 10, seed: int = 0) -> Any:
    """q8ta_wgpu.models' full architecture `name` (resnet18, resnet50, mobilenet_v2) with `classes`
    outputs and PyTorch's default initialization (seeded), in train mode: to be trained."""
    from q8ta_wgpu import models

    if name not in ("resnet18", "resnet50", "mobilenet_v2"):
        raise ValueError(f"model must be one of resnet18, resnet50, mobilenet_v2, got {name!r}")
    return models.architecture(name, classes, seed)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(logits.reshape(len(labels), -1).argmax(1) == labels))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--save-digits", metavar="NPZ", help="write the digits (from scikit-learn) to this .npz")
    p.add_argument(
        "--model", help="train q8ta_wgpu.models' resnet18, resnet50 or mobilenet_v2 and print its accuracy"
    )
    p.add_argument("--hw", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args(argv)
    if args.save_digits:
        out = save_digits(args.save_digits)
        print(f"wrote {out} ({out.stat().st_size} bytes); use it with {DIGITS_ENV}={out}")
    if args.model:
        import torch

        split = digits_split(args.hw)
        t0 = time.perf_counter()
        m = train(builtin_model(args.model), split, epochs=args.epochs)
        with torch.no_grad():
            acc = accuracy(m(torch.from_numpy(split.x_test)).numpy(), split.y_test)
        print(f"{args.model}: trained in {time.perf_counter() - t0:.1f} s, test accuracy {acc:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
