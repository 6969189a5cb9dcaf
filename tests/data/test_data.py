"""Tests for ngl.data: splits, normalisation, subsets and the real on-disk formats.

File-based datasets are tested on tiny files written here in the official formats (idx for
Fashion-MNIST, python pickles for CIFAR), so the readers are exercised without downloads.
"""

from __future__ import annotations

import collections
import gzip
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import ngl.data.fashion_mnist as fashion_mnist
from ngl.data import (
    DataSplits,
    available_datasets,
    find_cifar,
    find_fashion_mnist,
    load_cached,
    load_dataset,
    read_cifar,
    read_idx,
)

SPLITS = ("train", "val", "test")


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated_search(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """No test may pick up data from the developer's machine unless it asks for it."""
    monkeypatch.delenv("NGL_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def raw_pixels(ds: DataSplits, split: str, scale: float) -> np.ndarray:
    """Undo the normalisation: back to the integer pixel values in the files."""
    x = getattr(ds, f"x_{split}").double()
    mean = torch.tensor(ds.mean, dtype=torch.float64).view(1, -1, 1, 1)
    std = torch.tensor(ds.std, dtype=torch.float64).view(1, -1, 1, 1)
    return ((x * std + mean) * scale).numpy()


def write_idx(path: Path, arr: np.ndarray, code: int = 0x08) -> Path:
    """Write ``arr`` in the MNIST idx format (gzipped when the name ends in .gz)."""
    big = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    payload = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload += np.ascontiguousarray(arr, dtype=big).tobytes()
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


FAKE_H, FAKE_W = 5, 7


def fake_fashion_images(labels: np.ndarray) -> np.ndarray:
    """Images whose pixels encode their label (25*y + 5), plus a per-image marker at (0, 0)."""
    imgs = np.empty((len(labels), FAKE_H, FAKE_W), dtype=np.uint8)
    imgs[:] = (25 * labels + 5).astype(np.uint8)[:, None, None]
    imgs[:, 0, 0] = np.arange(len(labels)) % 256
    return imgs


FAKE_TRAIN_LABELS = np.tile(np.arange(10), 10).astype(np.uint8)  # 100 images, 10 per class
FAKE_TEST_LABELS = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0] * 3, dtype=np.uint8)


def write_fake_fashion(directory: Path, gz: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    write_idx(directory / f"train-images-idx3-ubyte{ext}", fake_fashion_images(FAKE_TRAIN_LABELS))
    write_idx(directory / f"train-labels-idx1-ubyte{ext}", FAKE_TRAIN_LABELS)
    write_idx(directory / f"t10k-images-idx3-ubyte{ext}", fake_fashion_images(FAKE_TEST_LABELS))
    write_idx(directory / f"t10k-labels-idx1-ubyte{ext}", FAKE_TEST_LABELS)
    return directory


def cifar_rows(labels: np.ndarray) -> np.ndarray:
    """[N, 3072] uint8 rows as in CIFAR: R, G, B planes of 32x32, row-major.

    Channel ch holds 8*label + 80*ch; a marker 255 sits in channel 1 at (row 1, col 2).
    """
    n = len(labels)
    planes = np.empty((n, 3, 32 * 32), dtype=np.uint8)
    for ch in range(3):
        planes[:, ch, :] = (8 * labels + 80 * ch)[:, None]
    rows = planes.reshape(n, 3072)
    rows[:, 1024 + 32 * 1 + 2] = 255
    return rows


def dump(path: Path, obj: object, keys_as_bytes: bool) -> None:
    if keys_as_bytes:  # what the original Python 2 pickles look like when read as bytes
        obj = {k.encode(): v for k, v in obj.items()}  # type: ignore[attr-defined]
    path.write_bytes(pickle.dumps(obj, protocol=2))


def write_fake_cifar10(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for b in range(1, 6):
        labels = np.arange(10)  # one image per class per batch: 50 training images
        entry = {"batch_label": f"training batch {b} of 5", "labels": labels.tolist(),
                 "data": cifar_rows(labels), "filenames": [f"img{i}.png" for i in range(10)]}  # fmt: skip
        dump(directory / f"data_batch_{b}", entry, keys_as_bytes=True)
    test_labels = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 0, 0, 2, 8, 4])
    dump(directory / "test_batch",
         {"labels": test_labels.tolist(), "data": cifar_rows(test_labels)}, keys_as_bytes=True)  # fmt: skip
    names = ["airplane", "automobile", "bird", "cat", "deer",
             "dog", "frog", "horse", "ship", "truck"]  # fmt: skip
    dump(directory / "batches.meta",
         {"label_names": names, "num_cases_per_batch": 10, "num_vis": 3072}, keys_as_bytes=True)  # fmt: skip
    return directory


def write_fake_cifar100(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    train = np.repeat(np.arange(100), 2)  # 2 per class
    test = np.arange(100)[::-1].copy()
    for fname, labels in (("train", train), ("test", test)):
        # pixels encode label % 10 (8 * 100 would not fit in a byte)
        entry = {"fine_labels": labels.tolist(), "coarse_labels": (labels // 5).tolist(),
                 "data": cifar_rows(labels % 10)}  # fmt: skip
        dump(directory / fname, entry, keys_as_bytes=False)
    dump(directory / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)],
                              "coarse_label_names": [f"coarse{i}" for i in range(20)]},
         keys_as_bytes=False)  # fmt: skip
    return directory


@pytest.fixture(scope="module")
def digits() -> DataSplits:
    return load_dataset("digits")


# ------------------------------------------------------------------------------------------
# names and arguments
# ------------------------------------------------------------------------------------------


def test_available_datasets() -> None:
    assert available_datasets() == ["digits", "fashion_mnist", "cifar10", "cifar100"]


def test_unknown_name_lists_available() -> None:
    with pytest.raises(ValueError, match="mnist_typo") as info:
        load_dataset("mnist_typo")
    for name in available_datasets():
        assert name in str(info.value)


@pytest.mark.parametrize("bad", [0, 1, 0.0, 1.0, -0.1, 1.5, "0.1", True, float("nan")])
def test_bad_val_fraction(bad: object) -> None:
    with pytest.raises(ValueError, match="val_fraction") as info:
        load_dataset("digits", val_fraction=bad)  # type: ignore[arg-type]
    assert repr(bad) in str(info.value)


# ------------------------------------------------------------------------------------------
# digits
# ------------------------------------------------------------------------------------------


def test_digits_shapes_and_sizes(digits: DataSplits) -> None:
    assert digits.name == "digits" and digits.num_classes == 10
    assert digits.input_shape == (1, 8, 8)
    sizes = {s: len(getattr(digits, f"y_{s}")) for s in SPLITS}
    assert sizes == {"train": 1077, "val": 360, "test": 360}  # 60/20/20 of 1797
    for s in SPLITS:
        assert getattr(digits, f"x_{s}").dtype == torch.float32
        assert getattr(digits, f"y_{s}").dtype == torch.int64
        assert getattr(digits, f"x_{s}").shape[1:] == (1, 8, 8)
    assert digits.classes == tuple(str(i) for i in range(10))
    assert "train=1077" in repr(digits) and len(repr(digits)) < 300


def test_digits_splits_are_a_stratified_partition(digits: DataSplits) -> None:
    bunch = load_digits()
    full = np.bincount(bunch.target, minlength=10)
    counts = {s: np.array(digits.class_counts(s)) for s in SPLITS}
    np.testing.assert_array_equal(counts["train"] + counts["val"] + counts["test"], full)
    for s, share in (("train", 0.6), ("val", 0.2), ("test", 0.2)):
        assert np.all(np.abs(counts[s] - share * full) <= 1.0), (s, counts[s], share * full)
    # Every original image lands in exactly one split: compare the multisets of pixel rows.
    rows = np.concatenate([raw_pixels(digits, s, 16.0).reshape(-1, 64) for s in SPLITS])
    np.testing.assert_allclose(rows, np.round(rows), atol=1e-4)
    got = np.round(rows).astype(int)
    want = bunch.data.astype(int)
    np.testing.assert_array_equal(got[np.lexsort(got.T)], want[np.lexsort(want.T)])


def test_digits_deterministic_and_seeded(digits: DataSplits) -> None:
    again = load_dataset("digits", seed=0)
    for s in SPLITS:
        assert torch.equal(getattr(digits, f"x_{s}"), getattr(again, f"x_{s}"))
        assert torch.equal(getattr(digits, f"y_{s}"), getattr(again, f"y_{s}"))
    other = load_dataset("digits", seed=1)
    assert not torch.equal(digits.x_test, other.x_test)


def test_digits_normalised_with_train_statistics_only(digits: DataSplits) -> None:
    x = digits.x_train
    assert abs(x.mean().item()) < 1e-5
    assert x.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)
    raw_train = raw_pixels(digits, "train", 16.0)
    assert raw_train.min() == pytest.approx(0.0, abs=1e-4)
    assert raw_train.max() == pytest.approx(16.0, abs=1e-4)
    # The stored mean is the mean of the training pixels, not of all digits.
    assert digits.mean[0] == pytest.approx(raw_train.mean() / 16.0, abs=1e-6)
    all_mean = load_digits().data.mean() / 16.0
    assert abs(digits.mean[0] - all_mean) > 1e-4
    # Held-out splits are transformed with the same statistics, so they are not exactly 0/1.
    assert abs(digits.x_val.mean().item()) > 1e-4
    assert abs(digits.x_test.std(unbiased=False).item() - 1.0) > 1e-4


def test_load_cached_seed_is_the_data_seed() -> None:
    # The search passes its data seed here: it must draw the same split as load_dataset.
    a = load_cached("digits", None, None, None, None, 3)
    assert torch.equal(a.x_val, load_dataset("digits", seed=3).x_val)
    sub = load_cached("digits", None, 100, None, None, 3)
    assert torch.equal(
        sub.x_train, load_dataset("digits", seed=3).subset(n_train=100, seed=3).x_train
    )


def test_digits_custom_val_fraction() -> None:
    ds = load_dataset("digits", val_fraction=0.5)
    assert len(ds.y_test) == 360  # the test split does not depend on val_fraction
    assert len(ds.y_val) == 719 and len(ds.y_train) == 718


# ------------------------------------------------------------------------------------------
# DataSplits behaviour
# ------------------------------------------------------------------------------------------


def test_subset_is_stratified_and_seeded(digits: DataSplits) -> None:
    sub = digits.subset(n_train=500, n_val=100, n_test=None, seed=3)
    assert len(sub.y_train) == 500 and len(sub.y_val) == 100
    assert torch.equal(sub.x_test, digits.x_test)
    full = np.array(digits.class_counts("train"))
    got = np.array(sub.class_counts("train"))
    assert got.sum() == 500 and np.all(np.abs(got - 500 * full / full.sum()) < 1.0)
    assert sub.class_counts("val") == [10] * 10
    # Same seed: same subset. Another seed: another subset.
    assert torch.equal(sub.x_train, digits.subset(500, 100, seed=3).x_train)
    assert not torch.equal(sub.x_train, digits.subset(500, 100, seed=4).x_train)
    # The train draw does not depend on what is asked of the other splits.
    assert torch.equal(sub.x_train, digits.subset(500, 50, 20, seed=3).x_train)
    # The subset is made of rows of the original split, in their original order.
    match = (sub.x_train.flatten(1)[:, None, :] == digits.x_train.flatten(1)[None]).all(-1)
    pos = match.float().argmax(1)
    assert match.any(1).all() and bool((pos.diff() > 0).all())
    assert torch.equal(digits.y_train[pos], sub.y_train)
    assert sub.mean == digits.mean and sub.name == "digits"


def test_subset_keeps_every_class_when_small(digits: DataSplits) -> None:
    assert digits.subset(n_train=10).class_counts("train") == [1] * 10
    counts = digits.subset(n_val=13, seed=5).class_counts("val")
    assert sum(counts) == 13 and min(counts) == 1 and max(counts) == 2


def test_subset_rejects_bad_sizes(digits: DataSplits) -> None:
    with pytest.raises(ValueError, match="n_train=5000"):
        digits.subset(n_train=5000)
    with pytest.raises(ValueError, match="n_val"):
        digits.subset(n_val=-1)
    assert len(digits.subset(n_test=360).y_test) == 360


def test_to_moves_every_tensor(digits: DataSplits) -> None:
    cpu = digits.to("cpu")
    assert isinstance(cpu, DataSplits) and cpu.device.type == "cpu"
    assert torch.equal(cpu.x_val, digits.x_val) and cpu.classes == digits.classes
    meta = digits.to("meta")  # a real device change that works without a GPU
    for s in SPLITS:
        assert getattr(meta, f"x_{s}").device.type == "meta"
        assert getattr(meta, f"y_{s}").device.type == "meta"
    assert digits.x_train.device.type == "cpu"  # the original is untouched
    assert load_dataset("digits", device="meta").x_test.is_meta


def test_summary(digits: DataSplits) -> None:
    info = digits.summary()
    assert info["sizes"] == {"train": 1077, "val": 360, "test": 360}
    assert info["input_shape"] == [1, 8, 8]
    assert sum(info["class_counts"]["val"]) == 360
    assert info["mean"] == [pytest.approx(digits.mean[0])]


def test_source_is_recorded_and_kept(digits: DataSplits) -> None:
    assert digits.source == "sklearn"
    assert digits.subset(n_train=20, seed=1).source == "sklearn"
    assert digits.to("meta").source == "sklearn"
    assert "source='sklearn'" in repr(digits) and digits.summary()["source"] == "sklearn"
    assert load_cached("digits", None, 50, 20, 20, 0).source == "sklearn"


def test_source_names_the_folder_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_fake_fashion(tmp_path / "fm")
    ds = load_dataset("fashion_mnist", root)
    assert ds.source == str(root) and f"source='{root}'" in repr(ds)
    assert ds.summary()["source"] == str(root)
    assert ds.subset(n_train=20, n_val=10).to("meta").source == str(root)
    cached = load_cached("fashion_mnist", str(root), 20, 10, None, 0)
    assert cached.source == str(root) and len(cached.y_train) == 20
    # The subfolder actually read, and an absolute path even for a relative root.
    monkeypatch.chdir(tmp_path)
    write_fake_fashion(tmp_path / "rel" / "FashionMNIST" / "raw")
    assert load_dataset("fashion_mnist", "rel").source == str(tmp_path / "rel/FashionMNIST/raw")
    write_fake_cifar10(tmp_path / "c" / "cifar-10-batches-py")
    ds = load_dataset("cifar10", tmp_path / "c", val_fraction=0.2)
    assert ds.source == str(tmp_path / "c" / "cifar-10-batches-py")


def test_datasplits_rejects_inconsistent_tensors() -> None:
    x, y = torch.zeros(4, 1, 2, 2), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ValueError, match="y_val"):
        DataSplits("t", 2, x, y, x, y[:3], x, y)
    with pytest.raises(ValueError, match="x_test"):
        DataSplits("t", 2, x, y, x, y, torch.zeros(4, 1, 3, 3), y)


# ------------------------------------------------------------------------------------------
# idx reader
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["imgs-idx3-ubyte", "imgs-idx3-ubyte.gz"])
def test_read_idx_uint8(tmp_path: Path, name: str) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / name, arr)
    assert path.read_bytes()[:2] == (b"\x1f\x8b" if name.endswith(".gz") else b"\x00\x00")
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, arr)


def test_read_idx_big_endian_int32(tmp_path: Path) -> None:
    arr = np.array([[1, -2, 70000], [2**31 - 1, 0, -(2**31)]], dtype=np.int32)
    path = write_idx(tmp_path / "ints.idx", arr, code=0x0C)
    assert path.read_bytes()[4:12] == struct.pack(">II", 2, 3)
    out = read_idx(path)
    assert out.dtype == np.dtype("int32") and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_read_idx_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(b"\x08\x03\x00\x00" + b"\x00" * 16)
    with pytest.raises(ValueError, match="magic") as info:
        read_idx(path)
    assert str(path) in str(info.value) and "0x00000803" in str(info.value)


@pytest.mark.parametrize("delta", [-1, +1])
def test_read_idx_wrong_size(tmp_path: Path, delta: int) -> None:
    good = write_idx(tmp_path / "good", np.zeros((3, 2, 2), dtype=np.uint8)).read_bytes()
    payload = good[:delta] if delta < 0 else good + b"\x00"
    path = tmp_path / "broken-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(payload))
    with pytest.raises(ValueError) as info:
        read_idx(path)
    msg = str(info.value)
    assert str(path) in msg and "(3, 2, 2)" in msg and "12 data bytes" in msg


def test_read_idx_truncated_header_and_gzip(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00\x08\x03\x00\x00\x00\x02")  # 3 dims declared, 1 given
    with pytest.raises(ValueError, match="3 dimensions but the file ends early"):
        read_idx(short)
    broken = tmp_path / "broken.gz"
    broken.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 100)[:20])
    with pytest.raises(ValueError, match="gzip"):
        read_idx(broken)


def corrupt_deflate(payload: bytes) -> bytes:
    """A gzip file whose deflate stream is damaged (zlib, not gzip, notices)."""
    good = bytearray(gzip.compress(payload))
    good[10] = 0xFF  # first deflate byte: BTYPE=11, a reserved (invalid) block type
    return bytes(good)


def test_read_idx_corrupt_deflate_stream(tmp_path: Path) -> None:
    path = tmp_path / "bad-deflate-idx1-ubyte.gz"
    path.write_bytes(corrupt_deflate(b"\x00\x00\x08\x01\x00\x00\x00\x03abc"))
    with pytest.raises(ValueError, match="corrupt gzip stream") as info:
        read_idx(path)  # zlib.error before
    assert str(path) in str(info.value)


def test_read_idx_gz_name_but_not_gzip(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(b"<!DOCTYPE html><html>rate limited</html>")  # a failed download
    with pytest.raises(ValueError, match="not gzip data") as info:
        read_idx(path)
    assert str(path) in str(info.value) and "magic" in str(info.value)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"too short.*not gzip"):
        read_idx(path)
    # An uncompressed idx file under a .gz name is still read (content decides, not name).
    arr = np.arange(6, dtype=np.uint8)
    write_idx(tmp_path / "plain", arr).rename(path)
    np.testing.assert_array_equal(read_idx(path), arr)


IDX_CORRUPTIONS = {
    "truncated gzip": (lambda good: gzip.compress(good)[:-12], "corrupt gzip stream"),
    "bad deflate": (corrupt_deflate, "corrupt gzip stream"),
    "bad crc": (lambda good: gzip.compress(good)[:-8] + b"\0\0\0\0" + gzip.compress(good)[-4:],
                "corrupt gzip stream"),
    "not gzip": (lambda good: b"<html>404 Not Found</html>", "not gzip data"),
    "wrong magic": (lambda good: gzip.compress(b"\x00\x00\x07\x01" + good[4:]), "magic"),
    "wrong size": (lambda good: gzip.compress(good[:-3]), "data bytes"),
}  # fmt: skip


@pytest.mark.parametrize("what", list(IDX_CORRUPTIONS))
def test_fashion_mnist_corrupt_file_is_named(tmp_path: Path, what: str) -> None:
    root = write_fake_fashion(tmp_path)
    path = root / "t10k-labels-idx1-ubyte.gz"
    corrupt, expected = IDX_CORRUPTIONS[what]
    path.write_bytes(corrupt(gzip.decompress(path.read_bytes())))
    with pytest.raises(ValueError, match=expected) as info:
        load_dataset("fashion_mnist", root)
    assert str(path) in str(info.value)


# ------------------------------------------------------------------------------------------
# Fashion-MNIST from idx files
# ------------------------------------------------------------------------------------------


def check_fake_fashion(ds: DataSplits) -> None:
    assert ds.name == "fashion_mnist" and ds.input_shape == (1, FAKE_H, FAKE_W)
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert ds.class_counts("val") == [2] * 10 and ds.class_counts("train") == [8] * 10
    np.testing.assert_array_equal(ds.y_test.numpy(), FAKE_TEST_LABELS)  # official order
    for s in SPLITS:
        raw = raw_pixels(ds, s, 255.0)
        y = getattr(ds, f"y_{s}").numpy()
        np.testing.assert_allclose(raw[:, 0, 2, 3], 25 * y + 5, atol=1e-3)  # image <-> label
    markers = np.round(np.concatenate([raw_pixels(ds, s, 255.0)[:, 0, 0, 0] for s in SPLITS[:2]]))
    np.testing.assert_array_equal(np.sort(markers), np.arange(100))  # train/val partition
    x = ds.x_train
    assert abs(x.mean().item()) < 1e-5 and x.std(unbiased=False).item() == pytest.approx(1, 1e-4)


def test_fashion_mnist_from_root(tmp_path: Path) -> None:
    root = write_fake_fashion(tmp_path / "fm")
    assert find_fashion_mnist(root) == root
    ds = load_dataset("fashion_mnist", root, val_fraction=0.2, seed=1)
    check_fake_fashion(ds)
    again = load_dataset("fashion_mnist", str(root), val_fraction=0.2, seed=1)
    assert torch.equal(ds.y_val, again.y_val) and torch.equal(ds.x_train, again.x_train)
    other = load_dataset("fashion_mnist", root, val_fraction=0.2, seed=2)
    assert not torch.equal(ds.x_val, other.x_val)


def test_fashion_mnist_default_val_fraction(tmp_path: Path) -> None:
    ds = load_dataset("fashion_mnist", write_fake_fashion(tmp_path))
    assert ds.class_counts("val") == [1] * 10 and len(ds.y_train) == 90


@pytest.mark.parametrize("sub", ["", "fashion-mnist", "FashionMNIST/raw"])
def test_fashion_mnist_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sub: str) -> None:
    write_fake_fashion(tmp_path / sub if sub else tmp_path, gz=False)  # un-gzipped names
    monkeypatch.setenv("NGL_DATA_DIR", str(tmp_path))
    assert find_fashion_mnist() == (tmp_path / sub if sub else tmp_path)
    check_fake_fashion(load_dataset("fashion-mnist", val_fraction=0.2, seed=1))


def test_fashion_mnist_root_wins_over_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_dir = write_fake_fashion(tmp_path / "env")
    root = write_fake_fashion(tmp_path / "root")
    monkeypatch.setenv("NGL_DATA_DIR", str(env_dir))
    assert find_fashion_mnist(root) == root
    assert find_fashion_mnist() == env_dir


def test_fashion_mnist_missing_lists_every_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FASHION_MNIST", tmp_path / "usr-share-fashion-mnist")
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    (env_dir / "train-images-idx3-ubyte.gz").write_bytes(b"")  # a partial copy
    monkeypatch.setenv("NGL_DATA_DIR", str(env_dir))
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("fashion_mnist")
    msg = str(info.value)
    for place in (env_dir, env_dir / "fashion-mnist", env_dir / "FashionMNIST" / "raw",
                  tmp_path / "usr-share-fashion-mnist"):  # fmt: skip
        assert str(place) in msg, place
    assert "missing train-labels-idx1-ubyte[.gz]" in msg  # why the partial copy was skipped
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "NGL_DATA_DIR" in msg and "download=True" in msg


def test_env_data_dir_that_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Valid copies in the default places: a skipped NGL_DATA_DIR would go unnoticed.
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FASHION_MNIST", write_fake_fashion(tmp_path / "debian"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    write_fake_cifar10(tmp_path / "xdg" / "ngl" / "cifar-10-batches-py")
    env_file = tmp_path / "data.tar"
    env_file.write_bytes(b"an archive, not a folder")
    monkeypatch.setenv("NGL_DATA_DIR", str(env_file))
    expected = re.escape(f"NGL_DATA_DIR={env_file} is a file, expected a directory holding")
    with pytest.raises(NotADirectoryError, match=expected + ".*Fashion-MNIST idx"):
        load_dataset("fashion_mnist")
    with pytest.raises(NotADirectoryError, match=expected):
        find_fashion_mnist()
    with pytest.raises(NotADirectoryError, match=expected + " cifar-10-batches-py"):
        load_dataset("cifar10", download=True)
    # An explicit root does not consult NGL_DATA_DIR, so it does not trip over it.
    assert load_dataset("fashion_mnist", tmp_path / "debian").source == str(tmp_path / "debian")
    assert load_dataset("digits").source == "sklearn"


def write_fashion_everywhere_but_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Valid copies in every fallback place, so a fallback would succeed if it were taken."""
    monkeypatch.setenv("NGL_DATA_DIR", str(write_fake_fashion(tmp_path / "env")))
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FASHION_MNIST", write_fake_fashion(tmp_path / "debian"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    write_fake_fashion(tmp_path / "xdg" / "ngl" / "FashionMNIST" / "raw")


@pytest.mark.parametrize("kind", ["absent", "empty", "partial"])
def test_fashion_mnist_explicit_root_never_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    write_fashion_everywhere_but_root(tmp_path, monkeypatch)
    root = tmp_path / "my-root"
    if kind != "absent":
        root.mkdir()
    if kind == "partial":
        write_idx(root / "train-images-idx3-ubyte.gz", fake_fashion_images(FAKE_TRAIN_LABELS))
    for call in (lambda: find_fashion_mnist(root), lambda: load_dataset("fashion_mnist", root)):
        with pytest.raises(FileNotFoundError) as info:
            call()
        msg = str(info.value)
        assert f"root={str(root)!r}" in msg
        for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                     "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):  # fmt: skip
            assert name in msg  # what was expected there
        assert str(root / "FashionMNIST" / "raw") in msg  # and where it was looked for
        assert str(tmp_path / "env") not in msg and str(tmp_path / "debian") not in msg
    # Without a root the fallbacks are still searched, in order.
    assert find_fashion_mnist() == tmp_path / "env"


def test_root_that_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_fashion_everywhere_but_root(tmp_path, monkeypatch)
    write_fake_cifar10(tmp_path / "env" / "cifar-10-batches-py")
    root = tmp_path / "a-file"
    root.write_text("not a folder")
    for name in ("fashion_mnist", "cifar10"):
        with pytest.raises(NotADirectoryError, match=re.escape(f"root='{root}' is a file, exp")):
            load_dataset(name, root, download=True)  # not even a download is attempted


def test_fashion_mnist_inconsistent_files(tmp_path: Path) -> None:
    root = write_fake_fashion(tmp_path)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", FAKE_TEST_LABELS[:-1])
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz") as info:
        load_dataset("fashion_mnist", root)
    assert "expected 30 labels" in str(info.value)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", FAKE_TEST_LABELS + 5)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        load_dataset("fashion_mnist", root)


# ------------------------------------------------------------------------------------------
# CIFAR from python pickles
# ------------------------------------------------------------------------------------------


def check_cifar_pixels(ds: DataSplits, label_mod: int = 10) -> None:
    for s in SPLITS:
        raw = raw_pixels(ds, s, 255.0)
        y = getattr(ds, f"y_{s}").numpy() % label_mod
        for ch in range(3):
            np.testing.assert_allclose(raw[:, ch, 5, 7], 8 * y + 80 * ch, atol=1e-3)
        np.testing.assert_allclose(raw[:, 1, 1, 2], 255, atol=1e-3)  # R,G,B planes, row-major
        np.testing.assert_allclose(raw[:, 1, 2, 1], 8 * y + 80, atol=1e-3)
    per_channel = ds.x_train.double().mean(dim=(0, 2, 3))
    assert torch.allclose(per_channel, torch.zeros(3, dtype=torch.float64), atol=1e-5)
    assert len(set(np.round(ds.mean, 6))) == 3  # one statistic per channel


def test_cifar10_from_pickles(tmp_path: Path) -> None:
    write_fake_cifar10(tmp_path / "cifar-10-batches-py")
    (x_tr, y_tr), (x_te, y_te), classes = read_cifar(tmp_path, 10)
    assert x_tr.shape == (50, 3, 32, 32) and x_tr.dtype == np.uint8 and y_tr.dtype == np.int64
    np.testing.assert_array_equal(y_te[:6], [3, 1, 4, 1, 5, 9])
    assert classes[0] == "airplane" and classes[9] == "truck"

    ds = load_dataset("cifar10", tmp_path, val_fraction=0.2)
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10
    assert len(ds.y_train) == 40 and ds.class_counts("val") == [1] * 10
    np.testing.assert_array_equal(ds.y_test.numpy(), y_te)
    check_cifar_pixels(ds)


def test_cifar100_from_pickles_via_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_fake_cifar100(tmp_path / "cifar-100-python")
    monkeypatch.setenv("NGL_DATA_DIR", str(tmp_path))
    ds = load_dataset("cifar100", val_fraction=0.5, seed=2)
    assert ds.num_classes == 100 and len(ds.classes) == 100 and ds.classes[42] == "fine42"
    assert ds.class_counts("val") == [1] * 100 and ds.class_counts("train") == [1] * 100
    np.testing.assert_array_equal(ds.y_test.numpy(), np.arange(100)[::-1])  # fine, not coarse
    check_cifar_pixels(ds)
    # The archive folder itself also works as root.
    (_, y_tr), _, _ = read_cifar(tmp_path / "cifar-100-python", 100)
    np.testing.assert_array_equal(y_tr, np.repeat(np.arange(100), 2))


def test_cifar_missing_lists_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NGL_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("cifar100")
    msg = str(info.value)
    assert str(tmp_path / "env" / "cifar-100-python") in msg
    assert str(tmp_path / "env") in msg and "download=True" in msg and "NGL_DATA_DIR" in msg


@pytest.mark.parametrize("num_classes", [10, 100])
def test_cifar_explicit_root_never_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, num_classes: int
) -> None:
    write = write_fake_cifar10 if num_classes == 10 else write_fake_cifar100
    sub = "cifar-10-batches-py" if num_classes == 10 else "cifar-100-python"
    monkeypatch.setenv("NGL_DATA_DIR", str(tmp_path / "env"))
    write(tmp_path / "env" / sub)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    write(tmp_path / "xdg" / "ngl" / sub)
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(f"cifar{num_classes}", root, val_fraction=0.5)
    msg = str(info.value)
    assert f"root={str(root)!r}" in msg and str(root / sub) in msg
    assert ("data_batch_1" in msg and "batches.meta" in msg) if num_classes == 10 else "meta" in msg
    assert str(tmp_path / "env") not in msg and str(tmp_path / "xdg") not in msg
    with pytest.raises(FileNotFoundError, match="root="):
        read_cifar(root, num_classes)  # type: ignore[arg-type]
    assert find_cifar(None, num_classes) == tmp_path / "env" / sub  # type: ignore[arg-type]


def test_cifar_rejects_foreign_pickles(tmp_path: Path) -> None:
    d = write_fake_cifar10(tmp_path / "cifar-10-batches-py")
    (d / "data_batch_3").write_bytes(pickle.dumps({"data": collections.OrderedDict()}))
    with pytest.raises(ValueError, match="data_batch_3.*refusing"):
        read_cifar(tmp_path, 10)
    dump(d / "data_batch_3", {"labels": [0], "data": np.zeros((1, 100), np.uint8)}, False)
    with pytest.raises(ValueError, match=r"data_batch_3.*\[N, 3072\]"):
        read_cifar(tmp_path, 10)


CIFAR_CORRUPTIONS = {
    "truncated": (lambda good: good[: len(good) // 2], "not a CIFAR python pickle"),
    "empty": (lambda good: b"", "not a CIFAR python pickle"),
    "not a pickle": (lambda good: b"<html>404</html>", "not a CIFAR python pickle"),
    "gzip archive": (lambda good: gzip.compress(good), "not a CIFAR python pickle"),
    "garbled codec": (lambda good: good.replace(b"latin1", b"latinX"), "LookupError"),
    "not a dict": (lambda good: pickle.dumps([1, 2], protocol=2), "expected a pickled dict"),
    "text labels": (lambda good: pickle.dumps({"data": np.zeros((2, 3072), np.uint8),
                                               "labels": ["cat", "dog"]}), "'labels' must be"),
    "no labels": (lambda good: pickle.dumps({"data": np.zeros((2, 3072), np.uint8),
                                             "labels": None}), "'labels' must be"),
    "ragged data": (lambda good: pickle.dumps({"data": [[1, 2], [3]], "labels": [0, 1]}),
                    "'data' must be"),
}  # fmt: skip


@pytest.mark.parametrize("what", list(CIFAR_CORRUPTIONS))
def test_cifar_corrupt_pickle_is_named(tmp_path: Path, what: str) -> None:
    d = write_fake_cifar10(tmp_path / "cifar-10-batches-py")
    path = d / "data_batch_2"
    corrupt, expected = CIFAR_CORRUPTIONS[what]
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(ValueError, match=re.escape(expected)) as info:
        load_dataset("cifar10", tmp_path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("names", [None, "abcdefghij", 10])  # a 10-letter str is not 10 names
def test_cifar_bad_label_names_are_named(tmp_path: Path, names: object) -> None:
    d = write_fake_cifar10(tmp_path / "cifar-10-batches-py")
    dump(d / "batches.meta", {"label_names": names}, keys_as_bytes=False)
    with pytest.raises(ValueError, match="'label_names'") as info:
        read_cifar(tmp_path, 10)
    assert str(d / "batches.meta") in str(info.value)


# ------------------------------------------------------------------------------------------
# The real Fashion-MNIST (CI installs Debian's dataset-fashion-mnist)
# ------------------------------------------------------------------------------------------


@pytest.mark.skipif(
    not (fashion_mnist.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason="real Fashion-MNIST not installed: apt-get install dataset-fashion-mnist",
)
def test_real_fashion_mnist() -> None:
    assert find_fashion_mnist() == fashion_mnist.DEBIAN_FASHION_MNIST
    ds = load_dataset("fashion_mnist")
    assert ds.input_shape == (1, 28, 28) and ds.source == str(fashion_mnist.DEBIAN_FASHION_MNIST)
    assert ds.summary()["sizes"] == {"train": 54000, "val": 6000, "test": 10000}
    assert ds.class_counts("train") == [5400] * 10 and ds.class_counts("val") == [600] * 10
    assert ds.class_counts("test") == [1000] * 10
    assert ds.y_test[:3].tolist() == [9, 2, 1]  # ankle boot, pullover, trouser
    assert ds.mean[0] == pytest.approx(0.2860, abs=0.002)  # the well-known pixel statistics
    assert ds.std[0] == pytest.approx(0.3530, abs=0.002)
    raw = raw_pixels(ds, "test", 255.0)
    assert raw.min() == pytest.approx(0, abs=1e-3) and raw.max() == pytest.approx(255, abs=1e-3)


# ------------------------------------------------------------------------------------------
# download=True goes through torchvision (faked here: no network in tests)
# ------------------------------------------------------------------------------------------


def test_download_uses_torchvision_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets as tvd

    calls: list[tuple[str, str, bool]] = []

    class FakeFashionMNIST:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append(("fashion", root, download))
            write_fake_fashion(Path(root) / "FashionMNIST" / "raw")

    class FakeCIFAR10:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append(("cifar10", root, download))
            write_fake_cifar10(Path(root) / "cifar-10-batches-py")

    monkeypatch.setattr(tvd, "FashionMNIST", FakeFashionMNIST)
    monkeypatch.setattr(tvd, "CIFAR10", FakeCIFAR10)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    root = tmp_path / "dl"
    with pytest.raises(FileNotFoundError):
        load_dataset("fashion_mnist", root)  # no download unless asked
    assert calls == []

    ds = load_dataset("fashion_mnist", root, download=True, val_fraction=0.2, seed=1)
    check_fake_fashion(ds)
    assert calls and all(c == ("fashion", str(root), True) for c in calls)
    calls.clear()
    load_dataset("fashion_mnist", root)  # found now, nothing downloaded again
    assert calls == []

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    ds = load_dataset("cifar10", download=True, val_fraction=0.2)  # no root: the cache dir
    assert calls == [("cifar10", str(tmp_path / "xdg" / "ngl"), True)]
    check_cifar_pixels(ds)
