"""Loggers (W&B + CSV), a sweep job's identity on W&B, and what of the config they may see."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from deepcluster.build import instantiate
from deepcluster.errors import ConfigError

# overrides that do not change a run's result: left out of its W&B tags and its run key
NOT_RESULT = (
    "ckpt_path=",
    "hydra.",
    "trainer.enable_",
    "logger=",
    "plots=",
    "output_dir=",
    "run_name=",
)
SECRET_WORDS = ("token", "secret", "password", "passwd", "passphrase", "credential", "apikey")
SECRET_NAMES = ("auth", "pwd", "bearer", "cookie")  # whole words: author, cookies_dir show
# api_key, access_key, …
KEY_KINDS = ("api", "access", "private", "auth", "wandb", "ssh", "session", "signing")


def looks_secret(name: str) -> bool:
    """A config key that may hold a secret (hidden in W&B and CSV hparams): not every key
    ending in "key" (dataset.images_key names an array, and must show). camelCase counts
    as words (accessKey)."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(name)).lower()
    if any(w in name for w in SECRET_WORDS):
        return True
    words = re.split(r"[^a-z0-9]+", name)
    if any(w in SECRET_NAMES for w in words):
        return True
    return words[-1] == "key" and (len(words) == 1 or words[-2] in KEY_KINDS)


def scrub_override(override: str) -> str:
    """`+logger.wandb.settings.api_key=…` → `…api_key=***`: overrides become W&B tags and
    names, which the hparams' scrubbing never sees."""
    key, eq, _ = override.partition("=")
    leaf = key.lstrip("+~").rsplit(".", 1)[-1]
    return f"{key}=***" if eq and looks_secret(leaf) else override


def hydra_config():
    """Hydra's runtime config, or None outside @hydra.main (tests compose the config)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get()
    except ValueError:
        return None


def is_multirun() -> bool:
    from hydra.types import RunMode

    hc = hydra_config()
    return hc is not None and hc.mode == RunMode.MULTIRUN


def task_overrides() -> list[str]:
    """This job's command-line overrides that change its result, sorted."""
    hc = hydra_config()
    if hc is None:
        return []
    return sorted(scrub_override(o) for o in hc.overrides.task if not o.startswith(NOT_RESULT))


def sweep_identity() -> tuple[str | None, list[str], str | None]:
    """(group, tags, name) of a multirun job for W&B: the sweep folder, its overrides."""
    if not is_multirun():
        return None, [], None
    hc = hydra_config()
    overrides = task_overrides()
    tags = [o[:64] for o in overrides]  # W&B caps tags at 64 characters
    # absolute: the sweep report finds the group from the folder however it is typed
    group = str((Path(hc.runtime.cwd) / str(hc.sweep.dir)).resolve())
    return group, tags, ",".join(overrides) or f"job {hc.job.num}"


def scrub_secrets(node: Any, key: str = "") -> Any:
    """A config as plain data, with *** for the value of every key that looks secret, of
    every `key=value` string in a list (Hydra's override lists) whose key does, and inside
    Hydra's override_dirname (`k=3,+…api_key=…`)."""
    if isinstance(node, dict):
        return {k: "***" if looks_secret(k) else scrub_secrets(v, str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [scrub_override(v) if isinstance(v, str) else scrub_secrets(v) for v in node]
    if key == "override_dirname" and isinstance(node, str):
        return scrub_overrides(node)
    return node


def public_config(cfg: DictConfig) -> dict:
    """The resolved config as a dict, minus anything that looks like a secret."""
    return scrub_secrets(OmegaConf.to_container(cfg, resolve=True))


def scrub_saved_config(path: Path) -> bool:
    """Hydra writes the command's overrides, config and settings to the run's .hydra/ (and a
    sweep's to multirun.yaml) before anything runs: a secret given on the command line
    (`+logger.wandb.settings.api_key=…`) is replaced by *** there, as in W&B. Rewrites the
    file only if it held one (True)."""
    if not path.is_file():
        return False
    saved = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    clean = scrub_secrets(saved)
    changed = clean != saved
    if changed:
        OmegaConf.save(OmegaConf.create(clean), path)
    return changed


def scrub_overrides(override_dirname: str) -> str:
    """Hydra's `k=3,+logger.wandb.settings.api_key=…` → `k=3,+logger.wandb.settings.api_key=***`
    (a list value's commas split it into pieces without `=`, which stay as they were)."""
    return ",".join(scrub_override(o) for o in override_dirname.split(","))


def hydra_saved_configs() -> list[Path]:
    """What Hydra wrote of this job's command: its .hydra/ files, and a sweep's multirun.yaml
    (none outside Hydra; no .hydra/ with hydra.output_subdir=null)."""
    hc = hydra_config()
    if hc is None:
        return []
    files = []
    if hc.output_subdir:
        folder = Path(hc.runtime.output_dir) / str(hc.output_subdir)
        files += [folder / name for name in ("overrides.yaml", "config.yaml", "hydra.yaml")]
    if is_multirun():
        files.append(Path(hc.runtime.cwd) / str(hc.sweep.dir) / "multirun.yaml")
    return files


def check_wandb_options(cfg: DictConfig) -> None:
    """A W&B option neither Lightning's WandbLogger nor wandb.init takes (a typo such as
    `+logger.wandb.projct=x`) is refused now, before the data loads; wandb.init refused it
    with a TypeError only at the first log."""
    import difflib
    import inspect

    node = (cfg.get("logger") or {}).get("wandb")
    if node is None or "_target_" not in node:
        return
    try:
        import wandb
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:  # the logger's own error says so when it is built
        return
    known = {"_target_"}
    for fn in (WandbLogger.__init__, wandb.init):
        known |= {p for p in inspect.signature(fn).parameters if p not in ("self", "kwargs")}
    for key in node:
        if key not in known:
            near = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f"; did you mean logger.wandb.{near[0]}?" if near else ""
            raise ConfigError(
                f"logger.wandb.{key}: neither Lightning's WandbLogger nor wandb.init takes "
                f"this option{hint}"
            )


def make_loggers(cfg: DictConfig, out_dir: Path) -> list:
    loggers = []
    for name, node in (cfg.get("logger") or {}).items():
        if node is None or "_target_" not in node:
            continue
        # the run's folder unless the logger's own save_dir is given (+logger.csv.save_dir=…)
        kwargs: dict[str, Any] = {"save_dir": node.get("save_dir") or str(out_dir)}
        if name == "wandb":
            group, tags, job_name = sweep_identity()
            node = OmegaConf.masked_copy(node, [k for k in node if k not in ("group", "tags")])
            kwargs.update(
                name=cfg.get("run_name") or node.get("name") or job_name,
                group=cfg.logger.wandb.get("group") or group,  # a sweep's jobs share it
                tags=[*(cfg.logger.wandb.get("tags") or []), *tags],
            )
            if any(scrub_override(a) != a for a in sys.argv[1:]):
                # W&B records the command line: not with a secret in it (the user's own
                # settings, the secret among them, are kept)
                own = node.get("settings")
                own = OmegaConf.to_container(own, resolve=True) if own is not None else {}
                kwargs["settings"] = {**own, "x_disable_meta": True}
        # a logger's `name` is its own argument (the CSV log's folder), not an option's name
        loggers.append(instantiate(node, f"logger.{name}", drop=frozenset(), **kwargs))
    public = public_config(cfg)
    for lg in loggers:
        lg.log_hyperparams(public)
    return loggers


def log_final(loggers: list, metrics: dict, figures: dict[str, Path]) -> None:
    for lg in loggers:
        if hasattr(lg, "log_image"):
            for key, path in figures.items():
                lg.log_image(key=f"figures/{key}", images=[str(path)])
        if type(lg).__name__ == "WandbLogger":
            for key in ("acc", "nmi", "ari", "purity", "silhouette"):
                if metrics.get(key) is not None:
                    lg.experiment.summary[f"final/{key}"] = metrics[key]


def finish_wandb(loggers: list, exit_code: int = 0) -> None:
    """Close this run's W&B run (marked failed on a non-zero exit): sweeps must not leak runs."""
    if any(type(lg).__name__ == "WandbLogger" for lg in loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish(exit_code=exit_code)
