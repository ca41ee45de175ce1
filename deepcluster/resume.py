"""Where a command's runs live, and what `ckpt_path=last` continues.

A single run's folder is `outputs/<run key>/<date>_<time>/`, where the run key is made of the
overrides that change the result (not logger, plots, …; a ckpt_path file as `from=<its run>-
<hash>`, ckpt_path=last not at all). So every run of one
command sits under one stable folder, and `ckpt_path=last` continues the newest of them
that has a checkpoint — in this folder, never another command's. A sweep job, or a run with
its own `hydra.run.dir`, continues only its own folder. When the command's folder has nothing
to continue but the same overrides begun from a checkpoint file do, `last` refuses and names
that checkpoint, rather than start from nothing. A run that already finished
(metrics.json written) is not trained further: the command says so and shows its result.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from deepcluster.errors import ConfigError
from deepcluster.tracking import scrub_overrides

log = logging.getLogger(__name__)


def run_key(override_dirname: str, ckpt_path: str | None = None) -> str:
    """A folder name for a command's overrides: `default` without any; long ones hashed.
    A run started from a checkpoint file (a shared pretraining continued) is another command
    than the same overrides from nothing: its key is theirs plus `,from=` and the file's run
    (`ckpt_path=last` only continues, and is left out). The overrides are hashed before the
    file is added, so such a key always begins with the plain command's key."""
    key = re.sub(r"[^A-Za-z0-9._,=+-]", "_", scrub_overrides(override_dirname))  # no secret
    if len(key) > 120:
        key = f"{key[:100]}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
    if ckpt_path in (None, "", "last"):
        return key or "default"
    path = Path(str(ckpt_path)).expanduser().resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    run = re.sub(r"[^A-Za-z0-9._+-]", "_", run_folder(path).name)[:60]
    origin = f"from={run}-{digest}"
    return f"{key},{origin}" if key else origin


def own_checkpoint(ckpt: str | None, run_dir: Path) -> bool:
    """Is the checkpoint given (None: none) one of the run folder's own, in its checkpoints/?
    (A weights.ckpt or a checkpoint set aside in previous*/ is another run's.)"""
    own = run_dir / "checkpoints"
    return ckpt is not None and Path(ckpt).resolve().is_relative_to(own.resolve())


def run_folder(ckpt: str | Path) -> Path:
    """The run a checkpoint belongs to: <run>/checkpoints/<file>, or <run>/weights.ckpt (a
    cluster-only run's copy of the weights it clustered)."""
    path = Path(ckpt).resolve()
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


@dataclass
class Resume:
    ckpt: str | None = None  # the checkpoint to continue, if any
    finished: Path | None = None  # a finished run of this command: nothing to train


def resolve(value: str | None, out_dir: Path, search_siblings: bool) -> Resume:
    """`ckpt_path` → what to continue. value: None, a checkpoint file, or "last"."""
    if value in (None, ""):
        return Resume()
    if value != "last":
        path = Path(value).expanduser()
        if not path.is_file():
            inside = path / "checkpoints" / "last.ckpt"
            hint = (
                f": give the checkpoint inside that run, ckpt_path={inside}"
                if inside.is_file()
                else ""
            )
            raise ConfigError(f"ckpt_path={value}: no such checkpoint file{hint}")
        return Resume(ckpt=str(path.resolve()))
    candidates = [out_dir]
    if search_siblings:
        candidates += sorted(
            (d for d in out_dir.parent.iterdir() if d.is_dir() and d != out_dir),
            key=lambda d: d.name,
            reverse=True,
        )
    mine = recorded_overrides(out_dir)
    for run_dir in candidates:
        theirs = recorded_overrides(run_dir) if run_dir != out_dir else mine
        if None not in (mine, theirs) and theirs != mine:
            continue  # another command whose folder name came out the same (`a b` and `a_b`)
        if (run_dir / "metrics.json").is_file():
            return Resume(finished=run_dir)
        ckpt = run_dir / "checkpoints" / "last.ckpt"
        if ckpt.is_file():
            log.info("resuming from %s", ckpt)
            return Resume(ckpt=str(ckpt))
    if search_siblings:
        refuse_if_begun_from_file(out_dir)
    log.warning(
        "ckpt_path=last: no earlier checkpoint of this command found, starting fresh%s",
        other_length_hint(out_dir) if search_siblings else "",
    )
    return Resume()


def recorded_overrides(run_dir: Path) -> str | None:
    """The overrides that make the run in `run_dir` its command (Hydra's override_dirname, in
    its .hydra/hydra.yaml: what the run key is made from, before any character is replaced);
    None where none were recorded."""
    try:
        recorded = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml")
        return str(recorded.hydra.job.override_dirname)
    except Exception:  # absent (hydra.output_subdir=null, a plain call) or unreadable
        return None


def other_length_hint(out_dir: Path) -> str:
    """The same command with another trainer.max_epochs is another folder (the epochs are part
    of the key), so `ckpt_path=last` cannot train a run further: name the newest such run's
    checkpoint, which continues it as given."""
    epochs = "trainer.max_epochs="
    mine = {t for t in out_dir.parent.name.split(",") if not t.startswith(epochs)}
    found = sorted(
        (
            ckpt
            for key_dir in out_dir.parent.parent.iterdir()
            if key_dir.is_dir()
            and key_dir != out_dir.parent
            and {t for t in key_dir.name.split(",") if not t.startswith(epochs)} - {"default"}
            == mine - {"default"}
            for ckpt in key_dir.glob("*/checkpoints/last.ckpt")
        ),
        key=lambda ckpt: ckpt.stat().st_mtime,
        reverse=True,
    )
    if not found:
        return ""
    return (
        f". The same command with another trainer.max_epochs has a checkpoint: to train it "
        f"further, give ckpt_path={found[0]} with the new trainer.max_epochs"
    )


def refuse_if_begun_from_file(out_dir: Path) -> None:
    """`ckpt_path=last` found nothing, but the same overrides begun from a checkpoint file
    (`<key>,from=…`, another command) left checkpoints: the user most likely means one of
    them, and starting from nothing instead would throw a pretraining away. Say which."""
    key = out_dir.parent.name
    started = "from=" if key == "default" else key + ",from="
    found = sorted(
        (
            ckpt
            for key_dir in out_dir.parent.parent.iterdir()
            if key_dir.name.startswith(started) and key_dir.is_dir()
            for ckpt in key_dir.glob("*/checkpoints/last.ckpt")
        ),
        key=lambda ckpt: ckpt.parent.parent.name,
        reverse=True,
    )
    if found:
        raise ConfigError(
            "ckpt_path=last continues runs of this command begun from nothing; the ones begun "
            f"from a checkpoint file are other commands. To continue the newest of those, give "
            f"its checkpoint: ckpt_path={found[0]}"
            + (f" ({len(found)} such runs)" if len(found) > 1 else "")
        )
