"""The wheel users install: it builds, installs into a fresh venv (offline: the dependencies
come from this environment) and runs from an unrelated folder with its shipped configs."""

import inspect
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from lightning.pytorch import Trainer
from packaging.requirements import Requirement

from deepcluster.cli import _preflight
from deepcluster.errors import MissingDependencyError
from tests.conftest import ROOT, run_cli


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install")
    dist = tmp / "dist"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(dist),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    wheel = next(dist.glob("deepcluster-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(
        subprocess.check_output(
            [
                str(venv / "bin" / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            text=True,
        ).strip()
    )
    # the dependencies, from this environment: appended after the venv's own site-packages
    (site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return venv, wheel, elsewhere


def _run(venv, *args, cwd):
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": ""}
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_wheel_ships_the_configs_and_the_package_comes_from_it(installed):
    venv, wheel, elsewhere = installed
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "deepcluster/conf/config.yaml" in names
    assert any(n.startswith("deepcluster/conf/experiment/dekm_mnist") for n in names)
    where = _run(
        venv, "python", "-c", "import deepcluster; print(deepcluster.__file__)", cwd=elsewhere
    )
    assert str(venv) in where.stdout, where.stdout + where.stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_installed_help_lists_groups_and_commands(installed, flag):
    venv, _, elsewhere = installed
    proc = _run(venv, "deepcluster", flag, cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for needle in ("Config groups", "dataset:", "clusterer:", "k=auto", "deepcluster-predict"):
        assert needle in proc.stdout, needle


def test_installed_one_epoch_digits_run_from_an_unrelated_folder(installed):
    venv, _, elsewhere = installed
    proc = _run(
        venv,
        "deepcluster",
        "trainer.max_epochs=1",
        "manifold=none",  # UMAP's compilation is 25 s of a 2-core EPYC, and not the subject
        "logger=none",
        "plots=false",
        cwd=elsewhere,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(elsewhere.glob("outputs/*/*/metrics.json"))


def test_missing_extras_name_the_pip_command(monkeypatch):
    import importlib.util

    from deepcluster.clustering.manifold import UMAPManifold

    monkeypatch.setitem(sys.modules, "umap", None)  # as if umap-learn were not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'umap-learn>=0.5.5,<0.6'"):
        UMAPManifold(n_epochs=5)(__import__("numpy").random.rand(30, 4))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    problem = _preflight(["hydra/launcher=joblib"])
    assert problem and "pip install 'deepcluster[joblib]'" in problem


def test_a_leading_tilde_is_caught_before_hydra_refuses_it(tmp_path):
    # bash leaves ~ in dataset.path=~/tiles (not at the word's start); Hydra's lexer refused it
    # with a LexerNoViableAltException
    problem = _preflight(["dataset=folder", "dataset.path=~/tiles"])
    assert problem and "dataset.path=$HOME/tiles" in problem and "'~/tiles'" in problem
    assert _preflight(["dataset.path='~/tiles'"]) is None  # quoted: Hydra reads it
    proc = run_cli("dataset=folder", "dataset.path=~/tiles", cwd=tmp_path)
    assert proc.returncode == 2 and "$HOME/tiles" in proc.stderr
    assert "Traceback" not in proc.stderr and "Lexer" not in proc.stderr


def test_the_lightning_range_admits_only_versions_that_take_what_run_passes():
    """run.py resumes with Trainer.fit(weights_only=True), a keyword Lightning 2.6.0 added:
    pyproject.toml admitted 2.5, where a resume would fail with a TypeError."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+; pyproject admits 3.10
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (lightning,) = [Requirement(d) for d in deps if Requirement(d).name == "lightning"]
    assert "weights_only" in inspect.signature(Trainer.fit).parameters
    assert "weights_only=True" in (ROOT / "deepcluster" / "run.py").read_text()
    assert not lightning.specifier.contains("2.5.9")
