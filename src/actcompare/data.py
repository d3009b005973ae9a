"""MNIST as four tensors on the training device, read once per process through torchvision.

torchvision reads and checks the IDX files; we take its ``.data`` (uint8, N x 28 x 28) and
``.targets`` and convert them once, so the training loop only slices tensors: no per-sample
transform, no DataLoader workers.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.datasets import MNIST
from torchvision.datasets.mnist import read_image_file, read_label_file

from .errors import DataError

log = logging.getLogger(__name__)

# (file, torchvision reader) of each split, as torchvision reads them from <root>/MNIST/raw.
RAW_FILES = {
    True: (("train-images-idx3-ubyte", read_image_file), ("train-labels-idx1-ubyte", read_label_file)),
    False: (("t10k-images-idx3-ubyte", read_image_file), ("t10k-labels-idx1-ubyte", read_label_file)),
}


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # (N, 784) float32 on the device, pixels / 255 (optionally standardised)
    y: torch.Tensor  # (N,) int64 on the device

    def __len__(self) -> int:
        return self.y.shape[0]


@dataclass(frozen=True)
class MNISTTensors:
    train: Split
    test: Split


def _raw_dir(root: str | os.PathLike) -> Path:
    return Path(root).expanduser().resolve() / "MNIST" / "raw"


def _diagnose(root: str | os.PathLike, train: bool) -> str | None:
    """Name the first missing or unreadable raw file and why (None: torchvision reads them all)."""
    raw = _raw_dir(root)
    for name, reader in RAW_FILES[train]:
        path = raw / name
        if not path.exists():
            return f"{path} is missing"
        try:
            reader(str(path))
        except Exception as err:  # torchvision raises bare RuntimeError/ValueError on bad bytes
            size = path.stat().st_size
            return f"{path} is truncated or corrupt ({size} bytes; torchvision: {err})"
    return None


def _fix_hint(root: str | os.PathLike) -> str:
    return (
        f"put the four MNIST files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        f"t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte) in {_raw_dir(root)}, or point "
        f"data.root=<dir> / MNIST_ROOT=<dir> at a folder that holds MNIST/raw/"
    )


def _read_split(root: str, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        ds = MNIST(root=root, train=train, download=False)
    except Exception:
        ds = None
    if ds is None:
        problem = _diagnose(root, train) or "torchvision could not read it"
        if not problem.endswith("is missing"):
            raise DataError(
                f"MNIST unreadable: {problem}. Fix: delete that file and run again to download "
                f"it, or copy a good one there"
            ) from None
        if not download:
            raise DataError(f"MNIST not found: {problem} and data.download=false. Fix: {_fix_hint(root)}")
        try:
            # torchvision prints every mirror it tries; keep that out of the user's console.
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                ds = MNIST(root=root, train=train, download=True)
        except Exception as err:
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise DataError(
                f"MNIST not found ({problem}) and the download failed ({reason}). Fix: {_fix_hint(root)}"
            ) from None
    if ds.data.shape[0] != ds.targets.shape[0]:
        raise DataError(
            f"MNIST {'train' if train else 'test'} split in {_raw_dir(root)} has "
            f"{ds.data.shape[0]} images but {ds.targets.shape[0]} labels: {_fix_hint(root)}"
        )
    return ds.data, ds.targets


@functools.lru_cache(maxsize=4)
def _load_uint8(root: str, download: bool) -> tuple[torch.Tensor, ...]:
    """The raw uint8 splits, cached so every job of a sweep in this process reads them once."""
    return (*_read_split(root, True, download), *_read_split(root, False, download))


def check_sample_counts(
    root: str | os.PathLike, train_samples: int | None, test_samples: int | None, n_train: int, n_test: int
) -> None:
    """Refuse data.train_samples / data.test_samples larger than the split at ``root``.

    Slicing would silently train on fewer images than the config (and run.json) says. The config
    check (schema.validate) refuses more than real MNIST's 60000 / 10000 before anything loads;
    this catches a smaller dataset at data.root, as soon as its files are read.
    """
    for key, wanted, have in (("train_samples", train_samples, n_train), ("test_samples", test_samples, n_test)):
        if wanted is not None and wanted > have:
            raise DataError(
                f"data.{key}={wanted} but {_raw_dir(root)} holds only {have} "
                f"{key.split('_')[0]} images: use null (all) or at most {have}"
            )


@functools.lru_cache(maxsize=4)
def load_mnist(
    root: str,
    device: torch.device | str = "cpu",
    normalize: bool = False,
    train_samples: int | None = None,
    test_samples: int | None = None,
    download: bool = True,
) -> MNISTTensors:
    """MNIST on ``device`` as float tensors; the first N samples of each split when N is given.

    Cached per process (arguments must be hashable), so a sweep's jobs share one copy.
    """
    log.info("reading MNIST from %s ...", root)  # a progress line (and a timestamp for benchmarks/overhead.py)
    device = torch.device(device)
    x_train, y_train, x_test, y_test = _load_uint8(str(root), download)
    check_sample_counts(root, train_samples, test_samples, len(y_train), len(y_test))
    x_train, y_train = x_train[:train_samples], y_train[:train_samples]
    x_test, y_test = x_test[:test_samples], y_test[:test_samples]

    def to_float(x: torch.Tensor) -> torch.Tensor:
        # uint8 (N, 28, 28) -> float32 (N, 784) in [0, 1], converted once on the device.
        return x.to(device).reshape(x.shape[0], -1).float().div_(255.0)

    xtr, xte = to_float(x_train), to_float(x_test)
    if normalize:
        # Standardise with the training split's own statistics (0.1307 / 0.3081 on full MNIST).
        mean, std = xtr.mean(), xtr.std()
        xtr = xtr.sub_(mean).div_(std)
        xte = xte.sub_(mean).div_(std)
    return MNISTTensors(
        train=Split(xtr, y_train.to(device=device, dtype=torch.long)),
        test=Split(xte, y_test.to(device=device, dtype=torch.long)),
    )
