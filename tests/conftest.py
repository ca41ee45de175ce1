from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import deepcluster.cli  # noqa: F401  registers the config schema and resolvers

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"


def real_data_root() -> Path | None:
    """Where real MNIST lives (DEEPCLUSTER_DATA, else ../shared/data beside the checkout)."""
    for candidate in (os.environ.get("DEEPCLUSTER_DATA"), ROOT.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "MNIST" / "raw").is_dir():
            return Path(candidate)
    return None


@pytest.fixture
def compose():
    """compose(*overrides) → the real config, composed like the CLI does."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    def _compose(*overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=list(overrides))

    yield _compose
    GlobalHydra.instance().clear()


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: int = 600):
    """Run `python -m deepcluster ARGS` in a subprocess; returns CompletedProcess."""
    full_env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "deepcluster", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
