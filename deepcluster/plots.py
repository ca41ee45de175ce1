"""Figures: latent 2-D map, ACC-vs-epoch curve, confusion matrix, Ward dendrogram (PNG)."""

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


def latent_map(z: np.ndarray, labels: np.ndarray, path: Path, title: str = "") -> Path:
    """Scatter of the codes (PCA to 2-D) coloured by cluster."""
    xy, idx = project_2d(z)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    k = int(labels.max()) + 1
    ax.scatter(xy[:, 0], xy[:, 1], c=labels[idx], cmap="tab20" if k > 10 else "tab10", s=3,
               alpha=0.7, linewidths=0)  # fmt: skip
    ax.set_title(title or "codes (PCA), coloured by cluster")
    ax.set_xticks([])
    ax.set_yticks([])
    return _save(fig, path)


def accuracy_curve(history: Sequence[dict], path: Path, title: str = "") -> Path:
    """ACC and NMI per epoch; refinement epochs shaded."""
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(epochs, [h["acc"] for h in history], "o-", label="ACC")
    ax.plot(epochs, [h["nmi"] for h in history], "s--", label="NMI")
    refine = [h["epoch"] for h in history if h.get("phase") == "refine"]
    if refine:
        ax.axvspan(min(refine) - 0.5, max(refine) + 0.5, color="0.9", label="refinement")
    ax.set_xlabel("epoch")
    ax.set_ylabel("score")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title or "clustering quality per epoch")
    return _save(fig, path)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, path: Path, title: str = "") -> Path:
    """Classes × clusters counts."""
    table = contingency_matrix(y_true, y_pred)
    fig, ax = plt.subplots(figsize=(0.45 * table.shape[1] + 2, 0.45 * table.shape[0] + 1.5))
    ax.imshow(table, cmap="Blues")
    ax.set_xlabel("cluster")
    ax.set_ylabel("class")
    ax.set_xticks(range(table.shape[1]))
    ax.set_yticks(range(table.shape[0]))
    ax.set_title(title or "classes × clusters")
    return _save(fig, path)


def dendrogram(linkage: np.ndarray, k: int, path: Path, title: str = "", top: int = 30) -> Path:
    """The top `top` merges of a Ward tree; the dashed line cuts it into k clusters."""
    from scipy.cluster.hierarchy import dendrogram as _dendrogram

    fig, ax = plt.subplots(figsize=(7, 4))
    _dendrogram(linkage, truncate_mode="lastp", p=top, ax=ax, show_leaf_counts=True,
                leaf_rotation=90, leaf_font_size=7, color_threshold=0)  # fmt: skip
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
def acc_vs_k(rows: Sequence[dict], path: Path, title: str = "") -> Path:
    """Bar chart: final ACC per k, one bar per activation (the papers' k × activation figure)."""
    ok = [r for r in rows if r.get("status") == "ok" and r.get("k") is not None]
    ks = sorted({int(r["k"]) for r in ok})
    groups = sorted({str(r.get("activation")) for r in ok})
    width = 0.8 / max(len(groups), 1)
    fig, ax = plt.subplots(figsize=(1.2 * max(len(ks), 2) + 2.5, 3.8))
    for g, group in enumerate(groups):
        accs = []
        for k in ks:
            vals = [r["acc"] for r in ok if int(r["k"]) == k and str(r.get("activation")) == group]
            accs.append(np.mean(vals) if vals else np.nan)
        xs = np.arange(len(ks)) + (g - (len(groups) - 1) / 2) * width
        bars = ax.bar(xs, accs, width, label=group)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(range(len(ks)), [f"k={k}" for k in ks])
    ax.set_ylabel("ACC")
    ax.set_ylim(0, 1.15)  # headroom for the legend above the bars
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.legend(title="activation", loc="upper center", ncol=max(len(groups), 1), fontsize=8)
    ax.set_title(title or "final ACC per k and activation")
    return _save(fig, path)


def acc_vs_epoch(runs: Sequence[tuple[str, Sequence[dict]]], path: Path, title: str = "") -> Path:
    """ACC per epoch, one line per job: runs = [(label, history), …]."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, history in runs:
        ax.plot([h["epoch"] for h in history], [h["acc"] for h in history], "o-", ms=3,
                label=label)  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel("ACC")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title or "ACC per epoch")
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
