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
from deepcluster.errors import ConfigError, DataError
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
        (lambda p: (p / "x.png").write_bytes(b"") or p / "x.png", "is a file: give the folder"),
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
    np.savez(tmp_path / "d.npz", images=x, labels=np.arange(9))  # one label short
    with pytest.raises(DataError, match="'images' holds 10 images but 'labels' holds 9 labels"):
        ArrayDataModule(path=str(tmp_path / "d.npz")).prepare()


def test_rgba_arrays_are_laid_on_the_background_as_a_folder_is(tmp_path):
    """Alpha was dropped: a black drawing on a transparent page (0, 0, 0, 0 there) read as one
    black square, while the same images as PNGs (and deepcluster-predict) read black on white."""
    from PIL import Image

    glyphs = np.zeros((3, 28, 28, 4), dtype=np.uint8)
    glyphs[:, 4:24, 12:16, 3] = 255  # opaque black bars on transparent pages
    glyphs[1, 4:24, 12:16, :3] = 200  # a grey bar
    glyphs[2, :, :, 3] = 128  # a half-transparent black page
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, g in enumerate(glyphs):
        Image.fromarray(g, "RGBA").save(folder / f"{i}.png")
    np.save(tmp_path / "glyphs.npy", glyphs)
    np.save(tmp_path / "floats.npy", glyphs / 255.0)
    as_files = FolderDataModule(path=str(folder)).prepare().images
    for name in ("glyphs.npy", "floats.npy"):
        arr = ArrayDataModule(path=str(tmp_path / name)).prepare().images
        assert arr[0, 0, 0, 0] == 255 and arr[0, 0, 14, 14] == 0  # white page, black bar
        assert torch.equal(arr, as_files)
    on_black = ArrayDataModule(path=str(tmp_path / "glyphs.npy"), background="black").prepare()
    assert int(on_black.images[0].max()) == 0
    with pytest.raises(ValueError, match="dataset.background='grey'"):
        ArrayDataModule(path=str(tmp_path / "glyphs.npy"), background="grey")


def test_identical_images_are_warned_of_not_scored_blank(compose, tmp_path, caplog, capsys):
    # it finished "converged" with an empty line: "deepcluster:  (array, k=3, …)"
    np.save(tmp_path / "flat.npy", np.full((40, 28, 28), 0.5))
    cfg = compose(
        "dataset=array", f"dataset.path={tmp_path / 'flat.npy'}", "k=3", "refine=none",
        *QUICK, f"output_dir={tmp_path / 'run'}", "plots=false",
    )  # fmt: skip
    with caplog.at_level("WARNING"):
        run(cfg)
    assert "non-empty cluster(s) of k=3: the codes barely vary" in caplog.text
    assert "deepcluster: no score (fewer than 2 clusters found)" in capsys.readouterr().out


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
    # a damaged batch that still unpickles: to a list, or with labels=None
    for odd in ([1, 2, 3], {b"data": np.zeros((4, 3072), np.uint8), b"labels": None}):
        (folder / "test_batch").write_bytes(pickle.dumps(odd))
        with pytest.raises(DataError, match="test_batch: not a readable CIFAR-10 batch"):
            CIFAR10DataModule(root=str(tmp_path), split="test", channels=3).prepare()


# --- runs --------------------------------------------------------------------------------
def test_folder_run_then_predict_reproduces_its_clusters(
    compose, labelled_folder, tmp_path, capsys
):
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
    assert list(rows[0]) == ["index", "path", "cluster", "label", "class"]
    assert {(r["label"], r["class"]) for r in rows} == {("0", "discs"), ("1", "squares")}
    runs = {r["path"]: int(r["cluster"]) for r in rows}
    new = tmp_path / "predicted.csv"
    assert predict.main([str(out), str(labelled_folder), "--out", str(new)]) == 0
    assert f"skipped {labelled_folder / 'discs' / 'broken.png'}" in capsys.readouterr().err
    predicted = list(csv.DictReader(new.open()))
    assert len(predicted) == 24  # the broken file is left out, as training left it out
    assert {"path", "cluster", "code_0", "code_9"} <= set(predicted[0])
    for row in predicted:
        rel = str(__import__("pathlib").Path(row["path"]).relative_to(labelled_folder))
        assert int(row["cluster"]) == runs[rel], rel
    # the folder above the run (a sweep's, or one command's runs): the finished runs are named
    capsys.readouterr()
    assert predict.main([str(tmp_path), str(labelled_folder)]) == 2
    assert f"holds 1 finished run(s), not one run: give one of them, e.g. {out}" in (
        capsys.readouterr().err
    )


def test_an_array_run_predicts_image_files_of_its_images_as_it_clustered_them(compose, tmp_path):
    """A run on arrays (or digits, MNIST) took its images through torch's resize and luma;
    predict read the same images' files through PIL's, whose box reduction gives other
    pixels from a 4× shrink on (up to 19 of 255 on sharp 128 px images), and other codes."""
    rng = np.random.default_rng(0)
    x = (rng.random((24, 128, 128, 3)) > 0.5).astype(np.uint8) * 255  # sharp: PIL's worst case
    np.savez(tmp_path / "a.npz", images=x)
    out = tmp_path / "run"
    run(
        compose(
            "dataset=array",
            f"dataset.path={tmp_path / 'a.npz'}",
            "k=2",
            *QUICK,
            f"output_dir={out}",
        )
    )
    files = tmp_path / "files"
    files.mkdir()
    for i, img in enumerate(x):
        Image.fromarray(img).save(files / f"{i:02d}.png")
    Image.fromarray(x[0, ..., 0]).convert("L").save(files / "grey.png")  # a grey file too
    predictor = predict.Predictor(out)
    images, kept = predictor.read(sorted(files.glob("*.png")))
    trained = ArrayDataModule(path=str(tmp_path / "a.npz")).prepare().images
    assert torch.equal(images[:24], trained)  # the same pixels as the run clustered
    np.savez(tmp_path / "g.npz", images=x[:1, ..., 0])  # the grey file, as an array
    assert torch.equal(images[24:], ArrayDataModule(path=str(tmp_path / "g.npz")).prepare().images)
    clusters, codes = predictor(images[:24])
    np.testing.assert_allclose(codes, np.load(out / "codes.npy"), atol=1e-5)
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert clusters.tolist() == [int(r["cluster"]) for r in rows]


def test_predict_errors_are_short(tmp_path, capsys):
    assert predict.main([str(tmp_path), str(tmp_path)]) == 2
    assert "not a finished run folder" in capsys.readouterr().err


def test_predict_does_not_write_over_the_runs_own_predictions(tmp_path, capsys):
    """--out RUN (the folder) replaced the run's training assignments with the new images'."""
    (tmp_path / "clusterer.joblib").write_bytes(b"")
    (tmp_path / "predictions.csv").write_text("index,cluster\n0,1\n")
    for out in (str(tmp_path), str(tmp_path / "predictions.csv")):
        with pytest.raises(SystemExit) as stop:
            predict.main([str(tmp_path), str(tmp_path), "--out", out])
        assert stop.value.code == 2
        assert "a run's own predictions.csv" in capsys.readouterr().err
    assert (tmp_path / "predictions.csv").read_text() == "index,cluster\n0,1\n"


def test_predict_refuses_arrays_with_what_to_give(tmp_path):
    np.save(tmp_path / "new.npy", np.zeros((2, 8, 8), dtype=np.uint8))
    with pytest.raises(predict.PredictError, match="reads image files, not arrays; save each"):
        predict.collect_inputs([str(tmp_path / "new.npy")])


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
            "trainer.max_epochs=3",
            "plots=false",
            f"output_dir={tmp_path}",
        )
    )
    # ACC > 0.25 held for any partition but one cluster (4 classes, k=4): the loss is the test
    losses = [h["loss"] for h in metrics["history"]]
    assert metrics["k"] == 4 and len(losses) == 3 and losses[-1] < 0.9 * losses[0], losses


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
            "dataset.limit=600",  # UMAP (digits' default) and the search: a third of the time
            "trainer.max_epochs=1",
            "logger=none",
            "trainer.enable_progress_bar=false",
            f"output_dir={tmp_path}",
        )
    )
    assert 2 <= metrics["k_chosen"] <= 12 and metrics["k"] == metrics["k_chosen"]
    assert sorted(map(int, metrics["k_search"]["scores"])) == list(range(2, 13))
    assert (tmp_path / "figures" / "k_search.png").is_file()


def test_k_auto_says_when_the_search_is_cut_or_long(compose, tmp_path, caplog):
    """k_search.max above what N allows was cut silently, and 100 candidates gave no hint."""
    run(compose("dataset=synthetic", "dataset.n=24", "k=auto", "k_search.max=40", *QUICK,
                "plots=false", f"output_dir={tmp_path}"))  # fmt: skip
    assert "k_search.max=40: 24 images allow k up to 23; the search stops there" in caplog.text
    assert "will cluster the codes" not in caplog.text  # 22 candidates: not many
    caplog.clear()
    run(compose("dataset=synthetic", "dataset.n=64", "k=auto", "k_search.max=40", *QUICK,
                "plots=false", f"output_dir={tmp_path / 'many'}"))  # fmt: skip
    assert "k=auto will cluster the codes 39 times (k = 2 … 40) at every update" in caplog.text


def test_k_auto_choice_survives_a_resume(compose, tmp_path):
    """k chosen at the end of pretraining, then refined: a run killed before its results and
    resumed (nothing left to train, no new choice) keeps k_chosen, k_search and the figure."""
    args = ["k=auto", "k_search.max=6", "refine=dekm", "pretrain_epochs=1", "trainer.max_epochs=2"]
    args += [
        "manifold=none",
        "logger=none",
        "trainer.enable_progress_bar=false",
        f"output_dir={tmp_path}",
    ]
    metrics = run(compose(*args))
    assert metrics["history"][-1]["phase"] == "refine" and metrics["k_chosen"] is not None
    for name in ("metrics.json", "figures/k_search.png"):
        (tmp_path / name).unlink()
    resumed = run(compose(*args, f"ckpt_path={tmp_path}/checkpoints/last.ckpt"))
    assert resumed["k_chosen"] == metrics["k_chosen"]
    assert resumed["k_search"] == metrics["k_search"]
    assert (tmp_path / "figures" / "k_search.png").is_file()


def test_k_search_min_beyond_the_images_fails_before_training(compose, tmp_path):
    with pytest.raises(Exception, match="k_search.min=8 is not smaller than the number of images"):
        run(
            compose("k=auto", "k_search.min=8", "dataset.limit=8", *QUICK, f"output_dir={tmp_path}")
        )
    assert not (tmp_path / "checkpoints").exists()  # nothing trained
    with pytest.raises(ValueError, match="k_search.min=8, but 8 images allow k up to 7"):
        choose_k(np.zeros((8, 2)), 8, 20)


@pytest.mark.parametrize(
    "n, k, fix",
    [
        (15, "auto", "k_search.max <= 13, or manifold.n_components <= 13"),
        (15, "14", "k <= 13, or manifold.n_components <= 13"),
        (3, "2", "manifold.n_components <= 1"),  # no legal k is left to offer (k >= 2)
    ],
)
def test_umap_on_too_few_images_is_refused_before_training(compose, tmp_path, n, k, fix):
    """UMAP needs more images than its dimensions + 1 (as many as k, or k_search.max for
    k=auto): 15 images trained their epochs, then failed inside the clustering, naming
    manifold.n_components, a key the command never gave."""
    with pytest.raises(ConfigError, match=rf"has {n}: use {fix}, or manifold=none$"):
        run(compose("dataset=synthetic", f"dataset.n={n}", f"k={k}", "manifold=umap_start",
                    *QUICK, f"output_dir={tmp_path}"))  # fmt: skip
    assert not (tmp_path / "checkpoints").exists()  # nothing trained


def test_cluster_only_swaps_the_clusterer_of_a_trained_run(compose, tmp_path):
    first = tmp_path / "trained"
    two = ["trainer.max_epochs=2", *QUICK[1:]]
    run(compose("dataset=synthetic", "dataset.n=64", *two, "plots=false", f"output_dir={first}"))
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
    assert metrics["epochs"] == 2  # the model's epochs, not its one history entry
    # the first run goes on training: predict on the ward run still embeds with the weights
    # its clusters came from (its weights.ckpt), from any working directory
    ours = predict.Predictor(out)
    before = ours(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))[1]
    (first / "checkpoints" / "last.ckpt").unlink()
    assert np.array_equal(
        predict.Predictor(out)(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))[1], before
    )
    (out / "weights.ckpt").unlink()
    with pytest.raises(predict.PredictError, match="weights.ckpt is missing"):
        predict.Predictor(out)
    for f in (first / "checkpoints").iterdir():  # a trained run's weights moved away
        f.unlink()
    with pytest.raises(predict.PredictError, match="last.ckpt is missing"):
        predict.Predictor(first)


def test_deep_and_float_images_are_scaled_not_clipped(tmp_path):
    """16-bit grey (microscopy, scans) and float TIFFs: PIL's own conversion clips at 255."""
    ramp = np.linspace(0, 1, 28 * 28).reshape(28, 28)
    Image.fromarray((ramp * 65535).astype(np.uint16)).save(tmp_path / "deep.png")
    Image.fromarray(ramp.astype(np.float32), mode="F").save(tmp_path / "float.tif")
    Image.fromarray((ramp * 255).astype(np.uint8)).save(tmp_path / "plain.png")
    Image.fromarray((ramp * 7).astype(np.float32), mode="F").save(tmp_path / "out_of_range.tif")
    dm = FolderDataModule(path=str(tmp_path)).prepare()
    assert dm.paths == ["deep.png", "float.tif", "plain.png"]
    assert dm.skipped == [str(tmp_path / "out_of_range.tif")]  # named, not misread
    deep, flt, plain = dm.images.int()
    assert abs(deep - plain).max() <= 1 and abs(flt - plain).max() <= 1


def test_one_class_folder_is_unlabelled(tmp_path):
    """DIR/photos/*.png, as an unzipped archive looks: no labelling to score against."""
    (tmp_path / "photos").mkdir()
    for cls, i, img in shapes(n_per=2):
        Image.fromarray(img).save(tmp_path / "photos" / f"{cls}_{i}.png")
    dm = FolderDataModule(path=str(tmp_path)).prepare()
    assert dm.labels is None and dm.paths[0] == "photos/0_0.png"


def test_a_stray_image_beside_class_folders_is_warned_of(labelled_folder, caplog):
    """One file at the top of a class-folder tree made the whole folder unlabelled, silently."""
    Image.fromarray(shapes(n_per=1)[0][2]).save(labelled_folder / "stray.png")
    with caplog.at_level("WARNING"):
        dm = FolderDataModule(path=str(labelled_folder)).prepare()
    assert dm.labels is None
    assert "1 image(s) sit beside them (stray.png)" in caplog.text


def test_a_bad_channel_count_is_named_alone(tmp_path):
    # it read "dataset.image_size=28 must be >= 1 and dataset.channels=2 1 (grey) or 3 (RGB)"
    with pytest.raises(ValueError) as bad:
        FolderDataModule(path=str(tmp_path), channels=2)
    assert str(bad.value) == "dataset.channels=2 must be 1 (grey) or 3 (RGB)"


def test_oversized_image_is_skipped_and_named(tmp_path, monkeypatch):
    for cls, i, img in shapes(n_per=2):
        Image.fromarray(img).save(tmp_path / f"{cls}_{i}.png")
    Image.new("L", (300, 300)).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # 300² is over twice it: a "bomb"
    dm = FolderDataModule(path=str(tmp_path)).prepare()
    assert dm.skipped == [str(tmp_path / "huge.png")] and len(dm.paths) == 4


def test_a_file_name_that_is_not_utf8_is_written_escaped(tmp_path):
    import os

    img = shapes(n_per=1)[0][2]
    Image.fromarray(img).save(tmp_path / "a.png")
    os.rename(tmp_path / "a.png", os.fsencode(tmp_path) + b"/caf\xe9.png")  # Latin-1 bytes
    Image.fromarray(img).save(tmp_path / "b.png")
    dm = FolderDataModule(path=str(tmp_path)).prepare()
    assert dm.paths == ["b.png", "caf\\xe9.png"]
    assert all(p.encode("utf-8") for p in dm.paths)  # what predictions.csv can hold


def test_a_class_folder_name_that_is_not_utf8_is_escaped_too(tmp_path):
    """Class names went into predictions.csv and the confusion figure with Python's
    surrogates: a run that had trained to the end crashed writing its results."""
    import os
    from types import SimpleNamespace

    from deepcluster.clustering.base import ClusterResult
    from deepcluster.outputs import write_results

    root = tmp_path / "images"
    for i, (label, _, img) in enumerate(shapes(n_per=2)):
        folder = os.fsencode(root) + (b"/caf\xe9" if label == 0 else b"/tea")
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(img).save(os.fsdecode(folder + f"/{i}.png".encode()))
    dm = FolderDataModule(path=str(root)).prepare()
    assert dm.class_names == ["caf\\xe9", "tea"]
    labels = np.array([0, 0, 1, 1])
    callback = SimpleNamespace(
        labels=labels,
        last_codes=np.zeros((4, 2)),
        last_result=ClusterResult(labels=labels, centers=np.zeros((2, 2))),
        k_now=2,
        history=[{}],
        last_manifold_model=None,
    )
    write_results(tmp_path, callback, dm)
    rows = list(csv.DictReader((tmp_path / "predictions.csv").open(encoding="utf-8")))
    assert [r["class"] for r in rows] == ["caf\\xe9", "caf\\xe9", "tea", "tea"]


@pytest.mark.parametrize("mode, key", [("L", 0), ("RGB", (0, 0, 0))])
def test_a_colour_key_transparency_is_laid_on_the_background(tmp_path, mode, key):
    """A grey or RGB PNG whose transparent colour is a key (tRNS), not an alpha channel:
    black line art on a transparent page read as a black page."""
    from deepcluster.data.folder import read_image

    a = np.zeros((8, 8), dtype=np.uint8)
    a[2:6, 4] = 128  # the stroke; everything else is the transparent key
    Image.fromarray(a, "L").convert(mode).save(tmp_path / "ink.png", transparency=key)
    page = read_image(tmp_path / "ink.png", 8, 1)[0]
    assert page[0, 0] == 255 and page[3, 4] == 128  # white page, the stroke kept
    assert read_image(tmp_path / "ink.png", 8, 1, background="black")[0][0, 0] == 0


def test_labels_key_asked_of_a_npy_file_is_refused_not_ignored(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 8, 8), dtype=np.uint8))
    with pytest.raises(DataError, match=r"dataset.labels_key=y: .*x.npy is a .npy file.*\.npz"):
        ArrayDataModule(path=str(tmp_path / "x.npy"), labels_key="y").prepare()
    assert ArrayDataModule(path=str(tmp_path / "x.npy")).prepare().labels is None


def test_array_labels_keep_their_values_for_the_user(tmp_path):
    """Labels 3/7/9 or "cat"/"dog" were renumbered 0..C-1 with nothing kept: predictions.csv
    and the confusion figure showed codes the user never wrote."""
    x = np.zeros((4, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", images=x, labels=np.array(["dog", "cat", "dog", "cat"]))
    dm = ArrayDataModule(path=str(tmp_path / "a.npz")).prepare()
    assert dm.class_names == ["cat", "dog"] and dm.labels.tolist() == [1, 0, 1, 0]
    np.savez(tmp_path / "b.npz", images=x, labels=np.array([0, 1, 1, 0]))
    assert ArrayDataModule(path=str(tmp_path / "b.npz")).prepare().class_names is None


def test_non_finite_array_values_are_refused(tmp_path):
    x = np.full((4, 28, 28), 0.5)
    x[1, 3, 3] = np.nan
    x[2, 0, 0] = np.inf
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(DataError, match="2 values are NaN or infinite"):
        ArrayDataModule(path=str(tmp_path / "x.npy")).prepare()


def test_pixel_baseline_averages_large_images_down():
    from deepcluster.outputs import pixel_baseline

    big = torch.zeros(40, 3, 128, 128, dtype=torch.uint8)
    big[20:, :, :64] = 255  # two kinds: dark, and bright on the left half
    out = pixel_baseline(big, np.array([0] * 20 + [1] * 20), 2, 0)
    assert out["pixels"] == "128×128 averaged to 32×32" and out["acc"] == 1.0
    small = pixel_baseline(big[:, :, :28, :28], None, 2, 0)
    assert "pixels" not in small and small["n"] == 40


def test_report_of_a_sweep_without_labels_plots_silhouette(tmp_path):
    from deepcluster.report import write_figures

    rows = [
        {
            "job": str(j),
            "overrides": f"k={k}",
            "status": "ok",
            "k": k,
            "activation": "relu",
            "acc": None,
            "silhouette": 0.3 + 0.1 * j,
            "history": [{"epoch": 0, "acc": None, "silhouette": 0.2}],
            "dir": tmp_path / str(j),
        }
        for j, k in enumerate((3, 4))
    ]
    figures = write_figures(rows, tmp_path)
    assert figures["acc_vs_k"].stat().st_size > 1000  # was a TypeError on the missing ACC


def test_limit_reads_a_sample_across_the_classes_and_only_that(labelled_folder, monkeypatch):
    """dataset.limit on a class-sorted folder: not the first class's files, and only `limit`
    files decoded (a quick try on 100 000 images must not read them all); the same sample for
    every seed."""
    import deepcluster.data.folder as folder

    opened = []
    real = folder.read_image
    monkeypatch.setattr(folder, "read_image", lambda f, *a: opened.append(f) or real(f, *a))
    dm = FolderDataModule(path=str(labelled_folder), limit=8).prepare()
    assert len(dm.images) == 8 and len(opened) - len(dm.skipped) == 8
    assert sorted(set(dm.labels.tolist())) == [0, 1] and dm.paths == sorted(dm.paths)
    again = FolderDataModule(path=str(labelled_folder), limit=8, seed=3).prepare()
    assert again.paths == dm.paths


def test_white_reads_12_bit_data_and_a_dark_folder_is_flagged(tmp_path, caplog):
    """12-bit camera data in 16-bit files reads against 65535 as 17 grey levels: flagged, and
    dataset.white=4095 reads it whole; a value above white is out of range (skipped, named)."""
    ramp = np.linspace(0, 1, 28 * 28).reshape(28, 28)
    Image.fromarray((ramp * 4095).astype(np.uint16)).save(tmp_path / "twelve_bit.png")
    with caplog.at_level("WARNING"):
        dark = FolderDataModule(path=str(tmp_path)).prepare()
    assert int(dark.images.max()) == 16 and "dataset.white=4095" in caplog.text
    read = FolderDataModule(path=str(tmp_path), white=4095).prepare()
    assert abs(read.images[0, 0].int() - torch.from_numpy(ramp * 255).round().int()).max() <= 1
    Image.fromarray((ramp * 5000).astype(np.uint16)).save(tmp_path / "over.png")
    mixed = FolderDataModule(path=str(tmp_path), white=4095).prepare()
    assert mixed.skipped == [str(tmp_path / "over.png")] and mixed.paths == ["twelve_bit.png"]
    with pytest.raises(ValueError, match="dataset.white=70000"):
        FolderDataModule(path=str(tmp_path), white=70000)
    predictor = object.__new__(predict.Predictor)  # what read() takes from a run's config
    predictor.image_size, predictor.channels, predictor.white = 28, 1, 4095
    predictor.background, predictor.as_folder = "white", True
    images, kept = predictor.read([tmp_path / "twelve_bit.png", tmp_path / "over.png"])
    assert torch.equal(images, read.images) and kept == [tmp_path / "twelve_bit.png"]


def test_a_class_with_no_readable_image_is_not_a_class(tmp_path):
    (tmp_path / "good").mkdir()
    (tmp_path / "broken").mkdir()
    for cls, i, img in shapes(n_per=2):
        Image.fromarray(img).save(tmp_path / "good" / f"{cls}_{i}.png")
    (tmp_path / "broken" / "a.png").write_bytes(b"not an image")
    dm = FolderDataModule(path=str(tmp_path)).prepare()
    assert dm.labels is None and dm.skipped == [str(tmp_path / "broken" / "a.png")]


def test_photos_are_read_upright_and_transparency_is_laid_on_the_background(tmp_path, caplog):
    """A phone's portrait JPEG is stored sideways with an EXIF orientation; a drawing saved
    with a transparent page has black (0, 0, 0, 0) there: read as a viewer shows them."""
    stored = np.zeros((28, 28, 3), dtype=np.uint8)
    stored[:, :6] = 255  # a bright bar along the stored image's left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display: the bar ends up along the top
    Image.fromarray(stored).save(tmp_path / "photo.jpg", exif=exif, quality=95)
    glyph = np.zeros((28, 28, 4), dtype=np.uint8)
    glyph[4:24, 12:16, 3] = 255  # an opaque black bar on a transparent page
    Image.fromarray(glyph, "RGBA").save(tmp_path / "glyph.png")
    with caplog.at_level("WARNING"):
        dm = FolderDataModule(path=str(tmp_path)).prepare()
    photo = dm.images[dm.paths.index("photo.jpg"), 0].float()
    assert photo[:5].mean() > 200 and photo[:, :5].mean() < 100
    page = dm.images[dm.paths.index("glyph.png"), 0]
    assert page[0, 0] == 255 and page[14, 14] == 0  # white page, black bar
    assert "dataset.white" not in caplog.text  # not a 16-bit folder: nothing to flag
    on_black = FolderDataModule(path=str(tmp_path), background="black").prepare()
    assert int(on_black.images[on_black.paths.index("glyph.png")].max()) == 0
    with pytest.raises(ValueError, match="dataset.background='grey'"):
        FolderDataModule(path=str(tmp_path), background="grey")


def test_linked_class_folders_are_followed_and_hidden_ones_skipped(tmp_path):
    store, root = tmp_path / "store", tmp_path / "data"
    for cls, i, img in shapes(n_per=3):
        path = store / ("squares", "discs")[cls] / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path)
    root.mkdir()
    (root / "squares").symlink_to(store / "squares", target_is_directory=True)
    (root / "discs").symlink_to(store / "discs", target_is_directory=True)
    (root / "discs_again").symlink_to(root / "discs", target_is_directory=True)  # read once
    (root / "squares_link_up").symlink_to(root, target_is_directory=True)  # a loop
    hidden = root / ".ipynb_checkpoints"
    hidden.mkdir()
    Image.fromarray(shapes(n_per=1)[0][2]).save(hidden / "0-checkpoint.png")
    Image.fromarray(shapes(n_per=1)[0][2]).save(store / "squares" / ".thumb.png")
    dm = FolderDataModule(path=str(root)).prepare()
    assert len(dm.paths) == 6 and dm.class_names == ["discs", "squares"]


def test_predict_refuses_an_unfinished_run_and_a_missing_out_folder(
    compose, labelled_folder, tmp_path, capsys
):
    out = tmp_path / "run"
    run(
        compose(
            "dataset=folder", f"dataset.path={labelled_folder}", "k=2", *QUICK, f"output_dir={out}"
        )
    )
    with pytest.raises(SystemExit):
        predict.main([str(out), str(labelled_folder), "--out", str(tmp_path / "no" / "x.csv")])
    assert "--out" in capsys.readouterr().err
    # --out a folder: predictions.csv in it (was an IsADirectoryError traceback)
    (tmp_path / "here").mkdir()
    assert predict.main([str(out), str(labelled_folder), "--out", str(tmp_path / "here")]) == 0
    assert (tmp_path / "here" / "predictions.csv").read_text().startswith("path,cluster")
    (out / "metrics.json").unlink()  # as a run stopped before its end leaves it
    assert predict.main([str(out), str(labelled_folder)]) == 2
    assert "no metrics.json" in capsys.readouterr().err
    assert predict.main([str(tmp_path / "nope"), str(labelled_folder)]) == 2
    assert "nope: no such folder" in capsys.readouterr().err  # was "config.yaml is missing"
    (out / "failed.json").write_text('{"error": "k=5000 is not smaller than …"}')
    assert predict.main([str(out), str(labelled_folder)]) == 2
    assert "a sweep job that failed: k=5000" in capsys.readouterr().err


def test_resuming_on_a_folder_that_changed_is_refused_inside_refinement(
    compose, labelled_folder, tmp_path, caplog
):
    """Refinement targets are rows in the images' order: a file added or renamed since the
    checkpoint would index past them or give every image another's target. A pretraining
    checkpoint's weights go on with other images (a warning)."""
    import shutil

    common = ["dataset=folder", "k=2", "refine=dekm", "pretrain_epochs=1", *QUICK[1:]]
    first = tmp_path / "first"
    run(
        compose(
            *common,
            f"dataset.path={labelled_folder}",
            "trainer.max_epochs=2",
            f"output_dir={first}",
        )
    )
    refining = first / "checkpoints" / "last.ckpt"
    added = tmp_path / "added"
    shutil.copytree(labelled_folder, added)
    shutil.copy(added / "discs" / "00.png", added / "discs" / "99.png")
    renamed = tmp_path / "renamed"
    shutil.copytree(labelled_folder, renamed)
    (renamed / "discs" / "00.png").rename(renamed / "discs" / "zz.png")
    config_before = (first / "config.yaml").read_text()
    files_before = sorted(p.relative_to(first) for p in first.rglob("*"))
    for folder, what in ((added, "24 images, this data 25"), (renamed, "other files")):
        for out in (tmp_path / folder.name, first):  # a new folder; in place (ckpt_path=last)
            with pytest.raises(
                ConfigError, match=f"inside a refinement made on other images.*{what}"
            ):
                run(
                    compose(
                        *common,
                        f"dataset.path={folder}",
                        "trainer.max_epochs=3",
                        f"ckpt_path={refining}",
                        f"output_dir={out}",
                    )
                )
    # refused before the folder changed: config.yaml (what predict rebuilds) still names the
    # images the run was trained on, and nothing was set aside or added
    assert (first / "config.yaml").read_text() == config_before
    assert sorted(p.relative_to(first) for p in first.rglob("*")) == files_before
    pretrained = tmp_path / "pre"
    run(
        compose(
            *common,
            f"dataset.path={labelled_folder}",
            "refine=none",
            "trainer.max_epochs=1",
            f"output_dir={pretrained}",
        )
    )
    with caplog.at_level("WARNING"):
        metrics = run(
            compose(
                *common,
                f"dataset.path={added}",
                "trainer.max_epochs=2",
                f"ckpt_path={pretrained}/checkpoints/last.ckpt",
                f"output_dir={tmp_path / 'on_added'}",
            )
        )
    assert "trained on other images (24 images, this data 25)" in caplog.text
    assert metrics["history"][-1]["phase"] == "refine"


@pytest.mark.parametrize("epochs", [0, 2])
def test_weights_of_another_shape_name_the_keys_to_give(compose, labelled_folder, tmp_path, epochs):
    """Trained at 32×32 RGB, clustered (or continued) with the defaults (28×28 grey): the
    message names the keys and their values, not a tensor size mismatch."""
    trained = tmp_path / "rgb"
    run(
        compose(
            "dataset=folder",
            f"dataset.path={labelled_folder}",
            "k=2",
            "dataset.image_size=32",
            "dataset.channels=3",
            *QUICK,
            f"output_dir={trained}",
        )
    )
    with pytest.raises(ConfigError) as refused:
        run(
            compose(
                "dataset=folder",
                f"dataset.path={labelled_folder}",
                "k=2",
                *QUICK[1:],
                f"trainer.max_epochs={epochs}",
                f"ckpt_path={trained}/checkpoints/last.ckpt",
                f"output_dir={tmp_path / 'again'}",
            )
        )
    message = str(refused.value)
    assert "dataset.channels=3 (here 1)" in message and "dataset.image_size=32 (here 28)" in message


def test_array_inputs_that_used_to_fail_late_or_silently_are_named(tmp_path, caplog):
    """From a review: each of these crashed with numpy's traceback, or ran with its labels
    quietly dropped or wrong; each now says what is wrong and how to fix it."""
    x = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)

    def loads(name, **arrays_and_options):
        options = {k: v for k, v in arrays_and_options.items() if k.endswith("_key")}
        arrays = {k: v for k, v in arrays_and_options.items() if k not in options}
        np.savez(tmp_path / name, **arrays)
        return ArrayDataModule(path=str(tmp_path / name), **options).prepare()

    with pytest.raises(DataError, match="'labels' .*unpickling"):
        loads("obj.npz", images=x, labels=np.array([1, "a", None] * 2, dtype=object))
    with pytest.raises(DataError, match="6 of 6 labels in .labels. are NaN"):
        loads("nan.npz", images=x, labels=np.full(6, np.nan))
    with pytest.raises(DataError, match="'nolabels' for dataset.labels_key .*it has x, y"):
        loads("typo.npz", x=x, y=np.arange(6), images_key="x", labels_key="nolabels")
    assert loads("xy.npz", x=x, y=np.arange(6), images_key="x", labels_key="y").labels.tolist()
    caplog.clear()
    assert loads("xy2.npz", x=x, y=np.arange(6), images_key="x").labels is None
    assert "no array named 'labels'" in caplog.text and "also has y" in caplog.text
    np.save(tmp_path / "rgb.npy", x[0][..., None].repeat(3, axis=-1))  # one (H, W, 3) image
    with pytest.raises(DataError, match=r"x\[None\]"):
        ArrayDataModule(path=str(tmp_path / "rgb.npy")).prepare()
    np.save(tmp_path / "flat.npy", x.reshape(6, -1))
    with pytest.raises(DataError, match=r"reshape\(-1, 28, 28\)"):
        ArrayDataModule(path=str(tmp_path / "flat.npy")).prepare()
    np.save(tmp_path / "u16.npy", x.astype(np.uint16) * 257)
    with pytest.raises(DataError, match="x / 65535"):
        ArrayDataModule(path=str(tmp_path / "u16.npy")).prepare()
    # the hint scales by the data's own white: 8-bit values stored as uint16, a 12-bit camera
    np.save(tmp_path / "u16.npy", x.astype(np.uint16))
    with pytest.raises(DataError, match=r"if they are 8-bit values, save x.astype\(np.uint8\)"):
        ArrayDataModule(path=str(tmp_path / "u16.npy")).prepare()
    np.save(tmp_path / "u16.npy", (x > 127).astype(np.int64))  # a 0/1 mask: already [0, 1]
    with pytest.raises(DataError, match=r"0 and 1 only: save x.astype\(np.float32\)"):
        ArrayDataModule(path=str(tmp_path / "u16.npy")).prepare()
    np.save(tmp_path / "u16.npy", x.astype(np.uint16) * 16)
    with pytest.raises(DataError, match="x / 4095 .*12-bit"):
        ArrayDataModule(path=str(tmp_path / "u16.npy")).prepare()
    with pytest.raises(DataError, match="is a folder.*dataset=folder"):
        ArrayDataModule(path=str(tmp_path)).prepare()


@pytest.mark.parametrize(
    "option", [{"limit": 10.5}, {"limit": True}, {"image_size": "abc"}, {"channels": 3.0}]
)
def test_dataset_numbers_of_the_wrong_type_are_named(tmp_path, option):
    np.save(tmp_path / "x.npy", np.zeros((4, 28, 28), np.uint8))
    ((key, value),) = option.items()
    with pytest.raises(ValueError, match=f"dataset.{key}={value!r} must be"):
        ArrayDataModule(path=str(tmp_path / "x.npy"), **option)
