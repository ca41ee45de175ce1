"""Assign new images to the clusters of a finished run.

    python -m deepcluster.predict RUN_DIR INPUT… [--out FILE]     (or: deepcluster-predict …)

INPUT: image files (PNG, JPEG, BMP, TIFF) or folders of them, whatever the run trained on
(a run on arrays, digits or MNIST takes its new images as image files too). Each image gets
the run's preprocessing (grey or RGB, resized to its image_size), its code from the run's
encoder, and the cluster of the run's fitted clusterer: the nearest centre for k-means (and
Ward), the most probable component for a GMM, after UMAP's `transform` when the run used a
manifold.
Writes `path,cluster,code_0,…` as CSV to FILE (default: standard output); a file that cannot
be read is skipped with a warning naming it, as training skips it. For k-means and
GMM runs the training images get exactly the run's own clusters; Ward's tree and UMAP's
embedding cannot place new points exactly as they placed the training ones, so there a few
training images may differ.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from deepcluster.errors import DeepClusterError


class PredictError(DeepClusterError):
    pass


def collect_inputs(inputs: list[str]) -> list[Path]:
    from deepcluster.data.folder import image_files

    files: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found = image_files(path)
            if not found:
                raise PredictError(f"{path}: no image files (PNG, JPEG, BMP, TIFF) in it")
            files += found
        elif path.is_file() and path.suffix.lower() in (".npy", ".npz"):
            raise PredictError(
                f"{path}: predict reads image files, not arrays; save each image as a PNG "
                "(e.g. PIL.Image.fromarray(x[i]).save(f'new/{i}.png')) and give the folder"
            )
        elif path.is_file():
            files.append(path)
        else:
            raise PredictError(f"{path}: no such file or folder")
    return files


def _refuse_a_folder_of_runs(folder: Path) -> None:
    """A sweep folder (multirun/<date>/<time>) or one command's folder (outputs/<command>)
    holds runs, not one: name those that finished, so the user can pick."""
    finished = sorted(
        (p.parent for p in folder.glob("*/metrics.json") if (p.parent / "config.yaml").is_file()),
        key=lambda p: p.stat().st_mtime,
    )
    if finished:
        names = ", ".join(p.name for p in finished[-5:])
        more = f" (the newest 5 of {len(finished)})" if len(finished) > 5 else ""
        raise PredictError(
            f"{folder} holds {len(finished)} finished run(s), not one run: give one of them, "
            f"e.g. {finished[-1]} (finished: {names}{more}; a sweep's table: "
            f"python -m deepcluster.report {folder})"
        )


class Predictor:
    """A finished run, loaded: encoder, clusterer (and manifold), preprocessing."""

    def __init__(self, run_dir: str | Path) -> None:
        import joblib
        import torch
        from omegaconf import OmegaConf

        from deepcluster.build import instantiate
        from deepcluster.models import DeepClusterModule

        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise PredictError(
                f"{self.run_dir}: no such folder; give a run's folder (the path its last "
                "printed line names, outputs/<overrides>/<date>_<time>)"
            )
        if (self.run_dir / "failed.json").is_file():  # a sweep job that failed
            error = json.loads((self.run_dir / "failed.json").read_text()).get("error", "?")
            raise PredictError(f"{self.run_dir} is a sweep job that failed: {error}")
        config, state = self.run_dir / "config.yaml", self.run_dir / "clusterer.joblib"
        if not config.is_file():
            _refuse_a_folder_of_runs(self.run_dir)
        for needed in (config, state):
            if not needed.is_file():
                raise PredictError(
                    f"{self.run_dir} is not a finished run folder: {needed.name} is missing"
                )
        if not (self.run_dir / "metrics.json").is_file():  # written last
            raise PredictError(
                f"{self.run_dir} holds no metrics.json: its run was stopped, failed or is still "
                "running, and its clusterer may not match its weights. Finish it first "
                "(the same command with ckpt_path=last)"
            )
        self.cfg = OmegaConf.load(config)
        ckpt = self.weights_file()
        self.module = DeepClusterModule(
            instantiate(self.cfg.model, "model"), embed_batch_size=int(self.cfg.embed_batch_size)
        )
        weights = torch.load(ckpt, map_location="cpu", weights_only=True)
        self.module.on_load_checkpoint(weights, continuing=False)  # any refine.method
        self.module.load_state_dict(weights["state_dict"])
        self.module.eval()
        self.state = joblib.load(state)
        self.image_size = int(self.cfg.dataset.image_size)
        self.channels = int(self.cfg.dataset.channels)
        self.white = self.cfg.dataset.get("white")  # a folder's 16-bit white, as trained
        self.background = self.cfg.dataset.get("background", "white")
        # a folder run read its files with PIL; any other run's images came as arrays
        self.as_folder = str(self.cfg.dataset.get("_target_", "")).endswith("FolderDataModule")

    def weights_file(self) -> Path:
        """The weights the run's clusters came from: a trained run's own last checkpoint, a
        cluster-only run's weights.ckpt. Never another run's checkpoint that may have moved on
        since (a continued pretraining) or stood in for weights moved away."""
        trained = int(self.cfg.trainer.max_epochs) > 0
        own = self.run_dir / ("checkpoints/last.ckpt" if trained else "weights.ckpt")
        if own.is_file():
            return own
        if not trained and self.cfg.get("ckpt_path"):  # a cluster-only run made before weights.ckpt
            named = Path(self.cfg.ckpt_path)
            if named.is_file():
                print(
                    f"warning: {self.run_dir} keeps no weights.ckpt (an older run): embedding "
                    f"with {named}, the checkpoint it named; if that run went on training "
                    "since, the clusters differ from the run's",
                    file=sys.stderr,
                )
                return named
        raise PredictError(
            f"{self.run_dir}: {own} is missing (moved or deleted?): predict needs the weights "
            "this run's clusters came from"
        )

    def read(self, files: list[Path]):
        """(images (N, C, H, W) uint8, the files they came from): unreadable files skipped,
        each named on standard error. Each image is brought to the run's size and channels as
        its training images were: a folder run's with PIL, as the folder was read; any other
        run's (arrays, digits, MNIST: images that came as arrays) at the file's own size, then
        through the datamodules' `conform` (torch's resize and luma give other pixels than
        PIL's once an image shrinks by 4× or more)."""
        import torch

        from deepcluster.data.base import conform
        from deepcluster.data.folder import read_images

        def warn(message: str) -> None:
            print(f"warning: {message}", file=sys.stderr)

        if self.as_folder:
            images, kept, _ = read_images(
                files, self.image_size, self.channels, warn, self.white, background=self.background
            )
        else:
            images, kept = [], []
            for f in files:  # one at a time: only the conformed image is kept
                native, ok, _ = read_images(
                    [f], None, 3, warn, self.white, background=self.background
                )
                if ok:
                    x = torch.as_tensor(native[0].copy())
                    x = x[:1] if bool((x == x[:1]).all()) else x  # a grey file: one channel
                    images.append(conform(x[None], self.image_size, self.channels)[0].numpy())
                    kept += ok
        if not kept:
            raise PredictError(f"none of the {len(files)} image files could be read")
        return torch.from_numpy(np.stack(images)), kept

    def __call__(self, images) -> tuple[np.ndarray, np.ndarray]:
        """images: (N, C, H, W) uint8 → (clusters (N,), codes (N, d))."""
        codes = self.module.embed(images).cpu().numpy()
        space = codes
        if self.state.get("manifold") is not None:
            from deepcluster.clustering.manifold import transform

            space = transform(self.state["manifold"], codes)
        return np.asarray(self.state["predictor"].predict(space), dtype=np.int64), codes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="deepcluster-predict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", help="a finished run's folder (holds clusterer.joblib)")
    parser.add_argument("inputs", nargs="+", help="image files or folders")
    parser.add_argument(
        "--out",
        default="-",
        help="CSV file to write, or a folder to write predictions.csv in (default: stdout)",
    )
    args = parser.parse_args(argv)
    if args.out != "-":
        out = Path(args.out).expanduser()
        if out.is_dir():
            out = out / "predictions.csv"
            args.out = str(out)
        elif not out.parent.is_dir():
            parser.error(f"--out {args.out}: its folder does not exist (create it first)")
        if out.name == "predictions.csv" and (out.parent / "clusterer.joblib").is_file():
            parser.error(
                f"--out {args.out}: that is a run's own predictions.csv (its training images' "
                f"clusters); write elsewhere, e.g. --out {out.parent / 'new_predictions.csv'}"
            )
    try:
        predictor = Predictor(args.run_dir)
        images, files = predictor.read(collect_inputs(args.inputs))
        clusters, codes = predictor(images)
    except DeepClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import pandas as pd

    from deepcluster.data.folder import text_path

    table = pd.DataFrame({"path": [text_path(f) for f in files], "cluster": clusters})
    for j in range(codes.shape[1]):
        table[f"code_{j}"] = codes[:, j]
    table.to_csv(sys.stdout if args.out == "-" else args.out, index=False)
    if args.out != "-":
        print(f"{len(files)} images → {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
