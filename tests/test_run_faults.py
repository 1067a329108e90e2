"""Fault injection: a run killed at any point resumes to exactly the results of a run never
interrupted (issue 11: "nothing lost on kill, resume exact").

Two kinds of kill:

- in-process, at a random durable operation (a journal line appended, a file replaced), seeded:
  the kill happens before the operation, or halfway through it (half a journal line written, or
  the temporary file written but not renamed), which is every state a SIGKILL can leave, since
  every change to the run directory goes through one of these two operations;
- a real SIGKILL of ``python -m ablang.cli run`` after a random delay.

Each interrupted run is resumed with ``--resume``; its metrics and every variant's images must
equal the uninterrupted run's, bit for bit.
"""

from __future__ import annotations

import io
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console

from ablang import fsio
from ablang.commands.check import check_file
from ablang.journal import Journal
from ablang.run import RunOptions, fingerprint, run_plan

pytestmark = pytest.mark.slow

STUDY = Path(__file__).parent / "fixtures" / "run" / "faults.abl"
TRIALS = 20


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no ``except Exception`` catches it."""


def plan():
    checked = check_file(STUDY)
    assert checked.plan is not None, checked.errors
    return checked.plan


@pytest.fixture(scope="module")
def shared_model(tmp_path_factory):
    """Load (and trace) the model once for every run of this module: ablang never modifies it."""
    import ablang.session
    from ablang.models.registry import load_model

    model = load_model(plan().model, torch.device("cpu"))
    mp = pytest.MonkeyPatch()
    mp.setattr(ablang.session, "load_model", lambda spec, device: model)
    yield model
    mp.undo()


def run(out: Path, resume: bool = False):
    return run_plan(
        plan(),
        RunOptions(out=out, device="cpu", resume=resume, emit=False),
        Console(file=io.StringIO()),
    )


def outcome(out: Path, model) -> tuple[dict, dict]:
    """(metrics and FLOPs per variant from results.json, images per variant from the journal)."""
    doc = json.loads((out / "results.json").read_text())
    numbers = {v["name"]: (v["metrics"], v["cost"]["unet_flops"]) for v in doc["variants"]}
    journal = Journal(out, fingerprint(plan(), model, "measure"), resume=True)
    assert journal.warnings == []
    images = {name: s.images for name, s in journal.done.items()}
    images["baseline"] = journal.baseline().xs[-1]
    return numbers, images


def same(a: tuple[dict, dict], b: tuple[dict, dict]) -> None:
    assert a[0] == b[0]
    assert sorted(a[1]) == sorted(b[1])
    for name in a[1]:
        assert torch.equal(a[1][name], b[1][name]), name


class Faults:
    """Counts durable operations; raises ``Killed`` at operation ``at`` (None: never)."""

    def __init__(self, monkeypatch, at: int | None, rng: random.Random) -> None:
        self.count, self.at, self.rng = 0, at, rng
        original_line = Journal._write_line
        original_write = fsio.atomic_write
        faults = self

        def write_line(journal, record):
            if faults.due():
                text = json.dumps(record) + "\n"
                if faults.rng.random() < 0.5:  # torn: part of the line reached the disk
                    with open(journal.path, "a", encoding="utf-8") as f:
                        f.write(text[: faults.rng.randrange(1, len(text))])
                raise Killed
            return original_line(journal, record)

        def atomic_write(path, write):
            if faults.due():
                if faults.rng.random() < 0.5:  # the temporary file written, not yet renamed
                    tmp = Path(path).with_name(f".{Path(path).name}.killed.tmp")
                    with open(tmp, "wb") as f:
                        write(f)
                raise Killed
            return original_write(path, write)

        monkeypatch.setattr(Journal, "_write_line", write_line)
        monkeypatch.setattr(fsio, "atomic_write", atomic_write)

    def due(self) -> bool:
        self.count += 1
        return self.at is not None and self.count - 1 == self.at


@pytest.fixture(scope="module")
def reference(shared_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    mp = pytest.MonkeyPatch()
    counter = Faults(mp, None, random.Random(0))
    run(out)
    mp.undo()
    return outcome(out, shared_model), counter.count


def test_killed_at_random_points_resumes_exactly(reference, shared_model, tmp_path, monkeypatch):
    expected, operations = reference
    assert operations >= 8  # header, baseline (file + line), 3 variants (file + line), results
    rng = random.Random(11)
    points = sorted(rng.randrange(operations) for _ in range(TRIALS))
    for trial, at in enumerate(points):
        out = tmp_path / f"trial{trial}"
        with monkeypatch.context() as m:
            Faults(m, at, rng)
            with pytest.raises(Killed):
                run(out)
        run(out, resume=True)
        same(outcome(out, shared_model), expected)


def test_sigkill_at_random_times_resumes_exactly(reference, shared_model, tmp_path):
    """A real SIGKILL of the CLI process, at random delays over a run's length."""
    expected, _ = reference
    rng = random.Random(7)
    args = [sys.executable, "-m", "ablang.cli", "run", str(STUDY), "--device", "cpu", "--no-emit"]
    t0 = time.monotonic()
    subprocess.run([*args, "--out", str(tmp_path / "timing")], check=True, capture_output=True)
    length = time.monotonic() - t0
    cut = 0  # kills that landed before the run finished
    for trial in range(3):
        out = tmp_path / f"kill{trial}"
        p = subprocess.Popen(
            [*args, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.3, 1.0) * length)
        p.send_signal(signal.SIGKILL)
        p.wait()
        cut += not (out / "results.json").exists()
        run(out, resume=True)
        same(outcome(out, shared_model), expected)
    assert cut >= 1
