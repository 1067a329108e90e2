"""ablang run on a Ray cluster (ablang/distributed.py): the same results.json numbers and the
same images as a local run, for a study with variants, a sweep and a search; a worker killed in
the middle of a task; a driver interrupted and resumed; Ray missing.

The end-to-end tests share one local Ray cluster of 2 CPUs (a module fixture) and a local run
of the same study, and keep the study tiny (4 steps, one image, 7 variants and a search of 6
candidates). On a 2-core machine shared with other jobs they took 15 minutes in all (most of it
waiting for CPU); they are marked slow.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console

from ablang import cli
from ablang.commands.check import check_file
from ablang.distributed import DIE_ONCE, INSTALL, plan_cluster, worker_plan
from ablang.errors import AblangError
from ablang.journal import Journal
from ablang.plan import ModelSpec, Plan
from ablang.run import RunOptions, ray_address, run_plan

STUDY = """\
study "Ray"
model tiny
sampler ddpm steps 4 guidance 3.0
seed 0
samples 1
prompts "3"
metrics mse, ssim
device cpu
drop skip[7] for t in 500..1000
variant late {
    cache dec[6] every 2 for t in 0..600
}
sweep drop skip[6..7] for t in 0..1000 by 500
search fast speedup where ssim >= 0.5 over drop of mid, dec[6..8] for t in 0..1000 by 500
"""
BATCH = 2  # variants per chunk: several chunks, so that both workers get some


# ---------------------------------------------------------------------------- fast checks


def write_study(folder: Path, text: str = STUDY) -> Path:
    path = folder / "ray.abl"
    path.write_text(text)
    return path


def test_without_ray_the_run_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    study = write_study(tmp_path)
    assert cli.main(["run", str(study), "--out", str(tmp_path / "out"), "--ray"]) == 2
    err = capsys.readouterr().err
    assert INSTALL in err and "Ray" in err
    assert not (tmp_path / "out").exists()  # nothing ran


def test_the_ray_setting_resolves_and_the_flags_override_it(tmp_path):
    checked = check_file(write_study(tmp_path, STUDY + 'ray "10.0.0.5:6379"\n'))
    assert not checked.errors and checked.plan is not None
    plan = checked.plan
    assert plan.ray == "10.0.0.5:6379"
    assert ray_address(plan, RunOptions()) == "10.0.0.5:6379"
    assert ray_address(plan, RunOptions(ray="off")) is None
    assert ray_address(plan, RunOptions(ray="local")) == "local"
    # where the variants run is not what they mean: the plan equals the one without the setting
    # (but for the file's checksum), so a run resumes with or without it
    plain = check_file(write_study(tmp_path, STUDY)).plan
    assert plan == dataclasses.replace(plain, sha256=plan.sha256)


@pytest.mark.parametrize(
    ("line", "message"),
    [("ray locl", "unknown Ray cluster `locl`"), ('ray "head"', '"head" is not a Ray address')],
)
def test_a_bad_ray_setting_is_a_positioned_error(tmp_path, line, message):
    checked = check_file(write_study(tmp_path, STUDY + line + "\n"))
    (error,) = checked.errors
    assert error.message == message and error.code == "ray-address"
    assert error.span.line == STUDY.count("\n") + 1


def test_the_resume_command_keeps_the_ray_flags(tmp_path):
    from ablang.commands.run import resume_command

    study = write_study(tmp_path)
    plan = check_file(study).plan
    args = cli.build_parser().parse_args(
        ["run", str(study), "--out", "o", "--ray", "10.0.0.5:6379", "--ray-workers", "3"]
    )
    assert resume_command(args, plan).endswith("--ray 10.0.0.5:6379 --ray-workers 3 --resume")
    args = cli.build_parser().parse_args(["run", str(study), "--out", "o", "--no-ray"])
    assert resume_command(args, plan).endswith("--no-ray --resume")


def test_workers_are_one_per_gpu_else_one_per_cpu():
    assert plan_cluster({"CPU": 8.0}, "auto") == plan_cluster({"CPU": 8.0}, "cpu")
    cpu = plan_cluster({"CPU": 8.0}, "auto")
    assert (cpu.workers, cpu.gpus, cpu.device) == (8, 0, "cpu")
    gpu = plan_cluster({"CPU": 32.0, "GPU": 4.0}, "auto")
    assert (gpu.workers, gpu.gpus, gpu.device) == (4, 1, "cuda")
    assert plan_cluster({"CPU": 32.0, "GPU": 4.0}, "cpu").device == "cpu"
    assert plan_cluster({"CPU": 8.0}, "auto", workers=3).workers == 3
    with pytest.raises(AblangError, match="no GPUs"):
        plan_cluster({"CPU": 8.0}, "cuda")


def test_workers_get_the_model_files_as_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "unet.pt").write_bytes(b"")
    plan = Plan(model=ModelSpec("glide", "unet.pt"))
    assert worker_plan(plan).model.path == str(tmp_path / "unet.pt")
    hub = Plan(model=ModelSpec("diffusers", "org/model-id"))
    assert worker_plan(hub).model.path == "org/model-id"  # not a file here: left to the worker


# ---------------------------------------------------------------------------- on a Ray cluster


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")  # the `ray` extra; CI installs it (the `dev` extra)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return write_study(tmp_path_factory.mktemp("study"))


def plan_of(study: Path):
    checked = check_file(study)
    assert not checked.errors and checked.plan is not None
    return checked.plan


def run(study: Path, out: Path, **options):
    options = {"device": "cpu", "batch": BATCH, "emit": False, **options}
    return run_plan(plan_of(study), RunOptions(out=out, **options), Console(file=io.StringIO()))


@pytest.fixture(scope="module")
def local(study, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local")
    run(study, out, ray="off")
    return out


def numbers(out: Path) -> dict:
    """What must not depend on where a variant ran: each variant's metrics and FLOPs, and each
    search's path, points and best variant."""
    doc = json.loads((out / "results.json").read_text())
    variants = {v["name"]: (v["metrics"], v["cost"]["unet_flops"]) for v in doc["variants"]}
    searches = [
        {k: v for k, v in s.items() if "seconds" not in k and k != "best_cost"}
        for s in doc["searches"]
    ]
    return {"variants": variants, "searches": searches}


def images(out: Path) -> dict[str, torch.Tensor]:
    """Every journaled image tensor, by file name (a hash of the variant's identity)."""
    return {p.name: torch.load(p, weights_only=True) for p in (out / "samples").glob("*.pt")}


def assert_same_run(out: Path, local: Path) -> None:
    assert numbers(out) == numbers(local)
    mine, theirs = images(out), images(local)
    assert mine and mine.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert torch.equal(mine[name], tensor), name  # bit for bit
    grids = sorted(p.name for p in (local / "grids").glob("*.png"))
    assert grids and grids == sorted(p.name for p in (out / "grids").glob("*.png"))
    for name in grids:
        assert (out / "grids" / name).read_bytes() == (local / "grids" / name).read_bytes(), name


@pytest.mark.slow
def test_a_ray_run_gives_the_local_numbers_and_images(cluster, study, local, tmp_path):
    res = run(study, tmp_path, ray="local")
    assert_same_run(tmp_path, local)
    (found,) = res.searches
    assert len(found.points) > 1 and not math.isnan(found.best.speedup)


@pytest.mark.slow
def test_a_killed_worker_s_task_runs_again_with_the_same_results(
    cluster, study, local, tmp_path, monkeypatch
):
    marker = tmp_path / "died"
    monkeypatch.setenv(DIE_ONCE, str(marker))
    run(study, tmp_path / "out", ray="local")
    assert marker.exists()  # a worker did exit in the middle of a task
    assert_same_run(tmp_path / "out", local)


@pytest.mark.slow
def test_an_interrupted_driver_resumes_with_the_same_results(
    cluster, study, local, tmp_path, monkeypatch
):
    original = Journal.append
    appended: list[str] = []

    def interrupted(self, samples, identity=None):
        if len(appended) == 2:  # after two variants came back: Ctrl-C
            raise KeyboardInterrupt
        appended.append(samples.variant)
        original(self, samples, identity)

    monkeypatch.setattr(Journal, "append", interrupted)
    args = ["run", str(study), "--out", str(tmp_path), "--batch", str(BATCH), "--no-emit"]
    assert cli.main(args + ["--ray"]) == 130
    assert not (tmp_path / "results.json").exists()
    monkeypatch.setattr(Journal, "append", original)

    lines = (tmp_path / "journal.jsonl").read_text().splitlines()[1:]
    journaled = [json.loads(line).get("variant") for line in lines]
    assert [v for v in journaled if v] == appended  # exactly the finished variants, kept

    resumed: list[str] = []

    def counting(self, samples, identity=None):
        resumed.append(samples.variant)
        original(self, samples, identity)

    monkeypatch.setattr(Journal, "append", counting)
    assert cli.main(args + ["--ray", "--resume"]) == 0
    assert not set(resumed) & set(appended)  # nothing finished ran again
    assert_same_run(tmp_path, local)
