"""Plan and run a reproduction: pretrainings once, every setting continued from its own, each
run a `python -m deepcluster …` subprocess in a fixed folder, so a stopped reproduction picks
up where it was: a finished run (metrics.json) is skipped, an interrupted one continues from
its last checkpoint."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from deepcluster.reproduce.settings import SETTINGS, Setting

# seconds per image per epoch of reconstruction training, alone on 2 cores (RESULTS: 26-27 s
# a MNIST-full epoch of the CAE on the Xeon and the EPYC; the deep CAE at the published width
# [32, 64, 128]: 17 s a MNIST-test epoch on the Xeon, B/mnist_test seed 0, ≈ 120 s for 70 000
# images). One thread beside other work takes about twice as long.
SECONDS_PER_IMAGE_EPOCH = {
    "cpu": {"cae": 27 / 70_000, "cae_deep": 17 / 10_000},
    "gpu": {"cae": 1 / 70_000, "cae_deep": 2 / 70_000},
}  # goal, not measured
# the deep CAE's step at another width than the published [32, 64, 128], on a CPU: the _quick
# method-B files' [16, 32, 64] costs a third (3.1 × faster on the Xeon). On a GPU a step this
# small is launch-bound: widths are priced alike there (not measured)
CPU_SPEEDUP_BY_WIDTH = {(16, 32, 64): 3.1}
N_IMAGES = {("mnist", "all"): 70_000, ("mnist", "test"): 10_000, ("fashion_mnist", "all"): 70_000}
AFTER_S = {
    "kmeans": 300,
    "ward": 90,
    "gmm": 180,
}  # refinement / one Ward / UMAP + GMM, on 2 CPU cores
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
COMMON = ["logger=csv", "trainer.enable_progress_bar=false"]
# overrides that move files, not results
HARMLESS = ("data.root=", "data.download=", "trainer=gpu")
# overrides of a run's command that say where it ran from, not what it ran
PLACING = ("ckpt_path=", "hydra.run.dir=", "hydra.job.chdir=")


def seconds_per_image_epoch(device: str, model: str, experiment: str) -> float:
    """A reconstruction epoch's price per image, at the width the experiment file sets."""
    rate = SECONDS_PER_IMAGE_EPOCH[device][model]
    if device != "cpu" or model != "cae_deep":
        return rate
    channels = (composed_model((f"experiment={experiment}",)) or {}).get("channels") or ()
    return rate / CPU_SPEEDUP_BY_WIDTH.get(tuple(channels), 1.0)


def _placed(overrides: list[str]) -> list[str]:
    """The overrides that say what a run computes (HARMLESS ones left out)."""
    return [o for o in overrides if not o.startswith(HARMLESS)]


def overrides_run(run_dir: Path) -> list[str]:
    """The overrides a run's last process was started with, from its run_info.json (committed,
    unlike plan.json): a fresh clone still tells a changed run from a published one."""
    info = run_dir / "run_info.json"
    line = (json.loads(info.read_text()).get("command") or "") if info.is_file() else ""
    try:
        words = shlex.split(line)[1:]  # without the program
    except ValueError:  # a quote in a command written before commands were shell-quoted
        words = line.split()[1:]
    return [w for w in words if "=" in w and not w.startswith(PLACING) and w not in COMMON]


@cache
def composed_model(overrides: tuple[str, ...]) -> dict | None:
    """The model section (resolved) that `python -m deepcluster <overrides>` builds with the
    experiment files as they are now; None if they do not compose."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from deepcluster.config import register

    register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=list(overrides))
        return OmegaConf.to_container(cfg.model, resolve=True)
    except Exception:  # not ours to judge here: the run itself will say what is wrong
        return None
    finally:
        GlobalHydra.instance().clear()


def recorded_model(run_dir: Path) -> dict | None:
    """The model a folder's run built: its run_info.json (committed), else the config.yaml
    it wrote (local); None: not recorded (a run from before run_info.json kept it)."""
    model = _read_json(run_dir / "run_info.json").get("model_config")
    if model is None and (run_dir / "config.yaml").is_file():
        from omegaconf import OmegaConf

        try:
            model = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml").get("model"))
        except Exception:  # unreadable: as if not recorded
            model = None
    return model if isinstance(model, dict) else None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@dataclass
class Job:
    run_dir: Path
    overrides: list[str]
    estimate_s: float  # the whole run's, from nothing
    after: list[Job] = field(default_factory=list)  # runs that continue this one
    epochs: int = 0  # a pretraining's reconstruction epochs (0: a setting's run)

    @property
    def finished(self) -> bool:
        return (self.run_dir / "metrics.json").is_file()

    @property
    def done(self) -> bool:
        """Finished as this run (not with other overrides: claim() then says so), and, for a
        pretraining, still of use to the runs that continue it: a fresh clone holds a
        finished pretraining's metrics.json but never its checkpoint."""
        if not self.finished or not self.same_run():
            return False
        return self.checkpoint.is_file() or not any(child.needs_parent for child in self.after)

    @property
    def needs_parent(self) -> bool:
        """Still to start from its pretraining's checkpoint (not done, none of its own, and
        not a folder holding another run, which claim() refuses)."""
        return not self.done and not self.checkpoint.is_file() and self.same_run()

    def same_run(self) -> bool:
        """Was the folder's run started as this one (or not recorded)? Overrides compare as a
        set: `-- a=1 b=2` and `-- b=2 a=1` are one command. Without plan.json (a fresh
        clone), the command in run_info.json decides, as it does for the tables: a committed
        run with overrides of its own is not this run. A run whose network is not the one the
        experiment file builds now (the file changed since) is not this run either."""
        if self.model_changes():
            return False
        before = self.started_as()
        if before is None:
            return not self.extra_overrides()
        if self.finished:  # where the data was read from does not change a finished result
            return set(_placed(before)) == set(_placed(self.identity))
        return set(before) == set(self.identity)  # other data must not continue it

    def extra_overrides(self) -> list[str]:
        """The overrides the folder's run was started with beyond this run's own."""
        started = self.started_as() or overrides_run(self.run_dir)
        extra = [o for o in started if o not in self.identity and not o.startswith(HARMLESS)]
        return extra + self.model_changes()

    def model_changes(self) -> list[str]:
        """How the network the folder's run built differs from the one this run builds now
        (`model.channels=[16, 32, 64]`): keys both record, so a model option added since is
        no difference. Empty when the folder recorded no model."""
        before = recorded_model(self.run_dir)
        if before is None:
            return []
        # the seed and k never change the network: one composition serves every seed
        now = composed_model(tuple(o for o in self.identity if not o.startswith(("seed=", "k="))))
        if now is None:
            return []
        return [
            f"model.{key}={before[key]} (the experiment file now builds {now[key]})"
            for key in sorted(before.keys() & now.keys())
            if before[key] != now[key]
        ]

    @property
    def lock_file(self) -> Path:
        return self.run_dir / "running.pid"

    def held_by(self) -> int | None:
        """The process training this folder now for another reproduction, if any. The lock
        names the reproduction and its training (which lives on if the reproduction alone is
        killed): the folder is held while either lives."""
        try:
            pids = [int(word) for word in self.lock_file.read_text().split()]
        except (OSError, ValueError):
            return None
        for pid in pids:
            if pid == os.getpid():
                return None  # ours
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue  # ended: a stale lock unless another of its processes lives
            except PermissionError:
                pass  # alive, another user's
            return pid
        return None

    @property
    def plan_file(self) -> Path:
        return self.run_dir / "plan.json"

    def started_as(self) -> list[str] | None:
        """The identity the folder's run was started with (plan.json); None: not recorded."""
        return json.loads(self.plan_file.read_text()) if self.plan_file.is_file() else None

    def remaining_s(self) -> float:
        """The estimate less what an interrupted pretraining already trained."""
        if not (self.epochs and self.checkpoint.is_file()):
            return self.estimate_s
        try:
            import torch

            trained = torch.load(self.checkpoint, map_location="cpu", weights_only=True)["epoch"]
        except Exception:  # unreadable (being written): assume nothing done
            return self.estimate_s
        return self.estimate_s * max(0.0, 1 - (trained + 1) / self.epochs)

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "checkpoints" / "last.ckpt"

    @property
    def identity(self) -> list[str]:
        """What makes this run this run: its overrides but the device and the logging (a run
        may start on a GPU and be continued on a CPU)."""
        return [o for o in self.overrides if o not in COMMON and o != "trainer=gpu"]

    def claim(self) -> str | None:
        """Before a start: None if the folder is new or holds this same run (then it is
        marked so: plan.json), else why the run cannot go on there."""
        before = self.started_as()
        if not self.same_run():
            extra = set(self.extra_overrides())
            differ = extra if before is None else set(before) ^ set(self.identity)
            differ |= set(self.model_changes())
            changed = ", ".join(sorted(differ))
            return (
                f"{self.run_dir} holds a run started with other settings ({changed}): "
                "continuing it would mix the two. Use another --root, or move that folder away"
            )
        holder = self.held_by()
        if holder is not None:
            return (
                f"{self.run_dir} is being trained by another reproduction (process {holder}): "
                "two would write the same checkpoints. Wait for it, or stop it first"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if before is None or self.finished:  # new, or finished and trained again from nothing
            self.plan_file.write_text(json.dumps(self.identity) + "\n")
        self.lock_file.write_text(f"{os.getpid()}\n")
        return None

    def release(self) -> None:
        if self.held_by() is None:  # ours (or stale)
            self.lock_file.unlink(missing_ok=True)


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
                pre_exp = pretrain_experiment(s, quick)
                pretrains[key] = Job(
                    root / "pretrain" / key,
                    [
                        f"experiment={pre_exp}",
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
                    epochs * n * seconds_per_image_epoch(device, s.model, pre_exp),
                    epochs=epochs,
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


def pretrain_experiment(setting: Setting, quick: bool) -> str:
    """The experiment a pretraining runs under: that of the first published setting sharing
    it, whichever settings --only chose. Experiments sharing a pretraining differ only in what
    comes after it (and in how it is monitored), so one folder is the same run under any
    selection: an interrupted `--only N2D/fashion` goes on under `--only 'A/fashion/*'`."""
    key = setting.pretrain_key(0, quick)
    first = next(s for s in SETTINGS if s.pretrain_key(0, quick) == key)
    return first.experiment + ("_quick" if quick else "")


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


def execute(jobs: list[Job], log=print, at_once: int = 1, poll_s: float = 2.0) -> list[Job]:
    """Run what is not done yet, up to `at_once` runs side by side (on a GPU, small runs share
    the device well: one alone leaves it idle between tiny kernels); a run starts once its
    pretraining finished, in the plan's order. Returns the jobs that failed."""
    parent_of, failed = parents(jobs), []
    pending = [j for j in jobs if not j.done]
    total, started = len(pending), 0
    log(f"{len(jobs) - total} of {len(jobs)} runs already finished")
    unfinished = {id(j) for j in pending}  # still to run or running
    running: dict[subprocess.Popen, tuple[Job, float, object, Path, int]] = {}
    while pending or running:
        for job in list(pending):
            if len(running) >= at_once:
                break
            parent = parent_of.get(id(job))
            if parent is not None and id(parent) in unfinished:
                continue  # its pretraining is still to come
            pending.remove(job)
            started += 1
            if job.done:  # finished since the plan was made (another process, a repeated job)
                log(f"[{started}/{total}] done already: {job.run_dir}")
                unfinished.discard(id(job))
                continue
            if parent is not None and (not parent.finished or any(parent is f for f in failed)):
                log(
                    f"[{started}/{total}] skip {job.run_dir}: its pretraining failed or was refused"
                )
                unfinished.discard(id(job))
                failed.append(job)
                continue
            refused = job.claim()
            if refused is not None:
                log(f"[{started}/{total}] skip: {refused}")
                unfinished.discard(id(job))
                failed.append(job)
                continue
            if job.finished:  # a pretraining without its checkpoint (see Job.done)
                waiting = sum(child.needs_parent for child in job.after)
                log(
                    f"[{started}/{total}] {job.run_dir} finished elsewhere and its checkpoint "
                    f"is not here; {waiting} runs continue it: training it again (its "
                    "earlier outputs move to previous/, where the tables still find them "
                    "for the runs that continued it)"
                )
            cmd = command(job, parent)
            log(f"[{started}/{total}] {shlex.join(cmd[2:])}")
            log_path = job.run_dir / "reproduce.log"  # appended to: every attempt's output
            offset = log_path.stat().st_size if log_path.exists() else 0
            fh = log_path.open("a")
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=os.environ.copy())
            job.lock_file.write_text(f"{os.getpid()}\n{proc.pid}\n")
            running[proc] = (job, time.time(), fh, log_path, offset)
        finished = [proc for proc in running if proc.poll() is not None]
        if not finished:
            time.sleep(poll_s)
            continue
        for proc in finished:
            job, t0, fh, log_path, offset = running.pop(proc)
            fh.close()
            job.release()
            unfinished.discard(id(job))
            ok = proc.returncode == 0 and job.finished  # a run ends with its metrics.json
            log(
                f"    → {'ok' if ok else f'failed (rc {proc.returncode}), see'} {job.run_dir} "
                f"({time.time() - t0:.0f} s)"
            )
            if not ok:
                reason = why_failed(log_path, offset, proc.returncode)
                if proc.returncode == 0:
                    reason = f"it ended without its metrics.json (last line: {reason})"
                log(f"      {reason}")
                failed.append(job)
    return failed


def why_failed(log_path: Path, offset: int = 0, returncode: int = 1) -> str:
    """A failed run's reason, from what this attempt wrote to its log (from `offset`): a
    signal that killed it, else its `error:` line (our errors print one), else its last line
    (a traceback's exception), so the plan's output says why without opening the folder."""
    if returncode < 0:
        return f"killed by signal {-returncode}"
    with log_path.open("rb") as fh:
        fh.seek(offset)
        text = fh.read().decode(errors="replace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    reason = errors[-1] if errors else (lines[-1] if lines else "(it wrote nothing)")
    return reason if len(reason) <= 400 else reason[:400] + " …"
