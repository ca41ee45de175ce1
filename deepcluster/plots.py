"""Figures (PNG): cluster samples, latent map, scores per epoch, confusion, dendrogram, k search;
and the sweep report's. Each takes arrays and a path, returns the path."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.metrics.cluster import contingency_matrix  # noqa: E402


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def project_2d(z: np.ndarray, max_points: int = 5000, seed: int = 0):
    """PCA of a random subsample to 2-D. z: (N, d) → (points (M, 2), chosen indices (M,))."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(z), size=min(max_points, len(z)), replace=False))
    sub = np.asarray(z[idx], dtype=np.float64)
    if sub.shape[1] > 2:
        sub = PCA(n_components=2, random_state=seed).fit_transform(sub)
    elif sub.shape[1] == 1:
        sub = np.hstack([sub, np.zeros_like(sub)])
    return sub, idx


def colour_scale(n: int) -> tuple:
    """(colormap, vmin, vmax) giving ids 0..n-1 n different colours: tab10/tab20 up to 20,
    beyond that a continuous map cut into n (tab20 alone repeats colours past 20 ids)."""
    if n <= 10:
        cmap = plt.get_cmap("tab10")
    elif n <= 20:
        cmap = plt.get_cmap("tab20")
    else:
        cmap = plt.get_cmap("turbo", n)
    return cmap, -0.5, (cmap.N if n <= 20 else n) - 0.5


def latent_map(
    z: np.ndarray,
    labels: np.ndarray,
    path: Path,
    title: str = "",
    classes: np.ndarray | None = None,
) -> Path:
    """Scatter of the codes (PCA to 2-D) coloured by cluster, and beside it by class. With
    classes, each cluster takes the colour of the class it is matched to (Hungarian, as ACC
    matches them; a cluster left without a class gets a colour of its own), so the panels'
    colours correspond."""
    from deepcluster.clustering.metrics import align_labels

    xy, idx = project_2d(z)
    panels = [("cluster", labels)]
    if classes is not None:
        panels = [("cluster", align_labels(classes, labels)), ("class", classes)]
    n_colours = max(int(colour.max()) + 1 for _, colour in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5), squeeze=False)
    for ax, (what, colour) in zip(axes[0], panels):
        cmap, vmin, vmax = colour_scale(n_colours)
        ax.scatter(
            xy[:, 0],
            xy[:, 1],
            c=colour[idx],
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            s=3,
            alpha=0.7,
            linewidths=0,
        )
        ax.set_title(f"codes (PCA), coloured by {what}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def scores_curve(history: Sequence[dict], path: Path, title: str = "") -> Path:
    """Per clustered epoch: ACC and NMI (with labels) and the silhouette; refinement shaded."""
    history = [h for h in history if "silhouette" in h]  # the monitoring cadence skips some
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    # a silhouette taken in the manifold's space (UMAP's, higher by its packing) is its own
    # series: joined to the codes' one it drew a drop where none happened (manifold=umap_start)
    spaces = {bool(h.get("manifold")) for h in history}
    series = [("acc", "o-", "acc", None), ("nmi", "s--", "nmi", None)]
    if len(spaces) > 1:
        series += [
            ("silhouette", "^:", "silhouette (codes)", False),
            ("silhouette", "v", "silhouette (manifold)", True),
        ]
    else:
        series.append(("silhouette", "^:", "silhouette", None))
    for key, style, label, space in series:
        values = [
            h.get(key) if space is None or bool(h.get("manifold")) == space else None
            for h in history
        ]
        if any(v is not None for v in values):
            ax.plot(epochs, [np.nan if v is None else v for v in values], style, label=label)
    refine = [h["epoch"] for h in history if h.get("phase") == "refine"]
    if refine:
        ax.axvspan(min(refine) - 0.5, max(refine) + 0.5, color="0.9", label="refinement")
    ax.set_xlabel("epoch")
    ax.set_ylabel("score")
    ax.set_ylim(min([0, *(h.get("silhouette") or 0 for h in history)]), 1)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or "clustering quality per epoch")
    return _save(fig, path)


def confusion(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    path: Path,
    title: str = "",
    class_names: list[str] | None = None,
) -> Path:
    """Classes × clusters counts, clusters ordered by their matched class (Hungarian);
    rows named by `class_names` (a folder's class folders) when given."""
    from scipy.optimize import linear_sum_assignment

    table = contingency_matrix(y_true, y_pred)  # (C, k)
    # its rows and columns are the ids present, in order: an empty cluster (a GMM component
    # or DEC centre with no image) or a class left out by dataset.limit has none
    classes, clusters = np.unique(y_true), np.unique(y_pred)
    rows, cols = linear_sum_assignment(table, maximize=True)
    matched = [c for _, c in sorted(zip(rows, cols))]
    order = matched + [c for c in range(table.shape[1]) if c not in matched]
    table = table[:, order]
    fig, ax = plt.subplots(figsize=(0.55 * table.shape[1] + 2, 0.5 * table.shape[0] + 1.5))
    ax.imshow(table, cmap="Blues")
    high = table.max() / 2
    for (i, j), count in np.ndenumerate(table):
        if count:
            ax.text(
                j,
                i,
                str(count),
                ha="center",
                va="center",
                fontsize=6,
                color="white" if count > high else "black",
            )
    ax.set_xlabel("cluster (ordered by matched class)")
    ax.set_ylabel("class")
    ax.set_xticks(range(table.shape[1]), [str(clusters[c]) for c in order])
    if class_names is not None and len(class_names) > int(classes.max()):
        ax.set_yticks(range(len(classes)), [str(class_names[c]) for c in classes])
    else:
        ax.set_yticks(range(len(classes)), [str(c) for c in classes])
    ax.set_title(title or "classes × clusters")
    return _save(fig, path)


def cluster_samples(
    images,
    z: np.ndarray,
    labels: np.ndarray,
    centers: np.ndarray,
    path: Path,
    title: str = "",
    per_cluster: int = 12,
) -> Path:
    """One row per cluster: its size and the images whose codes lie nearest its centre."""
    k = len(centers)
    fig, axes = plt.subplots(
        k, per_cluster + 1, figsize=(0.8 * (per_cluster + 1), 0.8 * k + 0.6), squeeze=False
    )
    for c in range(k):
        members = np.flatnonzero(labels == c)
        dist = ((z[members] - centers[c]) ** 2).sum(1)
        nearest = members[np.argsort(dist)[:per_cluster]]
        axes[c, 0].text(0.5, 0.5, f"{c}\n{len(members)}", ha="center", va="center", fontsize=8)
        for j, ax in enumerate(axes[c]):
            ax.axis("off")
            if 1 <= j <= len(nearest):
                img = images[nearest[j - 1]].permute(1, 2, 0).cpu().numpy()  # (H, W, C) uint8
                # on the pixels' scale, whatever matplotlib's autoscaling does with one tile
                ax.imshow(
                    img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255
                )
    fig.suptitle(
        (title + "\n" if title else "") + "cluster, size | images nearest its centre", fontsize=9
    )
    return _save(fig, path)


def k_search(choice, path: Path, title: str = "") -> Path:
    """The label-free score per candidate k; the chosen k marked."""
    ks = sorted(choice.scores)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(ks, [choice.scores[k] for k in ks], "o-")
    ax.axvline(choice.k, ls="--", c="C3", label=f"chosen k={choice.k}")
    ax.set_xlabel("k")
    ax.set_ylabel(
        choice.criterion
        + (" (higher is better)" if choice.higher_is_better else " (lower is better)")
    )
    ax.legend()
    ax.grid(alpha=0.3)
    ax.set_title(title or "choosing k without labels")
    return _save(fig, path)


def dendrogram(linkage: np.ndarray, k: int, path: Path, title: str = "", top: int = 30) -> Path:
    """The top `top` merges of a Ward tree; the dashed line cuts it into k clusters."""
    from scipy.cluster.hierarchy import dendrogram as _dendrogram

    fig, ax = plt.subplots(figsize=(7, 4))
    _dendrogram(
        linkage,
        truncate_mode="lastp",
        p=top,
        ax=ax,
        show_leaf_counts=True,
        leaf_rotation=90,
        leaf_font_size=7,
        color_threshold=0,
    )
    if 2 <= k <= len(linkage):
        # the k-cluster cut lies between the (k-1)-th and k-th highest merges
        heights = np.sort(linkage[:, 2])[::-1]
        ax.axhline((heights[k - 2] + heights[k - 1]) / 2, ls="--", c="C3", lw=1, label=f"k={k}")
        ax.legend(loc="upper right")
    ax.set_ylabel("Ward merge distance")
    ax.set_xlabel("cluster (size) at the top merges")
    ax.set_title(title or f"Ward dendrogram (top {top} merges)")
    return _save(fig, path)


# --- sweep reports ---------------------------------------------------------------------
SCORE_NAMES = {"acc": "ACC", "silhouette": "silhouette"}


def acc_vs_k(
    rows: Sequence[dict],
    path: Path,
    title: str = "",
    score: str = "acc",
    group: str = "activation",
) -> Path:
    """Bar chart: final ACC (or, without labels, silhouette) per k, one bar per value of the
    rows' `group` field (activation: the papers' k × activation figure); rows of one k and
    group (seeds) are averaged, with their sd as an error bar and their count under the
    mean, so a bar of one seed is not read as a bar of three."""
    name = SCORE_NAMES[score]
    ok = [
        r
        for r in rows
        if r.get("status") == "ok" and r.get("k") is not None and r.get(score) is not None
    ]
    ks = sorted({int(r["k"]) for r in ok})
    groups = sorted({str(r.get(group)) for r in ok})
    width = 0.8 / max(len(groups), 1)
    fig, ax = plt.subplots(figsize=(1.2 * max(len(ks), 2) + 2.5, 3.8))
    stats = {label: bar_stats(ok, ks, group, label, score) for label in groups}
    several = any(n > 1 for _, _, counts in stats.values() for n in counts)
    for g, label in enumerate(groups):
        means, sds, counts = stats[label]
        xs = np.arange(len(ks)) + (g - (len(groups) - 1) / 2) * width
        ax.bar(xs, means, width, label=label, yerr=sds if several else None, capsize=3)
        for x, m, sd, n in zip(xs, means, sds, counts, strict=True):
            if n:  # above the error bar, where there is one
                text = f"{m:.3f}" + (f"\nn={n}" if several else "")
                top = m + (0 if np.isnan(sd) else sd)
                ax.text(x, top, text, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(ks)), [f"k={k}" for k in ks])
    ax.set_ylabel(name)
    if score == "acc":
        ax.set_ylim(0, 1.15)  # headroom for the labels above the bars
        ax.set_yticks(np.linspace(0, 1, 6))
    ax.legend(title=group, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.set_title(title or f"final {name} per k and {group}")
    return _save(fig, path)


def bar_stats(
    rows: Sequence[dict], ks: Sequence[int], group: str, label: str, score: str
) -> tuple[list[float], list[float], list[int]]:
    """Per k: the mean, sd (nan for one value: no error bar) and count of `score` over the
    rows of one group value (nan and 0 where none ran)."""
    means, sds, counts = [], [], []
    for k in ks:
        vals = [r[score] for r in rows if int(r["k"]) == k and str(r.get(group)) == label]
        means.append(float(np.mean(vals)) if vals else np.nan)
        sds.append(float(np.std(vals, ddof=1)) if len(vals) > 1 else np.nan)
        counts.append(len(vals))
    return means, sds, counts


def acc_vs_epoch(
    runs: Sequence[tuple[str, Sequence[dict]]], path: Path, title: str = "", score: str = "acc"
) -> Path:
    """ACC (or silhouette) per epoch, one line per job: runs = [(label, history), …]."""
    name = SCORE_NAMES[score]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, history in runs:
        history = [h for h in history if h.get(score) is not None]
        if score == "silhouette" and history:
            # one space per line, the one most of the job's scores were taken in (a manifold's
            # silhouette is higher by its packing: joined to the codes' it drew jumps that did
            # not happen; manifold=umap goes through UMAP at the last epoch only)
            in_manifold = sum(bool(h.get("manifold")) for h in history)
            space = in_manifold > len(history) - in_manifold
            history = [h for h in history if bool(h.get("manifold")) == space]
        ax.plot([h["epoch"] for h in history], [h[score] for h in history], "o-", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(name)
    if score == "acc":
        ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title or f"{name} per epoch")
    return _save(fig, path)


def image_grid(images: Sequence[tuple[str, Path]], path: Path, cols: int = 3) -> Path:
    """Saved PNGs side by side (e.g. every job's latent map), each under its label."""
    n = len(images)
    cols = max(1, min(cols, n))
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (label, png) in zip(axes.flat, images):
        ax.imshow(plt.imread(png))
        ax.set_title(label, fontsize=9)
    return _save(fig, path)
