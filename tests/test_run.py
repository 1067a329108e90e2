"""ablang run end to end on the built-in model: results.json, heatmaps and grids, determinism,
resuming an interrupted run, and a failed run leaving the model as it was.

The study is ``tests/fixtures/run/small.abl``: 10 steps, one sample of two digits, a bare
intervention, a named cache variant and a 2 x 2 sweep.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from rich.console import Console

from ablang import cli
from ablang.commands.check import check_file
from ablang.execute import Executor
from ablang.models import tiny
from ablang.models.tiny import TinyAdapter
from ablang.run import RunOptions, run_plan

pytestmark = pytest.mark.slow

STUDY = Path(__file__).parent / "fixtures" / "run" / "small.abl"
CONTRACT = [
    "ablang_version",
    "study",
    "model",
    "sampler",
    "seed",
    "samples",
    "noise",
    "prompts",
    "variants",
    "sweeps",
    "mode",
    "seeds",
    "versions",
    "searches",
    "statistics",
    "run_seconds",
]
PNG = b"\x89PNG\r\n\x1a\n"


def plan():
    checked = check_file(STUDY)
    assert not checked.errors and checked.plan is not None
    return checked.plan


def run(out: Path, **options):
    return run_plan(
        plan(), RunOptions(out=out, device="cpu", **options), Console(file=io.StringIO())
    )


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def numbers(doc: dict) -> dict:
    """What must not change between runs of the same study: metrics and FLOPs per variant."""
    return {v["name"]: (v["metrics"], v["cost"]["unet_flops"]) for v in doc["variants"]}


def journaled(out: Path) -> list[str]:
    lines = (out / "journal.jsonl").read_text().splitlines()[1:]
    records = [json.loads(line) for line in lines]
    return [r["variant"] for r in records if "variant" in r]  # the baseline has a line too


@pytest.fixture(scope="module")
def first(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("first")
    run(out)
    return out


def test_a_run_writes_results_heatmaps_and_grids(first):
    doc = results(first)
    assert list(doc) == CONTRACT
    p = plan()
    assert [v["name"] for v in doc["variants"]] == [v.name for v in p.variants]
    assert len(doc["variants"]) == 7 and doc["variants"][0]["name"] == "baseline"
    base = doc["variants"][0]
    assert base["interventions"] == []
    assert base["metrics"]["mse"] == 0.0 and base["metrics"]["ssim"] == pytest.approx(1.0)
    assert base["cost"]["flops_ratio"] == 1.0 and base["cost"]["flop_speedup"] == 1.0
    assert base["cost"]["wall_speedup"] == pytest.approx(1.0)
    for v in doc["variants"]:
        # a study with a sweep also measures the two bands, for its phase summary
        assert set(v["metrics"]) == {"mse", "ssim", "accuracy", "composition", "detail"}
        bands = v["metrics"]["composition"] + v["metrics"]["detail"]
        assert bands == pytest.approx(v["metrics"]["mse"], rel=1e-4, abs=1e-12)
        assert set(v["cost"]) == {
            "unet_flops",
            "flops_ratio",
            "seconds",
            "flop_speedup",
            "wall_speedup",
        }
        # every mean over images carries its interval, psnr's read off mse's (2 images here)
        assert set(v["intervals"]) == set(v["metrics"]) == set(v["within_noise"])
        lo, hi = v["intervals"]["ssim"]
        assert lo <= v["metrics"]["ssim"] <= hi
        assert 0.0 <= v["metrics"]["accuracy"] <= 1.0
    assert max(v["metrics"]["mse"] for v in doc["variants"]) > 0  # some variant changed the images
    cache = next(v for v in doc["variants"] if v["name"] == "late_cache")
    assert cache["cost"]["flops_ratio"] < 1.0  # reused steps skip computation
    assert doc["sampler"] == {
        "kind": "ddpm",
        "steps": 10,
        "guidance": 3.0,
        "timesteps": [999, 888, 777, 666, 555, 444, 333, 222, 111, 0],
    }
    assert doc["prompts"] == ["3", "7"] and doc["seeds"] == [0, 0] and doc["mode"] == "measure"
    assert doc["model"] == {"name": "tiny", "checksum": tiny.CHECKSUMS[tiny.WEIGHTS]}
    (sweep,) = doc["sweeps"]
    assert sweep["components"] == ["skip[6]", "skip[7]"] and len(sweep["windows"]) == 2
    names = {v["name"] for v in doc["variants"]}
    assert all(name in names for row in sweep["variants"] for name in row)

    heatmap = first / f"heatmap_{sweep['name']}.png"
    assert heatmap.read_bytes()[:8] == PNG
    assert [c["component"] for c in sweep["phases"]["components"]] == ["skip[6]", "skip[7]"]
    assert (first / f"phases_{sweep['name']}.png").read_bytes()[:8] == PNG
    grids = sorted((first / "grids").glob("*.png"))
    assert len(grids) == 7 and all(g.read_bytes()[:8] == PNG for g in grids)
    assert (first / "grids" / "baseline.png").exists()
    assert journaled(first) and set(journaled(first)) == names - {"baseline"}


def test_the_same_study_twice_gives_the_same_numbers(first, tmp_path):
    run(tmp_path)
    assert numbers(results(tmp_path)) == numbers(results(first))


def test_an_interrupted_run_resumes_without_recomputing(first, tmp_path, monkeypatch):
    original = Executor.run_batch
    calls: list[list[str]] = []

    def interrupted(self, variants, *args, **kwargs):
        if len(calls) == 1:  # the second batch: Ctrl-C
            raise KeyboardInterrupt
        calls.append([v.name for v in variants])
        return original(self, variants, *args, **kwargs)

    monkeypatch.setattr(Executor, "run_batch", interrupted)
    args = ["run", str(STUDY), "--out", str(tmp_path), "--device", "cpu"]
    assert cli.main(args) == 130
    done = journaled(tmp_path)
    assert done == calls[0] and 0 < len(done) < 6
    assert not (tmp_path / "results.json").exists()

    resumed: list[str] = []

    def counting(self, variants, *args, **kwargs):
        resumed.extend(v.name for v in variants)
        return original(self, variants, *args, **kwargs)

    monkeypatch.setattr(Executor, "run_batch", counting)
    baseline_calls = []
    original_baseline = Executor.baseline
    monkeypatch.setattr(
        Executor,
        "baseline",
        lambda self, *a: baseline_calls.append(1) or original_baseline(self, *a),
    )
    assert cli.main(args + ["--resume"]) == 0
    assert not set(resumed) & set(done)  # journaled variants were not run again
    assert baseline_calls == []  # nor the baseline
    assert sorted(resumed + done) == sorted(v.name for v in plan().variants[1:])
    assert numbers(results(tmp_path)) == numbers(results(first))


def test_resume_refuses_another_study(first, tmp_path):
    other = tmp_path / "other.abl"
    other.write_text(STUDY.read_text().replace("seed 0", "seed 1"))
    assert cli.main(["run", str(other), "--out", str(first), "--resume", "--device", "cpu"]) == 2
    assert results(first)["seed"] == 0  # the first run's results are untouched


def test_a_failed_run_leaves_the_model_unchanged(tmp_path, monkeypatch):
    loaded = []
    original_load = TinyAdapter.load

    def load(self, device):
        loaded.append(original_load(self, device))
        return loaded[-1]

    original = Executor.run_batch
    calls = []

    def failing(self, variants, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("out of memory (simulated)")
        return original(self, variants, *args, **kwargs)

    monkeypatch.setattr(TinyAdapter, "load", load)
    monkeypatch.setattr(Executor, "run_batch", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        run(tmp_path)
    model = loaded[-1]  # the run's own (checking the study loads one too, for its components)
    fresh = tiny.load_unet().to(memory_format=torch.channels_last)  # as the adapter loads it
    assert not model.unet.training
    for name, value in fresh.state_dict().items():
        torch.testing.assert_close(model.unet.state_dict()[name], value, rtol=0, atol=0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 32, 32, generator=g)
    t, y = torch.tensor([900, 100]), torch.tensor([3, 10])
    with torch.no_grad():
        expected = fresh(x, t, y)
        torch.testing.assert_close(model.unet(x, t, y), expected, rtol=0, atol=0)
        torch.testing.assert_close(model.traced.gm(x, t, y), expected, rtol=1e-6, atol=1e-6)
