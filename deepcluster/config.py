"""The config schema: every top-level key's type (a structured config Hydra checks while it
composes) and range (checked here, once, before any data loads), with messages that name the
key, the value and the fix.

Group options (dataset, model, clusterer, manifold, trainer, logger, augment) are free-form
nodes: their keys are their class's constructor arguments, checked by the constructor when
`build` instantiates them, also before any data loads. So a new clusterer is one Python file
(its constructor checks its own arguments) and one YAML file, nothing here.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from deepcluster.errors import ConfigError

NAMED_GROUPS = ("dataset", "activation", "model", "clusterer", "manifold")  # carry a `name`


# Types here, values (and their comments) in conf/config.yaml and the group YAML files.
@dataclass
class DataConfig:
    root: str = MISSING
    download: bool = MISSING
    batch_size: Any = MISSING  # an integer, or "auto"


@dataclass
class OptimConfig:
    lr: float = MISSING
    schedule: str = MISSING  # constant | one_cycle
    peak_lr: float = MISSING
    warmup_fraction: float = MISSING


@dataclass
class RefineConfig:
    enabled: bool = MISSING
    update_interval: int = MISSING
    tol: float = MISSING
    recon_weight: float = MISSING
    max_iterations: int = MISSING
    first_n_init: int = MISSING
    target_scale: str = "free"
    patience: int = 0
    augmented_inputs: bool = True
    method: str = "dekm"  # dekm | dec
    cadence: str = "epoch"  # epoch | global: does the update_interval count restart each epoch
    alpha: float = 1.0  # DEC's Student-t degrees of freedom


@dataclass
class KSearchConfig:
    min: int = MISSING
    max: int = MISSING
    criterion: str = MISSING


@dataclass
class Config:
    dataset: Any = None
    activation: Any = None
    model: Any = None
    clusterer: Any = None
    manifold: Any = None
    augment: Any = None
    trainer: Any = None
    logger: Any = None
    refine: RefineConfig = field(default_factory=RefineConfig)
    k: Any = MISSING  # an integer >= 2, or "auto"
    k_search: KSearchConfig = field(default_factory=KSearchConfig)
    seed: int = MISSING
    pretrain_epochs: int = MISSING
    cluster_every_n_epochs: int = MISSING
    ckpt_path: str | None = None  # noqa: UP007  a checkpoint file, or "last"
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    embed_batch_size: int = MISSING
    channels_last: bool = MISSING
    plots: bool = MISSING
    baseline: bool = MISSING
    output_dir: str | None = None  # noqa: UP007  default: Hydra's run directory
    run_name: str | None = None  # noqa: UP007


def register() -> None:
    ConfigStore.instance().store(name="deepcluster_schema", node=Config)
    if not OmegaConf.has_resolver("dc_sum"):  # trainer.max_epochs: pretraining + refinement cap
        OmegaConf.register_new_resolver("dc_sum", lambda *terms: sum(int(t) for t in terms))
    if not OmegaConf.has_resolver("dc_k_or"):  # manifold.n_components: k, or with k=auto …
        OmegaConf.register_new_resolver("dc_k_or", lambda k, other: other if k == "auto" else k)


# --- ranges ----------------------------------------------------------------------------
def whole(v: Any) -> bool:
    """An int: not a bool (true is 1 to Python), nor 28.0, nor "28"."""
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def at_least(low: int) -> Callable[[Any], bool]:
    return lambda v: whole(v) and v >= low


def positive(v: Any) -> bool:
    return _num(v) and v > 0


def fraction(v: Any) -> bool:  # in [0, 1)
    return _num(v) and 0 <= v < 1


def one_of(*choices: str) -> Callable[[Any], bool]:
    return lambda v: v in choices


# key → (valid?, what it must be). Absent optional nodes (manifold=none) are skipped.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "k": (lambda v: v == "auto" or at_least(2)(v),
          "an integer >= 2 (the number of clusters), or auto to choose it without labels"),
    "k_search.min": (at_least(2), "an integer >= 2"),
    "k_search.criterion": (one_of("silhouette", "bic", "ward_gap"),
                           "one of silhouette, bic, ward_gap"),
    "seed": (lambda v: at_least(0)(v) and v < 2**32,
             "an integer in 0 … 4294967295 (NumPy's seed range)"),
    "trainer.precision": (lambda v: str(v) in PRECISIONS or v == "auto",
                          "32-true (default), bf16-mixed (bfloat16 autocast, float32 weights; "
                          "16-mixed on a GPU) or auto (bf16-mixed where it is faster: a CPU with "
                          "AMX or AVX-512 BF16): the *-true precisions cast the weights, which "
                          "the clustering's float32 codes, rotation and targets do not match"),
    "model.channels": (lambda v: isinstance(v, ListConfig) and len(v) == 3
                       and all(at_least(1)(c) for c in v),
                       "three widths, one per convolution, e.g. [32, 64, 128]"),
    "pretrain_epochs": (at_least(0), "an integer >= 0 (reconstruction epochs before refinement)"),
    "cluster_every_n_epochs": (at_least(1), "an integer >= 1"),
    "trainer.max_epochs": (at_least(0), "an integer >= 0 (the schedule counts epochs; 0: "
                                        "cluster a trained model given by ckpt_path)"),
    "data.batch_size": (lambda v: v == "auto" or at_least(1)(v),
                        "an integer >= 1, or auto (256, halved until an epoch has >= 32 steps)"),
    "optim.lr": (positive, "a number > 0"),
    "optim.schedule": (one_of("constant", "one_cycle"), "constant or one_cycle"),
    "optim.peak_lr": (positive, "a number > 0"),
    "optim.warmup_fraction": (fraction, "a number in [0, 1)"),
    "embed_batch_size": (at_least(1), "an integer >= 1 (images per embedding pass)"),
    "refine.update_interval": (at_least(0),
                               "an integer >= 0 (steps between reclusterings; 0: every epoch)"),
    "refine.tol": (fraction, "a number in [0, 1) (the fraction of labels that may still "
                             "change when refinement stops)"),
    "refine.recon_weight": (lambda v: _num(v) and v >= 0, "a number >= 0"),
    "refine.max_iterations": (at_least(0), "an integer >= 0 (0: no cap)"),
    "refine.first_n_init": (at_least(1), "an integer >= 1"),
    "refine.patience": (at_least(0), "an integer >= 0 (refinement updates without a new lowest "
                                     "label change before stopping; 0: off)"),
    "refine.target_scale": (one_of("free", "fixed"), "free or fixed"),
    "refine.method": (one_of("dekm", "dec"), "dekm (method A's rotation targets) or dec (DEC's "
                                              "KL refinement)"),
    "refine.cadence": (one_of("epoch", "global"), "epoch (every update_interval steps of an "
                       "epoch and at its end) or global (every update_interval steps across "
                       "epochs)"),
    "refine.alpha": (positive, "a number > 0 (DEC's Student-t degrees of freedom)"),
    "dataset.image_size": (at_least(1), "an integer >= 1 (pixels per side after resizing; "
                           "the CAEs take a multiple of 4 from 8 up: 28, 32, …)"),
    "dataset.channels": (lambda v: whole(v) and v in (1, 3), "1 (grey) or 3 (RGB)"),
    "dataset.limit": (at_least(1), "an integer >= 1 (or null: every image)"),
    "manifold.every_n_epochs": (at_least(0), "an integer >= 0 (0: through the manifold only "
                                          "where refinement starts and at the last epoch)"),
}  # fmt: skip


# what Lightning accepts that training and clustering both handle (its aliases included)
PRECISIONS = {"32", "32-true", "bf16-mixed", "bf16", "16-mixed", "16"}

# keys that are never null: the schedule counts epochs (pretraining, refinement, cadences), so
# trainer.max_epochs=null (Lightning's "stop by max_steps") has no meaning here
REQUIRED = ("k", "trainer.max_epochs")


def require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate(cfg: DictConfig) -> None:
    """Every check that needs no data: raises ConfigError naming the key, value and fix."""
    _check_unknown_keys(cfg, Config)
    for group in NAMED_GROUPS:
        node = cfg.get(group)
        require(node is not None, f"no {group} chosen: add {group}=<option> (see conf/{group}/)")
        name = node.get("name")
        require(
            isinstance(name, str) and name != "",
            f"the {group} option has no `name:` key; add `name: <option>` to its YAML file "
            f"in conf/{group}/ (it names the option in metrics.json and the report)",
        )
    classes = OmegaConf.select(
        cfg, "dataset.num_classes", default=None, throw_on_resolution_failure=False
    )
    k = OmegaConf.select(cfg, "k", default=None, throw_on_resolution_failure=False)
    require(
        k is not None,
        f"k is not set, and dataset={cfg.dataset.name} gives no number of classes before "
        "its images are read: give k=<number of clusters> (e.g. the number of classes "
        "you expect) or k=auto (chosen without labels)"
        if classes is None
        else f"k=null: give k=<number of clusters> or k=auto, or leave k out to use "
        f"dataset={cfg.dataset.name}'s {classes} classes",
    )
    for key, (ok, want) in RULES.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is None and key not in REQUIRED:
            continue  # an optional node that is absent (e.g. manifold=none)
        require(ok(value), f"{key}={value!r} must be {want}")
    require(
        cfg.k_search.max >= cfg.k_search.min,
        f"k_search.max={cfg.k_search.max} must be >= k_search.min={cfg.k_search.min}",
    )
    _check_method_options(cfg.refine)
    for model_key, data_key in (("image_size", "image_size"), ("in_channels", "channels")):
        mine, theirs = cfg.model.get(model_key), cfg.dataset.get(data_key)
        require(
            mine is None or theirs is None or mine == theirs,
            f"model.{model_key}={mine!r} differs from dataset.{data_key}={theirs!r}, the images "
            f"the model would be fed: set dataset.{data_key}={mine!r} instead (the dataset "
            "resizes or converts its images, and the model follows it)",
        )
    from deepcluster.models.base import ACTIVATIONS

    name = cfg.activation.name
    require(
        name in ACTIVATIONS,
        f"activation.name={name!r} is unknown; choose one of {', '.join(sorted(ACTIVATIONS))}",
    )
    require(
        cfg.trainer.max_epochs > 0 or cfg.get("ckpt_path") not in (None, "", "last"),
        "trainer.max_epochs=0 clusters a trained model without training: give its "
        "checkpoint with ckpt_path=<run dir>/checkpoints/last.ckpt",
    )
    _check_accelerator(cfg)


def _check_unknown_keys(node: DictConfig, schema: type, prefix: str = "") -> None:
    """`+kk=3` (the `+` Hydra suggests when a key is not in the config) adds a key no code
    reads: the run would go ahead without it. Refused, with the nearest known key."""
    known = [f.name for f in fields(schema)]
    for key in node:
        if prefix == "" and key == "hydra":
            continue
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {prefix}{close[0]}? " if close else ""
            value = OmegaConf.select(node, str(key), throw_on_missing=False)
            raise ConfigError(
                f"{prefix}{key}={value!r} is not a deepcluster setting, and nothing would read "
                f"it: {hint}Drop it, or see `python -m deepcluster --cfg job` for every key"
            )
    for f in fields(schema):  # the nested schemas: refine, k_search, data, optim
        if is_dataclass(f.default_factory) and isinstance(node.get(f.name), DictConfig):
            _check_unknown_keys(node[f.name], f.default_factory, f"{prefix}{f.name}.")


def _check_method_options(refine: DictConfig) -> None:
    """An option of one refinement method set while the other runs, or while none runs, would
    do nothing: say so rather than run without it. (Schedule keys such as refine.patience stay
    legal with refine=none: the reproduction pretrains experiment files that set them.)"""
    if not refine.enabled:
        idle = [
            f"refine.{key}={refine.get(key, default)!r}"
            for key, default in (("alpha", 1.0), ("target_scale", "free"))
            if refine.get(key, default) != default
        ]
        require(
            not idle,
            f"refine=none (refine.enabled=false) trains no refinement, so {' and '.join(idle)} "
            "would do nothing. "
            "Drop it, or choose the refinement it belongs to (refine.alpha: refine=dec; "
            "refine.target_scale: refine=dekm)",
        )
        return
    if refine.method == "dec":
        require(
            refine.target_scale == "free",
            f"refine.target_scale={refine.target_scale!r} is method A's option (refine.method="
            "dekm); DEC's targets sharpen soft assignments and have no scale. Drop it, or use "
            "refine=dekm",
        )
    else:
        require(
            refine.alpha == 1.0,
            f"refine.alpha={refine.alpha!r} is DEC's Student-t degrees of freedom (refine="
            "dec); method A's refinement (refine.method=dekm) has none. Drop it, or use "
            "refine=dec",
        )


def _check_accelerator(cfg: DictConfig) -> None:
    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda"):
        import torch

        require(
            torch.cuda.is_available(),
            f"trainer={cfg.trainer.get('name', accelerator)}: no GPU found "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}, "
            "torch.cuda.is_available() is False). Run on the CPU with trainer=default (the "
            "default), or install a CUDA build of PyTorch on a machine with an NVIDIA GPU.",
        )
    if str(cfg.clusterer.get("device", "auto")) == "cuda":
        import torch

        require(
            torch.cuda.is_available(),
            "clusterer.device=cuda: no GPU found (torch.cuda.is_available() is False). Use "
            "clusterer.device=auto (the GPU where there is one, else the CPU) or cpu",
        )
