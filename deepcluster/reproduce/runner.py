"""Plan and run a reproduction: pretrainings once, every setting continued from its own, each
run a `python -m deepcluster …` subprocess in a fixed folder, so a stopped reproduction picks
up where it was: a finished run (metrics.json) is skipped, an interrupted one continues from
its last checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from deepcluster.reproduce.settings import Setting

# seconds per image per epoch of reconstruction training, measured here (2 Xeon cores, RESULTS)
SECONDS_PER_IMAGE_EPOCH = {
    "cpu": {"cae": 26 / 70_000, "cae_deep": 45 / 70_000},
    "gpu": {"cae": 1 / 70_000, "cae_deep": 2 / 70_000},
}  # goal, not measured
N_IMAGES = {("mnist", "all"): 70_000, ("mnist", "test"): 10_000, ("fashion_mnist", "all"): 70_000}
AFTER_S = {
    "kmeans": 300,
    "ward": 90,
    "gmm": 180,
}  # refinement / one Ward / UMAP + GMM, on 2 CPU cores
COMMON = ["logger=csv", "trainer.enable_progress_bar=false"]


@dataclass
class Job:
    run_dir: Path
    overrides: list[str]
    estimate_s: float
    after: list[Job] = field(default_factory=list)  # runs that continue this one

    @property
    def done(self) -> bool:
        return (self.run_dir / "metrics.json").is_file()

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "checkpoints" / "last.ckpt"


def plan(
    settings: list[Setting],
    seeds: list[int],
    root: Path,
    quick: bool,
    device: str,
    extra: list[str],
) -> list[Job]:
    """Jobs in the order to run them: seed 0 of every setting first, then the next seed."""
    jobs, pretrains = [], {}
    accelerator = ["trainer=gpu"] if device == "gpu" else []
    for seed in seeds:
        for s in settings:
            exp = s.experiment + ("_quick" if quick else "")
            epochs = s.pretrain_epochs(quick)
            key = s.pretrain_key(seed, quick)
            n = N_IMAGES[(s.dataset, s.split)]
            if key not in pretrains:
                pretrains[key] = Job(
                    root / "pretrain" / key,
                    [
                        f"experiment={exp}",
                        f"activation={s.activation}",
                        f"seed={seed}",
                        "refine=none",
                        "clusterer=kmeans",
                        "manifold=none",
                        f"trainer.max_epochs={epochs}",
                        *accelerator,
                        *COMMON,
                        *extra,
                    ],
                    epochs * n * SECONDS_PER_IMAGE_EPOCH[device][s.model],
                )
                jobs.append(pretrains[key])
            run = Job(
                root / s.run_key(seed, quick),
                [
                    f"experiment={exp}",
                    f"activation={s.activation}",
                    f"k={s.k}",
                    f"seed={seed}",
                    *([] if s.refine else ["trainer.max_epochs=0"]),
                    *accelerator,
                    *COMMON,
                    *extra,
                ],
                AFTER_S[s.clusterer] * n / 70_000,
            )
            pretrains[key].after.append(run)
            jobs.append(run)
    return jobs


def command(job: Job, parent: Job | None) -> list[str]:
    """The job's command now: its own checkpoint if it was interrupted, else its parent's."""
    resume = []
    if job.checkpoint.is_file():
        resume = [f"ckpt_path={job.checkpoint}"]
    elif parent is not None:
        resume = [f"ckpt_path={parent.checkpoint}"]
    return [
        sys.executable,
        "-m",
        "deepcluster",
        *job.overrides,
        *resume,
        f"hydra.run.dir={job.run_dir}",
    ]


def parents(jobs: list[Job]) -> dict[int, Job]:
    return {id(child): job for job in jobs for child in job.after}


def execute(jobs: list[Job], log=print) -> list[Job]:
    """Run what is not done yet; returns the jobs that failed."""
    parent_of, failed = parents(jobs), []
    todo = [j for j in jobs if not j.done]
    log(f"{len(jobs) - len(todo)} of {len(jobs)} runs already finished")
    for i, job in enumerate(todo, 1):
        parent = parent_of.get(id(job))
        if parent is not None and not parent.done:
            log(f"[{i}/{len(todo)}] skip {job.run_dir}: its pretraining {parent.run_dir} failed")
            failed.append(job)
            continue
        cmd = command(job, parent)
        log(f"[{i}/{len(todo)}] {' '.join(cmd[2:])}")
        job.run_dir.mkdir(parents=True, exist_ok=True)
        started = time.time()
        with (job.run_dir / "reproduce.log").open("a") as fh:
            rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, env=os.environ.copy())
        log(
            f"    → {'ok' if rc == 0 else f'failed (rc {rc}), see'} {job.run_dir} "
            f"({time.time() - started:.0f} s)"
        )
        if rc != 0:
            failed.append(job)
    return failed
