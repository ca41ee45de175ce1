"""Data for the own-images measurements of issue 13, and the colour score of the tinted run.

    python bench/own_images_study.py export DIR   # DIR/fashion_test (PNG per class folder),
                                                   # DIR/tinted_mnist_test (32×32 RGB PNGs)
    python bench/own_images_study.py colour RUN DIR  # ACC of a tinted run against digits and
                                                      # against colours → RUN/colour_scores.json

Fashion-MNIST's 10 000 test images are written losslessly, one folder per class, so a
`dataset=folder` run sees the same pixels as `dataset=fashion_mnist dataset.split=test`
(in another order). The tinted set multiplies each MNIST test digit by one of 10 colours drawn
at random (seed 0), on black: a digit label and a colour label per image, independent.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.metrics import normalized_mutual_info_score

from deepcluster.clustering import cluster_accuracy
from deepcluster.data import FashionMNISTDataModule, MNISTDataModule

COLOURS = (
    np.array(
        [
            [230, 25, 75],
            [60, 180, 75],
            [255, 225, 25],
            [0, 130, 200],
            [245, 130, 48],
            [145, 30, 180],
            [70, 240, 240],
            [240, 50, 230],
            [210, 245, 60],
            [250, 190, 212],
        ],
        dtype=np.float32,
    )
    / 255
)
DATA = str(Path(__file__).resolve().parents[2] / "shared" / "data")


def export(out: Path) -> None:
    fashion = FashionMNISTDataModule(root=DATA, split="test", download=False).prepare()
    for i, (img, y) in enumerate(zip(fashion.images[:, 0].numpy(), fashion.labels)):
        path = out / "fashion_test" / f"class_{y}" / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path)
    mnist = MNISTDataModule(root=DATA, split="test", download=False).prepare()
    rng = np.random.default_rng(0)
    colour = rng.integers(0, len(COLOURS), len(mnist.labels))
    rows = []
    for i, (img, y, c) in enumerate(zip(mnist.images[:, 0].numpy(), mnist.labels, colour)):
        grey = np.asarray(Image.fromarray(img).resize((32, 32), Image.Resampling.BILINEAR))
        rgb = (grey[..., None].astype(np.float32) * COLOURS[c]).round().astype(np.uint8)
        rel = Path(f"digit_{y}") / f"{i:05d}.png"
        (out / "tinted_mnist_test" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(out / "tinted_mnist_test" / rel)
        rows.append({"path": str(rel), "digit": int(y), "colour": int(c)})
    pd.DataFrame(rows).to_csv(out / "tinted_labels.csv", index=False)
    print(f"wrote {out / 'fashion_test'} and {out / 'tinted_mnist_test'}")


def colour(run: Path, data: Path) -> dict:
    """The run's clusters, and k-means on the same pixels (the run's baseline: seed 0,
    10 initialisations), scored against the digits and against the colours."""
    from deepcluster.clustering.kmeans import kmeans
    from deepcluster.data import FolderDataModule

    pred = pd.read_csv(run / "predictions.csv")
    truth = pd.read_csv(data / "tinted_labels.csv").set_index("path").loc[pred["path"]]
    dm = FolderDataModule(path=str(data / "tinted_mnist_test"), image_size=32, channels=3)
    pixels = dm.prepare().images.reshape(len(dm.images), -1).float().div(255).numpy()
    assert list(dm.paths) == list(pred["path"])
    partitions = {"run": pred["cluster"].to_numpy(), "pixels": kmeans(pixels, 10, seed=0).labels}
    scores = {}
    for name, labels in partitions.items():
        for what in ("digit", "colour"):
            y = truth[what].to_numpy()
            scores[f"{name}_vs_{what}"] = {
                "acc": cluster_accuracy(y, labels),
                "nmi": float(normalized_mutual_info_score(y, labels)),
            }
    (run / "colour_scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    print(json.dumps(scores))
    return scores


if __name__ == "__main__":
    if sys.argv[1] == "export":
        export(Path(sys.argv[2]))
    else:
        colour(Path(sys.argv[2]), Path(sys.argv[3]))
