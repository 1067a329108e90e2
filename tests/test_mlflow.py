"""Runs logged to MLflow, read back with MLflow's own client from a local sqlite store; and the
sentence that says how to install MLflow when it is missing."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from rich.console import Console

import ablang
from ablang import cli

STUDY = Path(__file__).parent / "fixtures" / "api" / "tiny.abl"
INSTALL = "pip install 'ablang[mlflow]'"


# ---------------------------------------------------------------------------- without mlflow


@pytest.fixture
def no_mlflow(monkeypatch):
    """``import mlflow`` fails, as where the extra is not installed."""
    monkeypatch.setitem(sys.modules, "mlflow", None)


def test_the_api_says_how_to_install_mlflow_before_running(no_mlflow, tmp_path):
    study = ablang.load(STUDY)
    with pytest.raises(ablang.StudyError) as e:
        study.run(tmp_path / "out", mlflow="sqlite:///x.db", quiet=True)
    assert e.value.errors[0].code == "mlflow-missing"
    assert INSTALL in str(e.value)
    assert not (tmp_path / "out").exists()  # nothing ran


def test_the_cli_says_how_to_install_mlflow_and_exits_2(no_mlflow, tmp_path, capsys):
    code = cli.main(["run", str(STUDY), "--out", str(tmp_path / "out"), "--mlflow"])
    assert code == 2
    err = capsys.readouterr().err
    assert "needs the mlflow package" in err and INSTALL in err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- with mlflow


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    pytest.importorskip("mlflow")
    base = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{base / 'mlflow.db'}"
    results = ablang.load(STUDY).run(
        base / "run", device="cpu", mlflow=uri, console=Console(file=io.StringIO())
    )
    return results, uri


def _runs(uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}"
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return client, parents, runs


@pytest.mark.slow
def test_a_run_is_logged_with_its_settings_and_files(logged):
    results, uri = logged
    client, parents, _ = _runs(uri, "tiny")  # the study file's name
    (parent,) = parents
    assert parent.info.run_name == "API test"
    params = parent.data.params
    assert params["model"] == "tiny" and params["sampler"] == "ddim" and params["steps"] == "5"
    assert params["seed"] == "1" and params["prompts"] == "3, 7" and params["mode"] == "measure"
    # what was measured: a study with a sweep also measures the two bands (its phase summary)
    measured = "mse, psnr, ssim, accuracy, composition, detail"
    assert params["metrics"] == measured and params["sweeps"] == "sweep1"
    assert params["study.sha256"] == results.doc["study"]["sha256"]
    assert "searches" not in params  # empty settings are left out
    assert parent.data.metrics["run_seconds"] == pytest.approx(results.doc["run_seconds"])

    run_id = parent.info.run_id
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"results.json", "study", "heatmaps", "grids"} <= top
    assert [a.path for a in client.list_artifacts(run_id, "study")] == ["study/tiny.abl"]
    assert [a.path for a in client.list_artifacts(run_id, "heatmaps")] == [
        "heatmaps/heatmap_sweep1.png"
    ]
    assert len(client.list_artifacts(run_id, "grids")) == len(results.variants)
    local = Path(client.download_artifacts(run_id, "study/tiny.abl"))
    assert local.read_text() == STUDY.read_text()
    # the store is one folder: artifacts beside the database, not in the current directory
    store = Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts"
    assert parent.info.artifact_uri.startswith(store.resolve().as_uri())
    assert list(store.rglob("results.json"))
    assert not (Path.cwd() / "mlruns").exists()


@pytest.mark.slow
def test_each_variant_is_a_nested_run_with_its_metrics(logged):
    results, uri = logged
    client, (parent,), runs = _runs(uri, "tiny")
    children = {
        r.info.run_name: r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert sorted(children) == sorted(results.variants)
    table = results.table().set_index("name")
    for name, run in children.items():
        metrics = run.data.metrics
        for col in (
            *("mse", "ssim", "accuracy", "ssim_lo", "ssim_hi", "unet_flops", "flops_ratio"),
            *("seconds", "flop_speedup", "wall_speedup"),
        ):
            assert metrics[col] == pytest.approx(table.loc[name, col], rel=1e-12), (name, col)
        assert run.data.params["origin"] == table.loc[name, "origin"]
        assert run.data.params.get("interventions", "") == table.loc[name, "interventions"]
        (grid,) = client.list_artifacts(run.info.run_id)
        assert grid.path.endswith(".png")
    # the baseline's psnr is +inf (identical images): left out rather than logged as a number
    assert "psnr" not in children["baseline"].data.metrics
    assert children["late_cache"].data.metrics["psnr"] == pytest.approx(
        table.loc["late_cache", "psnr"]
    )


@pytest.mark.slow
def test_the_cli_logs_a_run_too(logged, tmp_path):
    results, uri = logged
    # resuming the finished run measures and reports it again without sampling anything
    argv = [
        "run",
        str(STUDY),
        "--out",
        str(results.out),
        "--resume",
        "--device",
        "cpu",
        "--mlflow",
        uri,
        "--mlflow-experiment",
        "from-cli",
    ]
    assert cli.main(argv) == 0
    client, (parent,), runs = _runs(uri, "from-cli")
    assert parent.data.params["model"] == "tiny"
    assert len(runs) == 1 + len(results.variants)
    assert "results.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}


@pytest.mark.slow
def test_an_opened_run_can_be_logged_later(logged):
    results, uri = logged
    run_id = ablang.open_run(results.out).log_mlflow(uri, experiment="later")
    _, (parent,), runs = _runs(uri, "later")
    assert parent.info.run_id == run_id and len(runs) == 1 + len(results.variants)
