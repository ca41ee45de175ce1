"""Figures: what they show, read off the matplotlib figure before it is saved."""

import numpy as np
import pytest

from deepcluster import plots


@pytest.fixture
def kept(monkeypatch):
    """The figures plots._save is handed, instead of closed."""
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    return figures


def test_confusion_rows_carry_the_class_folders_names(kept, tmp_path):
    y = np.array([0, 0, 1, 1, 2, 2])
    plots.confusion(y, y[::-1], tmp_path / "c.png", class_names=["cats", "dogs", "owls"])
    ax = kept[0].axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cats", "dogs", "owls"]


def test_confusion_names_the_clusters_and_classes_present(kept, tmp_path):
    """Cluster 1 empty and class 1 absent: the columns are clusters 0, 2, 3 (they were
    labelled by position, 0, 1, 2, so cluster 2's column read "1") and the rows classes 0, 2."""
    y = np.array([0, 0, 2, 2, 2, 0])
    pred = np.array([0, 0, 2, 2, 3, 3])
    plots.confusion(y, pred, tmp_path / "c.png", class_names=["cats", "dogs", "owls"])
    ax = kept[0].axes[0]
    assert sorted(t.get_text() for t in ax.get_xticklabels()) == ["0", "2", "3"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cats", "owls"]
    plots.confusion(y, pred, tmp_path / "d.png")
    assert [t.get_text() for t in kept[1].axes[0].get_yticklabels()] == ["0", "2"]


def test_acc_vs_k_bars_show_the_seed_count_and_spread(kept, tmp_path):
    """Three seeds of relu at k=10, one of sigmoid: each bar says how many seeds it averages,
    with their sd as the error bar (a one-seed bar has none)."""
    rows = [
        {"status": "ok", "k": 10, "activation": "relu", "acc": a} for a in (0.90, 0.94, 0.98)
    ] + [{"status": "ok", "k": 10, "activation": "sigmoid", "acc": 0.84}]
    plots.acc_vs_k(rows, tmp_path / "a.png")
    ax = kept[0].axes[0]
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == ["0.840\nn=1", "0.940\nn=3"]
    assert plots.bar_stats(rows, [10], "activation", "relu", "acc") == (
        [pytest.approx(0.94)],
        [pytest.approx(0.04)],
        [3],
    )
    # one value per bar: labelled as before, no count
    plots.acc_vs_k(rows[:1] + rows[3:], tmp_path / "b.png")
    assert sorted(t.get_text() for t in kept[1].axes[0].texts) == ["0.840", "0.900"]


@pytest.mark.parametrize("k", [3, 15, 50])
def test_the_latent_map_gives_every_cluster_its_own_colour(kept, tmp_path, k):
    """tab20 with automatic scaling coloured clusters 0, 1 and 2 alike at k = 50."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(k), 4)
    plots.latent_map(rng.normal(size=(4 * k, 5)), labels, tmp_path / "m.png")
    dots = kept[0].axes[0].collections[0]
    colours = {tuple(np.round(c, 4)) for c in dots.to_rgba(dots.get_array())}
    assert len(colours) == k


def test_the_scores_curve_draws_a_history_without_silhouettes(kept, tmp_path):
    plots.scores_curve([{"epoch": 0, "loss": 0.1}], tmp_path / "s.png")  # never clustered
    assert kept


def test_silhouettes_from_the_manifold_and_from_the_codes_are_two_series(kept, tmp_path):
    """manifold=umap_start scores its first update in UMAP's space (0.55) and the next in the
    codes' (0.28): drawn as one line, a drop that did not happen."""
    history = [
        {"epoch": 0, "silhouette": 0.55, "manifold": True, "phase": "refine"},
        {"epoch": 1, "silhouette": 0.28, "manifold": False, "phase": "refine"},
        {"epoch": 2, "silhouette": 0.30, "manifold": False, "phase": "refine"},
    ]
    plots.scores_curve(history, tmp_path / "s.png")
    lines = {ln.get_label(): ln.get_ydata() for ln in kept[0].axes[0].get_lines()}
    np.testing.assert_array_equal(lines["silhouette (codes)"], [np.nan, 0.28, 0.30])
    np.testing.assert_array_equal(lines["silhouette (manifold)"], [0.55, np.nan, np.nan])
    plots.scores_curve(history[1:], tmp_path / "t.png")  # one space: one series, as before
    assert "silhouette" in {ln.get_label() for ln in kept[1].axes[0].get_lines()}


def test_a_sweeps_silhouette_per_epoch_keeps_each_job_in_one_space(kept, tmp_path):
    """An unlabelled sweep with manifold=umap plots silhouettes per epoch: the UMAP-space ones
    (every 5th epoch) joined to the code-space ones drew a zig-zag that did not happen."""
    history = [
        {"epoch": e, "silhouette": 0.7 if e in (4, 9) else 0.2, "manifold": e in (4, 9)}
        for e in range(10)
    ]
    plots.acc_vs_epoch([("job0", history)], tmp_path / "a.png", score="silhouette")
    (line,) = kept[0].axes[0].get_lines()  # the codes' space, where most scores were taken
    assert list(line.get_xdata()) == [0, 1, 2, 3, 5, 6, 7, 8] and set(line.get_ydata()) == {0.2}
    # manifold=umap: UMAP at the last epoch only; the line is not cut down to that one point
    last_only = [dict(h, manifold=h["epoch"] == 9) for h in history]
    plots.acc_vs_epoch([("job0", last_only)], tmp_path / "b.png", score="silhouette")
    assert len(kept[1].axes[0].get_lines()[0].get_xdata()) == 9


def test_a_cluster_takes_the_colour_of_the_class_it_is_matched_to(kept, tmp_path):
    """Cluster ids are arbitrary: a perfect clustering with ids swapped drew the two panels
    in other colours."""
    classes = np.array([0, 0, 1, 1, 2, 2])
    clusters = np.array([2, 2, 0, 0, 1, 1])  # perfect, ids permuted
    z = np.random.default_rng(0).normal(size=(6, 4))
    plots.latent_map(z, clusters, tmp_path / "m.png", classes=classes)
    by_cluster, by_class = (ax.collections[0] for ax in kept[0].axes[:2])
    np.testing.assert_array_equal(
        by_cluster.to_rgba(by_cluster.get_array()), by_class.to_rgba(by_class.get_array())
    )
