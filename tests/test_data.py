import gzip

import numpy as np
import pytest
import torch

from deepcluster.data import (
    DigitsDataModule,
    EpochBatchSampler,
    FashionMNISTDataModule,
    MNISTDataModule,
    SyntheticDataModule,
)
from deepcluster.data.idx import read_idx
from deepcluster.errors import DataError
from tests.conftest import real_data_root


def write_idx(path, array: np.ndarray, magic_dtype=0x08, gz=False):
    header = bytes([0, 0, magic_dtype, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    (gzip.open if gz else open)(path, "wb").write(data)
    return path


def fake_mnist(root, folder="MNIST", n_train=30, n_test=10, gz=False):
    rng = np.random.default_rng(0)
    raw = root / folder / "raw"
    suffix = ".gz" if gz else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(
            raw / f"{split}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)), gz=gz
        )
        write_idx(raw / f"{split}-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n), gz=gz)


def test_sampler_covers_every_index_once_and_is_fixed_by_epoch():
    s = EpochBatchSampler(103, 10, shuffle=True, seed=1)
    s.set_epoch(4)
    first = torch.cat(list(s))
    assert sorted(first.tolist()) == list(range(103))
    assert len(s) == 11
    again = EpochBatchSampler(103, 10, shuffle=True, seed=1)
    again.set_epoch(4)  # a fresh sampler (as after a resume) gives the same order
    assert torch.equal(torch.cat(list(again)), first)
    s.set_epoch(5)
    assert not torch.equal(torch.cat(list(s)), first)


def test_sampler_shards_by_rank_without_overlap():
    shards = []
    for rank in range(2):
        s = EpochBatchSampler(11, 4, seed=0, rank=rank, world_size=2)
        shards.append(torch.cat(list(s)))
        assert len(list(s)) == len(s) == 2
    assert len(shards[0]) == len(shards[1]) == 6
    assert set(shards[0].tolist()) | set(shards[1].tolist()) == set(range(11))


def test_a_last_batch_of_one_image_joins_the_one_before():
    """257 images in batches of 64 left one image alone in the last batch: with
    model.norm=batch at image_size=8 (a 1×1 last feature map) BatchNorm raised "Expected more
    than 1 value per channel when training"."""
    s = EpochBatchSampler(257, 64, seed=0)
    sizes = [len(b) for b in s]
    assert sizes == [64, 64, 64, 65] and len(s) == 4
    assert sorted(torch.cat(list(s)).tolist()) == list(range(257))
    assert [len(b) for b in EpochBatchSampler(258, 64)] == [64, 64, 64, 64, 2]
    assert [len(b) for b in EpochBatchSampler(1, 64)] == [1]  # one image: nothing to join
    for rank in range(2):  # per rank: 9 of 17 images each, batches of 4 + 5
        s = EpochBatchSampler(17, 4, seed=0, rank=rank, world_size=2)
        assert [len(b) for b in s] == [4, 5] and len(s) == 2


def test_train_batches_are_float_slices_with_indices():
    dm = SyntheticDataModule(n=40, num_classes=4, batch_size=16)
    dm.setup()
    x, idx = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.float32 and x.shape == (16, 1, 28, 28)
    assert 0.0 <= x.min() and x.max() <= 1.0
    torch.testing.assert_close(x, dm.images[idx].float() / 255)


def test_digits_loads_offline():
    dm = DigitsDataModule()
    dm.prepare()
    assert dm.images.shape == (1797, 1, 28, 28) and dm.images.dtype == torch.uint8
    assert set(np.unique(dm.labels)) == set(range(10))


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_idx_splits(tmp_path, gz):
    fake_mnist(tmp_path, gz=gz)
    for split, n in (("all", 40), ("train", 30), ("test", 10)):
        dm = MNISTDataModule(root=str(tmp_path), split=split, download=False)
        dm.prepare()
        assert dm.images.shape == (n, 1, 28, 28)
        assert dm.labels.shape == (n,)


def test_missing_data_error_names_root_and_ways_out(tmp_path):
    dm = FashionMNISTDataModule(root=str(tmp_path / "nowhere"), download=False)
    with pytest.raises(DataError) as err:
        dm.prepare()
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg
    assert "data.root" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "dataset=digits" in msg


def test_bad_split_is_rejected():
    with pytest.raises(ValueError, match="dataset.split='val' must be one of all, train, test"):
        MNISTDataModule(split="val")


def test_truncated_idx_names_file(tmp_path):
    path = write_idx(tmp_path / "x-idx3-ubyte", np.zeros((5, 28, 28)))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"x-idx3-ubyte: truncated.*\(5, 28, 28\)"):
        read_idx(path, expect_ndim=3)


def test_wrong_magic_names_file(tmp_path):
    path = tmp_path / "junk"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(DataError, match="junk: bad magic number 504b0304"):
        read_idx(path, expect_ndim=1)


def test_wrong_dimensions_and_type(tmp_path):
    labels_as_images = write_idx(tmp_path / "a", np.zeros(5))
    with pytest.raises(DataError, match="has 1 dimensions, expected 3"):
        read_idx(labels_as_images, expect_ndim=3)
    floats = write_idx(tmp_path / "b", np.zeros(5), magic_dtype=0x0D)
    with pytest.raises(DataError, match="element type 0x0d"):
        read_idx(floats, expect_ndim=1)


def test_corrupt_gzip_names_file(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DataError, match="cannot read .*t10k-labels-idx1-ubyte.gz"):
        read_idx(path, expect_ndim=1)
    # a valid gzip header over damaged compressed data (bit rot, a bad mirror): zlib's error
    labels = gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 200]) + bytes(200))
    path.write_bytes(labels[:10] + b"\xff" * 8 + labels[18:])
    with pytest.raises(DataError, match="cannot read .*Delete the file"):
        read_idx(path, expect_ndim=1)


def test_images_and_labels_of_different_length(tmp_path):
    fake_mnist(tmp_path)
    write_idx(tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", np.zeros(7))
    dm = MNISTDataModule(root=str(tmp_path), split="test", download=False)
    with pytest.raises(DataError, match="holds 10 images but .* holds 7 labels"):
        dm.prepare()


@pytest.mark.skipif(real_data_root() is None, reason="real MNIST not available")
def test_real_mnist_full_is_70000():
    dm = MNISTDataModule(root=str(real_data_root()), download=False)
    dm.prepare()
    assert dm.images.shape == (70_000, 1, 28, 28)
    assert np.bincount(dm.labels).min() > 6000
