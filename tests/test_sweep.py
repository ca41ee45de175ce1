"""Multirun sweeps end to end: every job's outputs, and the report over them."""

import csv
import json

import pytest

from deepcluster.report import main as report_main
from tests.conftest import run_cli

TINY = [
    "trainer.max_epochs=1",
    "data.batch_size=128",
    "logger=csv",
    "manifold=none",
    "dataset.limit=500",
]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    proc = run_cli(
        "-m", "k=5,10", "activation=relu,sigmoid", *TINY, f"hydra.sweep.dir={out}", cwd=out
    )
    return out, proc


def test_two_by_two_sweep_writes_four_job_folders(sweep):
    out, proc = sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p.parent for p in out.glob("*/metrics.json"))
    assert len(jobs) == 4
    seen = {
        (
            json.loads((j / "metrics.json").read_text())["k"],
            json.loads((j / "metrics.json").read_text())["activation"],
        )
        for j in jobs
    }
    assert seen == {(5, "relu"), (5, "sigmoid"), (10, "relu"), (10, "sigmoid")}


def test_report_has_a_row_per_job_and_the_figures(sweep, capsys):
    out, _ = sweep
    assert report_main([str(out), "--no-wandb"]) == 0
    rows = list(csv.DictReader((out / "report.csv").open()))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    assert {r["overrides"] for r in rows} == {
        "k=5 activation=relu",
        "k=5 activation=sigmoid",
        "k=10 activation=relu",
        "k=10 activation=sigmoid",
    }
    assert all(0.0 < float(r["acc"]) <= 1.0 for r in rows)
    md = (out / "report.md").read_text()
    assert md.count("\n| ") == 1 + 4  # header + four rows (the separator starts with |-)
    for fig in ("acc_vs_k", "acc_vs_epoch", "latent_maps"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 1000
    assert "4/4 jobs ok" in capsys.readouterr().out


def test_a_failing_job_does_not_stop_the_sweep(tmp_path):
    # k=5000 > 500 digits: that job fails validation; the others run (two at a time, joblib)
    launcher = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    proc = run_cli(
        "-m", "k=3,5000,4", *TINY, *launcher, f"hydra.sweep.dir={tmp_path}", cwd=tmp_path
    )
    # every job ran; the command's status says one failed, and a last line says which
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "1 job(s) of the sweep failed: 1 (failed.json" in proc.stderr
    assert all((tmp_path / job / "metrics.json").is_file() for job in ("0", "2"))
    failed = json.loads((tmp_path / "1" / "failed.json").read_text())
    assert "k=5000 is not smaller than the number of images (500)" in failed["error"]
    assert report_main([str(tmp_path), "--no-wandb"]) == 0
    rows = {r["overrides"]: r for r in csv.DictReader((tmp_path / "report.csv").open())}
    assert rows["k=3"]["status"] == rows["k=4"]["status"] == "ok"
    assert rows["k=3"]["k"] == "3" and "." not in rows["k=3"]["seed"] + rows["k=3"]["epochs"]
    assert rows["k=5000"]["status"] == "failed" and "k=5000" in rows["k=5000"]["error"]
    assert "**failed**" in (tmp_path / "report.md").read_text()


def test_report_logs_to_wandb_offline(sweep, monkeypatch):
    out, _ = sweep
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert report_main([str(out), "--out", str(out / "again")]) == 0
    # beside the report's other files (--out), not in the sweep folder
    assert list((out / "again" / "wandb").glob("offline-run-*")), "report run missing"


def test_report_on_a_folder_without_jobs_is_a_clear_error(tmp_path, capsys):
    assert report_main([str(tmp_path)]) == 2
    assert "no Hydra job folders" in capsys.readouterr().err
    (tmp_path / ".hydra").mkdir()  # a single run's folder: said so, not "no job folders"
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- k=3\n")
    assert report_main([str(tmp_path)]) == 2
    assert "is a single run, not a sweep" in capsys.readouterr().err


def test_sweep_job_is_its_own_wandb_run_grouped_and_tagged(compose, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from hydra.core.hydra_config import HydraConfig

    from deepcluster import tracking

    fake = SimpleNamespace(
        sweep=SimpleNamespace(dir="multirun/2026-11-25/15-00-00"),
        job=SimpleNamespace(override_dirname="activation=relu,k=5", num=0),
        overrides=SimpleNamespace(task=["k=5", "activation=relu", "hydra.verbose=true"]),
        runtime=SimpleNamespace(cwd=str(tmp_path)),
    )
    monkeypatch.setattr(tracking, "is_multirun", lambda: True)
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: fake))
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose("logger=wandb", "k=5", f"data.root={tmp_path}")
    wandb_logger = next(
        lg for lg in tracking.make_loggers(cfg, tmp_path) if "Wandb" in type(lg).__name__
    )
    init = wandb_logger._wandb_init
    # absolute: `python -m deepcluster.report multirun/…` from anywhere finds the group
    assert init["group"] == str(tmp_path.resolve() / "multirun/2026-11-25/15-00-00")
    assert init["name"] == "activation=relu,k=5"
    assert set(init["tags"]) == {"k=5", "activation=relu"}  # hydra.* settings are not tags
    tracking.finish_wandb([wandb_logger])


def test_a_mistyped_wandb_option_is_refused_before_the_data_loads(compose, tmp_path):
    """+logger.wandb.projct=x passed and wandb.init raised a TypeError at the first log,
    after the data had loaded; options of either WandbLogger or wandb.init pass."""
    from deepcluster.errors import ConfigError
    from deepcluster.run import run

    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="logger.wandb.projct: .*did you mean logger.wandb.pro"):
        run(compose("logger=wandb", "+logger.wandb.projct=x", f"output_dir={out}"))
    assert not out.exists()
    from deepcluster.tracking import check_wandb_options

    check_wandb_options(
        compose("logger=wandb", "+logger.wandb.entity=me", "+logger.wandb.log_model=true")
    )


def test_a_loggers_own_name_and_folder_are_kept(compose, tmp_path, monkeypatch):
    """+logger.wandb.name / +logger.csv.save_dir were accepted and then overwritten."""
    from deepcluster import tracking

    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose(
        "logger=wandb",
        "+logger.wandb.name=my-run",
        f"+logger.csv.save_dir={tmp_path / 'logs'}",
        f"data.root={tmp_path}",
    )
    loggers = {type(lg).__name__: lg for lg in tracking.make_loggers(cfg, tmp_path / "run")}
    assert loggers["WandbLogger"]._wandb_init["name"] == "my-run"
    assert loggers["CSVLogger"].save_dir == str(tmp_path / "logs")
    tracking.finish_wandb([loggers["WandbLogger"]])


def fake_job(sweep_dir, name, overrides, metrics=None):
    """A job folder as a sweep leaves it: its overrides, its config, maybe its metrics."""
    job = sweep_dir / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    config = {"k": "auto", "activation": {"name": "relu"}, "dataset": {"name": "digits"}}
    config["clusterer"] = {"name": "kmeans"}
    (job / ".hydra" / "config.yaml").write_text(json.dumps(config))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps({"history": [], **metrics}))


def test_report_of_k_auto_with_an_unfinished_job_and_bars_per_variant(tmp_path, monkeypatch):
    """A k=auto job without a result has no k (not the string "auto" in W&B's numeric
    column); the ACC-vs-k bars are per variant (here the clusterer), never a mean of two."""
    from deepcluster import report

    fake_job(tmp_path, "0", ["k=auto", "clusterer=kmeans"], {"k": 4, "acc": 0.25})
    fake_job(tmp_path, "1", ["k=auto", "clusterer=ward"], {"k": 4, "acc": 0.35})
    fake_job(tmp_path, "2", ["k=auto", "clusterer=gmm"])  # killed: no metrics.json
    plotted = {}
    from deepcluster import plots

    real = plots.acc_vs_k

    def spy(rows, path, *args, **kwargs):
        plotted.update({r["variant"]: r["acc"] for r in rows}, group=kwargs.get("group"))
        return real(rows, path, *args, **kwargs)

    monkeypatch.setattr(plots, "acc_vs_k", spy)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = report.build_report(tmp_path, use_wandb=True)
    assert [r["k"] for r in out["rows"]] == [4, 4, None]
    assert plotted == {"clusterer=kmeans": 0.25, "clusterer=ward": 0.35, "group": "variant"}
    assert out["wandb"] is not None


def test_k_auto_jobs_are_a_variant_of_their_own(tmp_path, monkeypatch):
    # a k=auto job that chose 10 was averaged into the bar of the jobs given k=10
    import yaml

    from deepcluster import plots, report

    for job, (k_given, k_end, acc) in enumerate([("10", 10, 0.9), ("auto", 10, 0.3)]):
        (tmp_path / str(job) / ".hydra").mkdir(parents=True)
        (tmp_path / str(job) / ".hydra" / "overrides.yaml").write_text(
            yaml.safe_dump([f"k={k_given}", "activation=relu"])
        )
        metrics = {"k": k_end, "acc": acc, "nmi": acc, "activation": "relu", "history": []}
        (tmp_path / str(job) / "metrics.json").write_text(json.dumps(metrics))
    bars = {}

    def acc_vs_k(rows, *args, **kwargs):
        for r in rows:
            bars.setdefault((r["variant"], r["k"]), []).append(r["acc"])
        return tmp_path / "acc_vs_k.png"

    monkeypatch.setattr(plots, "acc_vs_k", acc_vs_k)
    report.build_report(tmp_path, tmp_path / "out", use_wandb=False)
    assert bars == {("all", 10): [0.9], ("k=auto", 10): [0.3]}


def test_report_names_the_refinement_and_whether_it_ran(tmp_path):
    """The refine column showed the config's on/off flag (True for a refinement that never
    started, and the same for dekm and dec); a failed job's row left it blank."""
    from deepcluster import report

    ran = {"refine_method": "dekm", "history": [{"epoch": 3, "phase": "refine"}]}
    fake_job(tmp_path, "0", ["refine=dekm"], {"k": 3, "acc": 0.5, **ran})
    cut = {"refine_method": "dec", "history": [{"epoch": 0, "phase": "pretrain"}]}
    fake_job(tmp_path, "1", ["refine=dec"], {"k": 3, "acc": 0.4, **cut})
    fake_job(tmp_path, "2", ["refine=none"], {"k": 3, "acc": 0.3, "refine_method": None})
    fake_job(tmp_path, "3", ["refine=dekm", "seed=7"])  # killed: from its config
    config = json.loads((tmp_path / "3" / ".hydra" / "config.yaml").read_text())
    config.update(refine={"method": "dekm", "enabled": True}, manifold={"name": "umap"}, seed=7)
    (tmp_path / "3" / ".hydra" / "config.yaml").write_text(json.dumps(config))
    # a killed refine=none job: its composed config keeps the schema's method (dekm), unused
    fake_job(tmp_path, "4", ["refine=none"])
    config.update(refine={"method": "dekm", "enabled": False})
    (tmp_path / "4" / ".hydra" / "config.yaml").write_text(json.dumps(config))
    only = {"refine_method": "dekm", "history": [{"epoch": 5, "phase": "cluster_only"}]}
    fake_job(tmp_path, "5", ["trainer.max_epochs=0"], {"k": 3, "acc": 0.5, **only})
    rows = report.build_report(tmp_path, use_wandb=False)["rows"]
    refine = [r["refine"] for r in rows]
    assert refine == ["dekm", "dec (not reached)", "none", "dekm", "none", "cluster only"]
    assert (rows[3]["manifold"], rows[3]["seed"]) == ("umap", 7)


def test_report_says_when_silhouettes_come_from_different_spaces(tmp_path):
    """`-m manifold=none,umap refine=none`: UMAP's packed embedding scores higher silhouettes
    than the codes do, whatever the clusters; the report says the column mixes spaces."""
    from deepcluster import report

    fake_job(tmp_path, "0", ["manifold=none"], {"k": 3, "silhouette": 0.3, "scores_space": "codes"})
    fake_job(tmp_path, "1", ["manifold=umap"], {"k": 3, "silhouette": 0.8, "scores_space": "umap"})
    note = "computed in different spaces (codes, umap"
    assert note in report.build_report(tmp_path, use_wandb=False)["markdown"].read_text()
    one = tmp_path / "one_space"
    fake_job(one, "0", ["seed=0"], {"k": 3, "silhouette": 0.3, "scores_space": "codes"})
    fake_job(one, "1", ["seed=1"], {"k": 3, "silhouette": 0.4, "scores_space": "codes"})
    assert (
        "different spaces" not in report.build_report(one, use_wandb=False)["markdown"].read_text()
    )


def test_a_damaged_record_is_a_row_not_a_crash_and_no_finished_job_is_an_error(tmp_path, capsys):
    """A metrics.json cut short (a full disk, a killed copy) stopped the whole report with a
    JSONDecodeError; a sweep with no finished job reported "0/N jobs ok" and exited 0."""
    from deepcluster import report

    fake_job(tmp_path, "0", ["k=3"], {"k": 3, "acc": 0.5})
    fake_job(tmp_path, "1", ["k=4"])
    (tmp_path / "1" / "metrics.json").write_text('{"k": 4, "acc": 0.')
    fake_job(tmp_path, "2", ["k=5"])
    (tmp_path / "2" / "failed.json").write_text("[1, 2]")
    rows = report.build_report(tmp_path, use_wandb=False)["rows"]
    assert [r["status"] for r in rows] == ["ok", "unreadable", "failed"]
    assert "metrics.json cannot be read" in rows[1]["error"]
    assert "failed.json holds a list" in rows[2]["error"]
    assert report.main([str(tmp_path), "--no-wandb"]) == 0
    (tmp_path / "0" / "metrics.json").unlink()
    assert report.main([str(tmp_path), "--no-wandb"]) == 1
    assert "no job of the sweep finished" in capsys.readouterr().err


def test_secrets_are_hidden_in_logged_hparams_but_data_keys_show():
    """Every key with "key" in its name was logged as *** (dataset.images_key, labels_key)."""
    from omegaconf import OmegaConf

    from deepcluster.tracking import public_config

    cfg = OmegaConf.create(
        {
            "dataset": {"images_key": "x_train", "labels_key": "y_train", "monkey": 1},
            "logger": {"api_key": "abc", "key": "abc", "WANDB_API_KEY": "abc", "token": "t"},
        }
    )
    public = public_config(cfg)
    assert public["dataset"] == {"images_key": "x_train", "labels_key": "y_train", "monkey": 1}
    assert set(public["logger"].values()) == {"***"}
    from deepcluster.tracking import looks_secret

    for name in ("accessKey", "privateKey", "auth", "passphrase", "pwd", "ssh_key", "cookie"):
        assert looks_secret(name), name
    for name in ("author", "images_key", "keypoints", "cookies_dir", "password_hint_shown"):
        assert looks_secret(name) == (name == "password_hint_shown"), name


def test_a_secret_given_as_an_override_is_not_a_wandb_tag_name_or_metadata(
    compose, tmp_path, monkeypatch
):
    """public_config hid it in the hparams, but the overrides became the sweep job's tags and
    name, and W&B records the command line."""
    import sys
    from types import SimpleNamespace

    from hydra.core.hydra_config import HydraConfig

    from deepcluster import tracking

    secret = "+logger.wandb.settings.api_key=SECRET123"
    fake = SimpleNamespace(
        sweep=SimpleNamespace(dir="multirun/x"),
        job=SimpleNamespace(override_dirname=f"{secret},k=3", num=0),
        overrides=SimpleNamespace(task=[secret, "k=3"]),
        runtime=SimpleNamespace(cwd=str(tmp_path)),
    )
    monkeypatch.setattr(tracking, "is_multirun", lambda: True)
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: fake))
    monkeypatch.setattr(sys, "argv", ["deepcluster", "-m", secret, "k=3"])
    monkeypatch.setenv("WANDB_MODE", "offline")
    group, tags, name = tracking.sweep_identity()
    assert "SECRET123" not in f"{tags}{name}" and "+logger.wandb.settings.api_key=***" in tags
    cfg = compose("logger=wandb", secret, "k=3", f"data.root={tmp_path}")
    wandb_logger = next(
        lg for lg in tracking.make_loggers(cfg, tmp_path) if "Wandb" in type(lg).__name__
    )
    settings = wandb_logger._wandb_init["settings"]
    assert settings == {"api_key": "SECRET123", "x_disable_meta": True}  # the user's kept
    tracking.finish_wandb([wandb_logger])


def test_a_sweeps_multirun_yaml_keeps_no_secret(tmp_path, monkeypatch):
    """Hydra writes the sweep's command to <sweep>/multirun.yaml before its first job; the
    job scrubs it with its own .hydra/ files (a crashed sweep never reaches its end)."""
    from types import SimpleNamespace

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from deepcluster import tracking

    secret = "+logger.wandb.settings.api_key=SECRET123"
    sweep = tmp_path / "multirun" / "x"
    sweep.mkdir(parents=True)
    saved = sweep / "multirun.yaml"
    OmegaConf.save(
        {
            "hydra": {
                "overrides": {"task": [secret, "k=3,4"]},
                "job": {"override_dirname": f"{secret},k=3,4", "name": "x"},
            },
            "logger": {"wandb": {"settings": {"api_key": "SECRET123"}}},
            "k": 3,
        },
        saved,
    )
    fake = SimpleNamespace(
        mode=RunMode.MULTIRUN,
        output_subdir=None,
        sweep=SimpleNamespace(dir="multirun/x"),
        runtime=SimpleNamespace(cwd=str(tmp_path), output_dir=str(sweep / "0")),
    )
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: fake))
    assert tracking.hydra_saved_configs() == [saved]
    assert tracking.scrub_saved_config(saved) is True
    text = saved.read_text()
    assert "SECRET123" not in text and text.count("***") == 3 and "k=3,4" in text
    assert tracking.scrub_saved_config(saved) is False  # nothing left: the file stays as is


def test_a_finished_jobs_overrides_survive_a_refused_command_in_its_folder(tmp_path):
    """`… k=500 hydra.run.dir=<job>` refused: Hydra had rewritten the job's .hydra/ with the
    refused command, and the report then showed `k=500` beside the finished k=2 result."""
    from deepcluster import report

    for job, k in (("0", 2), ("1", 3)):
        fake_job(tmp_path, job, [f"k={k}", "activation=relu"], {"k": k, "acc": 0.5})
        command = f"deepcluster k={k} activation=relu hydra.run.dir={tmp_path / job}"
        (tmp_path / job / "run_info.json").write_text(json.dumps({"command": command}))
    (tmp_path / "0" / ".hydra" / "overrides.yaml").write_text("- k=500\n- activation=sigmoid\n")
    rows = report.build_report(tmp_path, use_wandb=False)["rows"]
    assert [r["overrides"] for r in rows] == ["k=2", "k=3"]
