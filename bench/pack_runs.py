"""Pack reproduction runs to carry them off a lent machine: `python bench/pack_runs.py RUNS OUT`.

Everything of the runs but checkpoints and the large per-image outputs (codes, predictions,
the fitted clusterer: the checkpoint remakes them), plus the last checkpoint of every
pretraining (the settings continue it) and of every unfinished run (to continue it), as
OUT/runs.tar.gz.NN parts of at most 15 MB (the device tool brings back files of up to
16 MB). Unpack here from the repository root: `cat runs.tar.gz.* | tar xz`.
"""

from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path

PART = 15 * 2**20
LARGE = {"codes.npy", "predictions.csv", "clusterer.joblib", "running.pid"}  # + a lock


def wanted(path: Path) -> bool:
    if path.name in LARGE:
        return False
    if path.suffix != ".ckpt":
        return True
    if path.name != "last.ckpt" or not path.exists():
        return False
    run_dir = path.parent.parent
    return run_dir.parent.name == "pretrain" or not (run_dir / "metrics.json").exists()


def pack(runs: Path, out: Path) -> list[Path]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(runs.rglob("*")):
            if path.is_file() and wanted(path):
                tar.add(path.resolve(), arcname=str(path))  # a link's target, under its name
    data = buf.getvalue()
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for i in range(0, len(data), PART):
        parts.append(out / f"runs.tar.gz.{i // PART:02d}")
        parts[-1].write_bytes(data[i : i + PART])
    print(f"packed {len(data) / 2**20:.1f} MB of {runs} into {len(parts)} part(s) in {out}")
    return parts


if __name__ == "__main__":
    pack(Path(sys.argv[1]), Path(sys.argv[2]))
