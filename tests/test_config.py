"""Every option of every config group composes and instantiates."""

import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from deepcluster.build import instantiate
from deepcluster.config import validate as validate_config
from deepcluster.errors import ConfigError
from tests.conftest import CONF_DIR

GROUPS = sorted(p.name for p in Path(CONF_DIR).iterdir() if p.is_dir() and p.name != "experiment")


def options(group):
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


CASES = [(g, o) for g in GROUPS for o in options(g)]


def test_groups_exist():
    assert {"dataset", "activation", "model", "clusterer", "trainer", "logger", "refine"} <= set(
        GROUPS
    )


@pytest.mark.parametrize("group, option", CASES)
def test_option_composes_and_instantiates(compose, group, option, tmp_path):
    extra = []
    if "path" in OmegaConf.load(Path(CONF_DIR) / group / f"{option}.yaml"):
        extra = [f"{group}.path={tmp_path}", "k=2"]  # the user's own data: path and k are theirs
    cfg = compose(f"{group}={option}", f"data.root={tmp_path}", *extra)
    OmegaConf.resolve(cfg)
    if "@package _global_" in (Path(CONF_DIR) / group / f"{option}.yaml").read_text():
        validate_config(cfg)  # a preset of other keys (schedule=fast): they must be valid
        return
    node = cfg[group]
    if group == "trainer" and node.accelerator == "gpu" and not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="trainer=gpu: no GPU found.*trainer=default"):
            validate_config(cfg)  # said plainly, before anything loads (not Lightning's error)
    else:
        validate_config(cfg)
    if group == "dataset":
        dm = instantiate(node, group)
        assert dm.num_classes == cfg.dataset.num_classes
        assert (dm.image_size, dm.channels) == (node.image_size, node.channels)
    elif group == "model":
        instantiate(node, group)
    elif group == "clusterer":
        assert callable(instantiate(node, group))
    elif group == "trainer":
        extra = {}
        if node.accelerator == "gpu" and not torch.cuda.is_available():
            extra["accelerator"] = "cpu"  # every other key must still be a valid Trainer arg
        trainer = instantiate(node, group, logger=False, enable_checkpointing=False, **extra)
        assert trainer.max_epochs == cfg.trainer.max_epochs
    elif group == "logger":
        for sub in node.values():
            instantiate(sub, group, save_dir=str(tmp_path))
    elif group == "activation":
        instantiate(cfg.model, "model")
    elif group == "manifold":
        manifold = instantiate(cfg.manifold, group)
        assert manifold is None if option == "none" else callable(manifold)
    elif group == "augment":  # describing keys (in_refinement) are not constructor arguments
        augment = instantiate(node, group)
        assert augment is None if option == "none" else callable(augment)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiment_composes(compose, experiment, tmp_path):
    cfg = compose(f"experiment={experiment}", f"data.root={tmp_path}")
    OmegaConf.resolve(cfg)
    validate_config(cfg)
    # method A's and DEC's files refine after their reconstruction epochs; the Ward and
    # UMAP + GMM recipes only read the codes, for all their epochs (the default refine=dekm
    # would start refining them after 10)
    refines = experiment.startswith(("dekm", "dec_", "digits_dekm", "paper_k"))
    assert cfg.refine.enabled == refines, (experiment, cfg.refine.enabled)
    assert cfg.refine.method == ("dec" if experiment.startswith("dec_") else "dekm")
    if refines:
        assert cfg.pretrain_epochs < cfg.trainer.max_epochs


@pytest.mark.parametrize(
    "overrides, augment, augmented_inputs, manifold, pretrain_epochs, max_epochs",
    [
        ((), "affine_pretrain", False, "umap_start", 20, 50),  # the default job: digits' recipe
        (("dataset=mnist",), "none", True, "none", 10, 40),  # other datasets: the papers'
        (("augment=none",), "none", True, "umap_start", 20, 50),
        (("augment=affine",), "affine", True, "umap_start", 20, 50),  # DEC-DA: augmented refinement
        (("manifold=none",), "affine_pretrain", False, "none", 20, 50),
        (("manifold=umap",), "affine_pretrain", False, "umap", 20, 50),
        (
            ("augment=affine_pretrain", "refine.augmented_inputs=true"),
            *("affine_pretrain", True, "umap_start", 20, 50),
        ),
        (("dataset=mnist", "augment=affine_pretrain"), "affine_pretrain", False, "none", 10, 40),
        (("dataset=mnist", "manifold=umap_start"), "none", True, "umap_start", 10, 40),
        (("pretrain_epochs=5",), "affine_pretrain", False, "umap_start", 5, 35),  # max follows
        (("trainer.max_epochs=12",), "affine_pretrain", False, "umap_start", 20, 12),  # unless set
        (("experiment=digits_dekm",), "none", True, "none", 10, 25),  # the paper's method, pinned
    ],
)
def test_dataset_recipe_defaults_yield_to_overrides(
    compose, overrides, augment, augmented_inputs, manifold, pretrain_epochs, max_epochs
):
    cfg = compose(*overrides)
    OmegaConf.resolve(cfg)
    validate_config(cfg)
    got = (cfg.augment.name, cfg.refine.augmented_inputs, cfg.manifold.name, cfg.pretrain_epochs)
    assert got == (augment, augmented_inputs, manifold, pretrain_epochs)
    assert cfg.trainer.max_epochs == max_epochs


def test_k_defaults_to_class_count(compose):
    assert compose().k == 10
    assert compose("dataset=synthetic").k == 4
    # a folder's classes are counted only once it is read: the message says how to give k
    with pytest.raises(ConfigError, match=r"give k=<number of clusters> \(e.g. the number of"):
        validate_config(compose("dataset=folder", "dataset.path=/tmp"))
    # k=null on a dataset that gives its classes: the message blamed the dataset
    with pytest.raises(ConfigError, match="k=null: .*leave k out to use dataset=mnist's 10"):
        validate_config(compose("dataset=mnist", "k=null"))
    # a dataset option of the user's without num_classes: the message, not OmegaConf's error
    with pytest.raises(ConfigError, match="k is not set, and dataset=mnist gives no number"):
        validate_config(compose("dataset=mnist", "~dataset.num_classes"))


@pytest.mark.parametrize(
    "override, key",
    [
        ("k=1", "k=1"),
        ("optim.lr=0", "optim.lr=0"),
        ("optim.lr=-1e-3", "optim.lr=-0.001"),
        ("data.batch_size=0", "data.batch_size=0"),
        ("pretrain_epochs=-1", "pretrain_epochs=-1"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0"),
        # Lightning's "stop by max_steps" setting: the schedule counts epochs
        ("trainer.max_epochs=null", "trainer.max_epochs=None must be an integer >= 0"),
        ("activation.name=swish9", "activation.name='swish9'"),
        ("k=ten", "k='ten'"),
        ("refine.target_scale=big", "refine.target_scale='big'"),
        ("refine.patience=-2", "refine.patience=-2"),
        # `+key=…` (Hydra's hint for a key not in the config) would run with it unread
        ("+kk=3", "kk=3 is not a deepcluster setting, and nothing would read it: did you mean k"),
        ("+optim.peak=1", "optim.peak=1 is not a deepcluster setting"),
        ("+refine.foo=1", "refine.foo=1 is not"),
        # each passed validation and then crashed: the weights cast to bf16 met float32 codes
        # at the first clustering; NumPy's seed range; the model fed other images than its
        # shape; three convolutions unpacked from two widths
        ("trainer.precision=bf16-true", "trainer.precision='bf16-true' must be 32-true"),
        ("trainer.precision=64-true", "trainer.precision='64-true'"),
        ("seed=4294967296", "seed=4294967296 must be an integer in 0 … 4294967295"),
        ("model.image_size=32", "model.image_size=32 differs from dataset.image_size=28"),
        ("model.in_channels=3", "model.in_channels=3 differs from dataset.channels=1"),
        ("model.channels=[32,64]", "model.channels=[32, 64] must be three widths"),
    ],
)
def test_bad_values_name_the_key(compose, override, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        validate_config(compose(override))


@pytest.mark.skipif(torch.cuda.is_available(), reason="tells a machine without a GPU")
def test_clustering_on_a_gpu_that_is_not_there_is_refused_before_anything_loads(compose):
    # it crashed with "Found no NVIDIA driver" at the first clustering, after training
    with pytest.raises(ConfigError, match="clusterer.device=cuda: no GPU found.*auto"):
        validate_config(compose("clusterer.backend=torch", "clusterer.device=cuda"))


@pytest.mark.parametrize("precision", ["32-true", "32", "bf16-mixed", "16-mixed"])
def test_precisions_that_train_and_cluster_pass(compose, precision):
    validate_config(compose(f"trainer.precision={precision}", "seed=4294967295"))


def test_a_trainer_option_lightning_refuses_is_a_config_error_leaving_no_logs(compose, tmp_path):
    """trainer.devices=0 gave Hydra's raw "Error in call to target … Misconfiguration-
    Exception", after the CSV logger had made its folder in the run's."""
    from deepcluster.run import run

    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="trainer=default: .*devices=0"):
        run(compose("dataset=digits", "trainer.devices=0", "logger=csv", f"output_dir={out}"))
    assert not (out / "csv").exists()


def test_an_import_error_inside_an_options_constructor_is_not_called_its_import(compose):
    """trainer.accelerator=tpu: Lightning's Trainer imports fine, torch_xla (which the TPU
    accelerator requires) is what is missing; it was reported as "cannot import …Trainer"."""

    node = compose("trainer.accelerator=tpu").trainer
    with pytest.raises(ConfigError) as info:
        instantiate(node, "trainer")
    assert "cannot import" not in str(info.value) and "trainer=" in str(info.value)
    with pytest.raises(ConfigError, match="trainer: cannot import nowhere.Trainer"):
        instantiate(OmegaConf.create({"_target_": "nowhere.Trainer"}), "trainer")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (("refine=dec", "refine.target_scale=fixed"), "target_scale='fixed' is method A's"),
        (("refine=dekm", "refine.alpha=0.5"), "alpha=0.5 is DEC's"),
        # with no refinement either would do nothing (the message named method A's, or none)
        (("refine=none", "refine.alpha=2"), r"refine=none \(refine.enabled=false\) trains no"),
        (("refine=none", "refine.target_scale=fixed"), "so refine.target_scale='fixed' would"),
    ],
)
def test_an_option_of_the_other_refinement_method_is_refused(compose, overrides, message):
    """It would do nothing, silently."""
    with pytest.raises(ConfigError, match=message):
        validate_config(compose(*overrides))
    validate_config(compose(overrides[0]))  # each method's own defaults pass


@pytest.mark.parametrize(
    "launcher, target", [("joblib", "JoblibLauncher"), ("slurm", "SlurmLauncher")]
)
def test_launcher_configs_compose(launcher, target):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", [f"hydra/launcher={launcher}"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    assert cfg.hydra.launcher._target_.endswith(target)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiment_can_cluster_a_trained_model_only(compose, experiment, tmp_path):
    """How the reproduction continues a shared pretraining: trainer.max_epochs=0 + ckpt_path."""
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_text("")
    cfg = compose(
        f"experiment={experiment}",
        "trainer.max_epochs=0",
        f"ckpt_path={ckpt}",
        f"data.root={tmp_path}",
    )
    OmegaConf.resolve(cfg)
    validate_config(cfg)
