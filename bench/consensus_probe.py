"""Does a consensus of several UMAP + GMM reads of one model beat a single read?

A read of a checkpoint through UMAP + GMM is a draw: UMAP's and the GMM's seed move ACC by
up to 0.046 on one model (RESULTS.md, "N2D's dense autoencoder"). This probe takes a run
folder's `codes.npy`, reads it R times (seeds 0..R-1, the product's UMAP and GMM classes and
settings), and combines the draws two label-free ways:

- the medoid draw: the one with the highest mean NMI to the other draws;
- a vote: every draw relabelled onto the medoid's clusters (Hungarian), then each image's
  most frequent cluster.

Labels (the folder's `predictions.csv`) only score. Writes a JSON summary beside stdout.

    python bench/consensus_probe.py results/runs/augment/fashion_test-affine-avx2-s0-umap \
        --draws 8 --out results/consensus_probe.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import normalized_mutual_info_score

from deepcluster import machine
from deepcluster.clustering.gmm import GMM
from deepcluster.clustering.manifold import UMAPManifold, cache_umap_compilation
from deepcluster.clustering.metrics import align_labels, cluster_accuracy


def vote(draws: list[np.ndarray], reference: np.ndarray, k: int) -> np.ndarray:
    """Each image's most frequent cluster once every draw speaks the reference's labels (the
    reference is one of the draws; a tie goes to the lowest cluster id)."""
    aligned = np.stack([align_labels(reference, d) for d in draws])  # (R, N)
    counts = np.stack([(aligned == c).sum(0) for c in range(k)])  # (k, N)
    return counts.argmax(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run folder with codes.npy and predictions.csv")
    parser.add_argument("--draws", type=int, default=8)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--gmm-n-init", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    codes = np.load(args.run / "codes.npy")
    y = pd.read_csv(args.run / "predictions.csv")["label"].to_numpy()
    cache_umap_compilation()
    draws, seconds = [], []
    for seed in range(args.draws):
        start = time.perf_counter()
        embedding = UMAPManifold(n_components=args.k, seed=seed)(codes)
        draws.append(GMM(n_init=args.gmm_n_init, seed=seed)(embedding, args.k).labels)
        seconds.append(time.perf_counter() - start)
        print(f"draw {seed}: ACC {cluster_accuracy(y, draws[-1]):.4f} ({seconds[-1]:.0f} s)")

    agree = np.array(
        [[normalized_mutual_info_score(a, b) for b in draws] for a in draws], dtype=np.float64
    )
    np.fill_diagonal(agree, np.nan)
    medoid = int(np.nanargmax(np.nanmean(agree, axis=1)))
    voted = vote(draws, draws[medoid], args.k)
    accs = [cluster_accuracy(y, d) for d in draws]
    nmis = [normalized_mutual_info_score(y, d) for d in draws]
    summary = {
        "run": str(args.run),
        "draws": args.draws,
        "draw_acc": [round(a, 4) for a in accs],
        "draw_acc_mean": round(float(np.mean(accs)), 4),
        "draw_acc_sd": round(float(np.std(accs, ddof=1)), 4),
        "draw_nmi_mean": round(float(np.mean(nmis)), 4),
        "agreement_nmi_mean": round(float(np.nanmean(agree)), 4),
        "medoid": medoid,
        "medoid_acc": round(accs[medoid], 4),
        "vote_acc": round(cluster_accuracy(y, voted), 4),
        "vote_nmi": round(float(normalized_mutual_info_score(y, voted)), 4),
        "seconds_per_draw": round(float(np.mean(seconds)), 1),
        "machine": machine.label(),
        "commit": machine.commit(),
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
