"""actcompare.data.load_mnist on the tiny IDX files, and its error messages for bad data folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from actcompare.data import load_mnist
from actcompare.errors import DataError, UserError

from .conftest import TEST_N, TRAIN_N


def read_idx(path: Path) -> np.ndarray:
    """Our own reader of the IDX files the fixture wrote (independent of torchvision)."""
    raw = path.read_bytes()
    ndim = raw[3]
    dims = np.frombuffer(raw[4 : 4 + 4 * ndim], dtype=">u4")
    return np.frombuffer(raw[4 + 4 * ndim :], dtype=np.uint8).reshape(*dims)


def test_shapes_dtypes_and_range(tiny_mnist: str) -> None:
    data = load_mnist(tiny_mnist)
    assert data.train.x.shape == (TRAIN_N, 784) and data.test.x.shape == (TEST_N, 784)
    assert data.train.y.shape == (TRAIN_N,) and len(data.test) == TEST_N
    assert data.train.x.dtype == torch.float32 and data.train.y.dtype == torch.int64
    for split in (data.train, data.test):
        assert float(split.x.min()) >= 0.0 and float(split.x.max()) <= 1.0
        assert set(split.y.tolist()) == set(range(10))


def test_pixels_and_labels_match_the_files(tiny_mnist: str) -> None:
    raw = Path(tiny_mnist) / "MNIST" / "raw"
    images, labels = read_idx(raw / "t10k-images-idx3-ubyte"), read_idx(raw / "t10k-labels-idx1-ubyte")
    data = load_mnist(tiny_mnist)
    np.testing.assert_allclose(data.test.x.numpy(), images.reshape(TEST_N, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(data.test.y.numpy(), labels)


def test_normalize_standardises_with_train_statistics(tiny_mnist: str) -> None:
    plain = load_mnist(tiny_mnist)
    norm = load_mnist(tiny_mnist, normalize=True)
    assert abs(float(norm.train.x.mean())) < 1e-4
    assert float(norm.train.x.std()) == pytest.approx(1.0, abs=1e-3)
    mean, std = plain.train.x.mean(), plain.train.x.std()
    torch.testing.assert_close(norm.test.x, (plain.test.x - mean) / std)
    # The cached unnormalised copy is not modified in place by the normalised one.
    assert float(load_mnist(tiny_mnist).train.x.min()) >= 0.0


def test_sample_subsets_are_the_first_n(tiny_mnist: str) -> None:
    full = load_mnist(tiny_mnist)
    sub = load_mnist(tiny_mnist, train_samples=100, test_samples=30)
    assert len(sub.train) == 100 and len(sub.test) == 30
    torch.testing.assert_close(sub.train.x, full.train.x[:100])
    torch.testing.assert_close(sub.test.y, full.test.y[:30])


def test_missing_folder_without_download(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        load_mnist(str(missing), download=False)
    msg = str(info.value)
    assert isinstance(info.value, UserError)
    assert "train-images-idx3-ubyte" in msg and "missing" in msg
    assert "download=false" in msg and str(missing) in msg


@pytest.mark.parametrize("name", ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
def test_truncated_file_is_named(tiny_mnist_copy: Path, name: str) -> None:
    path = tiny_mnist_copy / "MNIST" / "raw" / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 3])
    with pytest.raises(DataError) as info:
        load_mnist(str(tiny_mnist_copy), download=False)
    msg = str(info.value)
    assert name in msg and ("truncated" in msg or "corrupt" in msg), msg


def test_corrupted_header_is_named(tiny_mnist_copy: Path) -> None:
    path = tiny_mnist_copy / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    data = bytearray(path.read_bytes())
    data[0:4] = bytes.fromhex("deadbeef")
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as info:
        load_mnist(str(tiny_mnist_copy), download=True)  # a bad file must not be "fixed" by a download
    assert "t10k-images-idx3-ubyte" in str(info.value)


def test_image_label_count_mismatch(tiny_mnist_copy: Path) -> None:
    from .conftest import write_idx_labels

    write_idx_labels(tiny_mnist_copy / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.zeros(10, dtype=np.uint8))
    with pytest.raises(DataError, match="labels"):
        load_mnist(str(tiny_mnist_copy), download=False)


def test_failed_download_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.datasets import MNIST

    def no_network(self) -> None:
        raise RuntimeError("no network here")

    monkeypatch.setattr(MNIST, "download", no_network)
    with pytest.raises(DataError) as info:
        load_mnist(str(tmp_path / "empty"), download=True)
    msg = str(info.value)
    assert "download failed (no network here)" in msg
    assert "MNIST_ROOT" in msg and "train-images-idx3-ubyte" in msg
