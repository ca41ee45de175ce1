"""Your own images: folders, arrays, any size and colour, predict, k=auto, no labels."""

import csv
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from deepcluster import predict
from deepcluster.clustering.k_select import choose_k
from deepcluster.data import ArrayDataModule, CIFAR10DataModule, FolderDataModule
from deepcluster.data.base import conform
from deepcluster.errors import DataError
from deepcluster.run import run
from tests.test_clusterers import blobs

QUICK = [
    "trainer.max_epochs=1",
    "data.batch_size=16",
    "logger=none",
    "trainer.enable_progress_bar=false",
]


def shapes(n_per=12, seed=0):
    """Bright squares (class 0) and discs (class 1) at random places, of mixed sizes."""
    rng = np.random.default_rng(seed)
    out = []
    for cls in (0, 1):
        for i in range(n_per):
            size = int(rng.choice([20, 28, 40]))
            img = np.zeros((size, size), dtype=np.uint8)
            c, r = rng.integers(size // 3, 2 * size // 3, 2), size // 4
            yy, xx = np.mgrid[:size, :size]
            mask = (
                (np.abs(yy - c[0]) <= r) & (np.abs(xx - c[1]) <= r)
                if cls == 0
                else (yy - c[0]) ** 2 + (xx - c[1]) ** 2 <= r * r
            )
            img[mask] = 255
            out.append((cls, i, img))
    return out


@pytest.fixture
def labelled_folder(tmp_path):
    root = tmp_path / "shapes"
    for cls, i, img in shapes():
        path = root / ("squares", "discs")[cls] / f"{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path)
    (root / "discs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def test_labelled_folder_loads_skips_the_broken_file_and_resizes(labelled_folder):
    dm = FolderDataModule(path=str(labelled_folder)).prepare()
    assert dm.images.shape == (24, 1, 28, 28) and dm.images.dtype == torch.uint8
    assert sorted(set(dm.labels.tolist())) == [0, 1] and dm.class_names == ["discs", "squares"]
    assert dm.skipped == [str(labelled_folder / "discs" / "broken.png")]
    assert dm.paths[0] == "discs/00.png"


def test_flat_folder_is_unlabelled_and_rgb_works(tmp_path):
    for cls, i, img in shapes(n_per=3):
        Image.fromarray(img).convert("RGB").save(tmp_path / f"{cls}_{i}.jpg")
    dm = FolderDataModule(path=str(tmp_path), image_size=32, channels=3).prepare()
    assert dm.labels is None and dm.images.shape == (6, 3, 32, 32)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: p, "no image files"),
        (lambda p: p / "absent", "no such folder"),
        (lambda p: (p / "x.png").write_bytes(b"junk") and p, "none of its 1 image files"),
    ],
)
def test_folder_errors_name_the_path(tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises(DataError, match=match):
        FolderDataModule(path=str(path)).prepare()


def test_array_npz_with_labels_and_npy_float_without(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (10, 20, 20, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", images=x, labels=np.array([5, 7] * 5))
    dm = ArrayDataModule(path=str(tmp_path / "a.npz"), channels=3, image_size=32).prepare()
    assert dm.images.shape == (10, 3, 32, 32) and dm.labels.tolist() == [0, 1] * 5
    np.save(tmp_path / "b.npy", x[..., 0] / 255.0)
    dm = ArrayDataModule(path=str(tmp_path / "b.npy")).prepare()
    assert dm.labels is None and dm.images.shape == (10, 1, 28, 28)
    np.save(tmp_path / "c.npy", x * 2.0)
    with pytest.raises(DataError, match="float in \\[0, 1\\]"):
        ArrayDataModule(path=str(tmp_path / "c.npy")).prepare()


def test_conform_grey_to_rgb_and_back_keeps_values():
    x = torch.full((2, 1, 28, 28), 200, dtype=torch.uint8)
    rgb = conform(x, 28, 3)
    assert rgb.shape == (2, 3, 28, 28) and int(rgb.min()) == 200
    assert torch.equal(conform(rgb, 28, 1), x)


def test_cifar10_reads_torchvisions_layout(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
            b"labels": list(rng.integers(0, 10, 4)),
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    dm = CIFAR10DataModule(root=str(tmp_path), image_size=32, channels=3).prepare()
    assert dm.images.shape == (24, 3, 32, 32)
    dm = CIFAR10DataModule(root=str(tmp_path), split="test", image_size=32, channels=3).prepare()
    assert len(dm.images) == 4
    with pytest.raises(DataError, match="CIFAR-10: no 'all' batches.*dataset=digits"):
        CIFAR10DataModule(root=str(tmp_path / "none"), download=False).prepare()


# --- runs --------------------------------------------------------------------------------
def test_folder_run_then_predict_reproduces_its_clusters(compose, labelled_folder, tmp_path):
    out = tmp_path / "run"
    metrics = run(
        compose(
            "dataset=folder", f"dataset.path={labelled_folder}", "k=2", *QUICK, f"output_dir={out}"
        )
    )
    assert metrics["acc"] is not None and metrics["labelled"]
    for name in ("codes.npy", "clusterer.joblib", "config.yaml", "figures/cluster_samples.png"):
        assert (out / name).is_file(), name
    assert np.load(out / "codes.npy").shape == (24, 10)
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert list(rows[0]) == ["index", "path", "cluster", "label"]
    runs = {r["path"]: int(r["cluster"]) for r in rows}
    new = tmp_path / "predicted.csv"
    assert (
        predict.main(
            [
                str(out),
                str(labelled_folder / "discs"),
                str(labelled_folder / "squares"),
                "--out",
                str(new),
            ]
        )
        == 2
    )  # the broken file is a clear error
    (labelled_folder / "discs" / "broken.png").unlink()
    assert predict.main([str(out), str(labelled_folder), "--out", str(new)]) == 0
    predicted = list(csv.DictReader(new.open()))
    assert {"path", "cluster", "code_0", "code_9"} <= set(predicted[0])
    for row in predicted:
        rel = str(__import__("pathlib").Path(row["path"]).relative_to(labelled_folder))
        assert int(row["cluster"]) == runs[rel], rel


def test_predict_errors_are_short(tmp_path, capsys):
    assert predict.main([str(tmp_path), str(tmp_path)]) == 2
    assert "not a finished run folder" in capsys.readouterr().err


def test_unlabelled_run_writes_label_free_scores_and_no_label_figures(compose, tmp_path):
    folder = tmp_path / "flat"
    folder.mkdir()
    for cls, i, img in shapes(n_per=8):
        Image.fromarray(img).save(folder / f"{cls}_{i}.png")
    out = tmp_path / "run"
    metrics = run(
        compose("dataset=folder", f"dataset.path={folder}", "k=2", *QUICK, f"output_dir={out}")
    )
    assert metrics["acc"] is None and not metrics["labelled"]
    assert metrics["silhouette"] is not None and metrics["calinski_harabasz"] > 0
    assert metrics["objective_name"] == "inertia" and metrics["objective"] > 0
    figures = {p.stem for p in (out / "figures").glob("*.png")}
    assert "cluster_samples" in figures and "confusion" not in figures
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert list(rows[0]) == ["index", "path", "cluster"]


def test_rgb_32_run_trains(compose, tmp_path):
    metrics = run(
        compose(
            "dataset=synthetic",
            "dataset.image_size=32",
            "dataset.channels=3",
            "model=cae_deep",
            "dataset.n=64",
            *QUICK,
            "plots=false",
            f"output_dir={tmp_path}",
        )
    )
    assert metrics["k"] == 4 and metrics["acc"] > 0.25


def test_k_auto_finds_well_separated_blobs():
    z, _ = blobs(n_per=60, k=5, d=6, spread=0.3, seed=4)
    for criterion in ("silhouette", "bic", "ward_gap"):
        choice = choose_k(z, 2, 10, criterion=criterion)
        assert choice.k == 5, (criterion, choice.scores)


def test_k_auto_on_digits_reports_its_choice(compose, tmp_path):
    metrics = run(
        compose(
            "k=auto",
            "k_search.max=12",
            "trainer.max_epochs=1",
            "logger=none",
            "trainer.enable_progress_bar=false",
            f"output_dir={tmp_path}",
        )
    )
    assert 2 <= metrics["k_chosen"] <= 12 and metrics["k"] == metrics["k_chosen"]
    assert sorted(map(int, metrics["k_search"]["scores"])) == list(range(2, 13))
    assert (tmp_path / "figures" / "k_search.png").is_file()


def test_cluster_only_swaps_the_clusterer_of_a_trained_run(compose, tmp_path):
    first = tmp_path / "trained"
    run(compose("dataset=synthetic", "dataset.n=64", *QUICK, "plots=false", f"output_dir={first}"))
    out = tmp_path / "ward"
    metrics = run(
        compose(
            "dataset=synthetic",
            "dataset.n=64",
            "clusterer=ward",
            "trainer.max_epochs=0",
            f"ckpt_path={first}/checkpoints/last.ckpt",
            "logger=none",
            "plots=false",
            f"output_dir={out}",
        )
    )
    assert metrics["clusterer"] == "ward" and metrics["stop_reason"].startswith("cluster_only")
    assert len(metrics["history"]) == 1 and not (out / "checkpoints").exists()
