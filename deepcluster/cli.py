"""Command line: `deepcluster k=10 activation=sigmoid` (Hydra) → run(cfg) → metrics.

Exit status: 0 done; 2 the command was refused (bad input, by Hydra or by our checks), nothing
trained; 1 a crash, a run stopped during training (a NaN loss, a failed clustering step,
SIGTERM: the message, no traceback), or a sweep with failed jobs (SIGTERM stops a sweep).

What a sweep's optimiser sees: the final silhouette of the clustering (label-free, higher is
better; `direction: maximize` for Optuna), or NaN for a failed job, which Optuna and
Nevergrad record as a failed trial. Never an accuracy: labels only score.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import hydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from deepcluster.config import register
from deepcluster.errors import DeepClusterError, RunStopped, TrainingError
from deepcluster.resume import run_key
from deepcluster.run import drop_refused_run_folder, output_dir, run
from deepcluster.tracking import is_multirun

log = logging.getLogger("deepcluster")

CONF_DIR = str(Path(__file__).resolve().parent / "conf")
register()
if not OmegaConf.has_resolver("dc_run_key"):
    OmegaConf.register_new_resolver("dc_run_key", run_key)

# hydra/launcher options that live in optional extras
LAUNCHER_EXTRAS = {
    "joblib": ("hydra_plugins.hydra_joblib_launcher", "joblib"),
    "slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
}


def objective(metrics: dict) -> float:
    value = metrics.get("silhouette")
    return float("nan") if value is None else float(value)


_composed = False  # Hydra composed a config and our code ran (for the exit status)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> float:
    global _composed
    _composed = True
    try:
        return objective(run(cfg))
    except Exception as exc:
        if not is_multirun():
            if not isinstance(exc, DeepClusterError):
                raise  # a bug, not bad input: keep the traceback
            print(f"error: {exc}", file=sys.stderr, flush=True)
            if isinstance(exc, TrainingError):  # it started: its folder stays, the log says why
                log.error("%s", exc)
                sys.exit(1)
            drop_refused_run_folder(cfg)
            sys.exit(2)
        # one bad job must not stop the sweep: leave a marker the report can read
        if isinstance(exc, DeepClusterError):
            log.error("%s", exc)
            error = str(exc)
        else:
            log.exception("job crashed")
            error = f"{type(exc).__name__}: {exc}"
        try:
            (output_dir(cfg) / "failed.json").write_text(json.dumps({"error": error}) + "\n")
        except OSError:
            pass
        if isinstance(exc, RunStopped):  # the user stopped the sweep, not one job
            print(f"error: {exc}; the sweep stops", file=sys.stderr, flush=True)
            sys.exit(1)
        return math.nan


class SweepSummary(Callback):
    """After a multirun (any launcher; this runs in the launching process): one line on how
    many jobs failed and where, and the command's exit status 1 when any did. The sweep still
    runs every job; a script or CI running it learns of the failures from the status."""

    failed: list[Path] = []  # this process's last sweep: the failed jobs' folders

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self.started = time.time()

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep = Path(config.hydra.sweep.dir)
        since = getattr(self, "started", 0.0) - 1.0  # failed.json of an earlier sweep: not ours
        failed = sorted(p.parent for p in sweep.rglob("failed.json") if p.stat().st_mtime >= since)
        SweepSummary.failed = failed
        if failed:
            names = ", ".join(str(p.relative_to(sweep)) for p in failed[:10])
            more = f" and {len(failed) - 10} more" if len(failed) > 10 else ""
            print(
                f"deepcluster: {len(failed)} job(s) of the sweep failed: {names}{more} "
                f"(failed.json in each; python -m deepcluster.report {sweep})",
                file=sys.stderr,
                flush=True,
            )


PATH_KEYS = ("ckpt_path", "dataset.path", "data.root", "output_dir")


def quote_checkpoint_paths(argv: list[str]) -> list[str]:
    """`ckpt_path=outputs/k=5,seed=1/<time>/checkpoints/last.ckpt`, as our own run folders
    are named, is refused by Hydra's grammar (`=`, `,` or brackets in a bare value):
    a path key's value is quoted for it when it holds `=` (never a sweep) or names a file or
    folder that exists. (Another value stays as given: `a,b` may be a sweep.) A missing path
    then gets our own message, not the grammar's."""
    out = []
    for arg in argv:
        key, _, value = arg.partition("=")
        if (
            key.lstrip("+") in PATH_KEYS
            and any(c in value for c in "=,[]{}()")
            and value[:1] not in ("'", '"')
            and "'" not in value
            and ("=" in value or Path(value).expanduser().exists())
        ):
            arg = f"{key}='{value}'"
        out.append(arg)
    return out


def _preflight(argv: list[str]) -> str | None:
    """What Hydra would fail on before our code runs, said plainly."""
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and value.startswith("~") and not key.startswith("-"):
            # the shell expands ~ only at a word's start; Hydra's grammar then rejects it
            return (
                f"{arg}: a value cannot start with ~ on the command line (the shell leaves it "
                f"and Hydra's override grammar refuses it). Write {key}=$HOME{value[1:]} or "
                f"quote it: \"{key}='{value}'\""
            )
        if arg.startswith("hydra/launcher="):
            choice = arg.split("=", 1)[1]
            module, extra = LAUNCHER_EXTRAS.get(choice, (None, None))
            if module and importlib.util.find_spec(module.split(".")[0]) is not None:
                try:
                    found = importlib.util.find_spec(module) is not None
                except ModuleNotFoundError:
                    found = False
            else:
                found = module is None
            if not found:
                return (
                    f"hydra/launcher={choice} needs an optional dependency that is not "
                    f"installed: pip install 'deepcluster[{extra}]'"
                )
    wanted = [
        a.split("=", 1)[1] for a in argv if a.startswith(("hydra.run.dir=", "hydra.sweep.dir="))
    ]
    for target in wanted or ["."]:
        path = Path(target.strip("'\"")).expanduser().absolute()
        ancestor = path
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            return (
                f"cannot create the output directory {path}: {ancestor} is not a directory. "
                "Choose another with hydra.run.dir=<path>"
            )
        if not os.access(ancestor, os.W_OK | os.X_OK):
            return (
                f"cannot create the output directory {path}: {ancestor} is not writable. "
                "Choose another with hydra.run.dir=<path>"
            )
    return None


def unknown_key_hint(argv: list[str]) -> str | None:
    """After Hydra refused `trainer.max_epoch=2` ("use +trainer.max_epoch=2", which only moves
    the error), name the key meant: the option of its group that has it (`dataset.path`:
    dataset=folder or array), else the nearest key of the config the command's group choices
    compose. None when every key is known."""
    import difflib

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()  # the refused command's, if it got that far
    conf = Path(CONF_DIR)
    groups = {p.name for p in conf.iterdir() if p.is_dir()}
    chosen = {}  # group → its option (a sweep's first)
    for arg in argv:
        key, _, value = arg.partition("=")
        if key in groups:
            chosen[key] = value.split(",")[0]
    try:
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            cfg = compose("config", overrides=[f"{g}={o}" for g, o in chosen.items()])
    except Exception:  # a group choice that does not exist: Hydra's message says so
        return None
    known = []

    def walk(node, prefix=""):
        for key, value in node.items_ex(resolve=False):
            known.append(f"{prefix}{key}")
            if isinstance(value, DictConfig):
                walk(value, f"{prefix}{key}.")

    walk(cfg)
    for arg in argv:
        key = arg.split("=", 1)[0]
        if "=" not in arg or key.startswith(("+", "~", "-", "hydra")) or key in known:
            continue
        if key in groups or "/" in key or (key.split(".")[0] not in known and "." in key):
            continue  # a group choice, or a group path: Hydra's message says it
        group, _, leaf = key.partition(".")
        if group in groups and leaf and "." not in leaf:
            owners = sorted(
                p.stem for p in (conf / group).glob("*.yaml") if leaf in OmegaConf.load(p)
            )
            if owners:
                options = " or ".join(f"{group}={o}" for o in owners)
                if group in chosen:
                    return f"{key} is an option of {options}, not of {group}={chosen[group]}"
                now = cfg[group].get("name", "its default")
                return f"{key} is an option of {options}, not of {group}={now}: add one of them"
        leaf = key.rsplit(".", 1)[-1]
        hint = [k for k in known if k.rsplit(".", 1)[-1] == leaf and k != key][:1]
        hint = hint or difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        if hint:
            return (
                f"{key} is not a key of this config; did you mean {hint[0]}? (`+{key}`, "
                "as Hydra suggests, would add a key that nothing reads)"
            )
        return f"{key} is not a key of this config: `deepcluster --cfg job` lists every key"
    return None


def main() -> None:
    os.environ.setdefault("WANDB_SILENT", "true")
    sys.argv[1:] = quote_checkpoint_paths(sys.argv[1:])  # Hydra reads sys.argv
    problem = _preflight(sys.argv[1:])
    if problem:
        print(f"error: {problem}.", file=sys.stderr)
        sys.exit(2)
    SweepSummary.failed = []
    try:
        _hydra_main()
    except SystemExit as exc:
        # Hydra refuses a command it cannot compose (dataset=cifar99, kk=3) with status 1, as
        # it ends a crash; a refused command is status 2 here, whoever refused it
        if exc.code == 1 and not _composed:
            hint = unknown_key_hint(sys.argv[1:])
            if hint:
                print(f"hint: {hint}", file=sys.stderr)
            sys.exit(2)
        raise
    if SweepSummary.failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
