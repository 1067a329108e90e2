"""journal: what an interrupted run leaves on disk, and what --resume makes of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ablang.errors import AblangError
from ablang.execute import Samples, Trajectory
from ablang.journal import Journal

FP = "fingerprint-a"


def samples(name: str, seed: int, start: int = 2) -> Samples:
    images = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    return Samples(name, images, start_step=start, seconds=0.25 + seed, evaluations=12 * seed)


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()[1:]]


def test_append_and_resume_round_trip(tmp_path):
    j = Journal(tmp_path, FP, resume=False)
    written = [samples("baseline-less", 1), samples("drop skip[3]", 2, start=5), samples("v3", 3)]
    traj = Trajectory([torch.randn(3, 1, 8, 8) for _ in range(4)], 1.5, [0.5, 0.5, 0.5])
    j.save_baseline(traj)
    for s in written:
        j.append(s)
    back = Journal(tmp_path, FP, resume=True)
    assert list(back.done) == [s.variant for s in written]
    for s in written:
        got = back.done[s.variant]
        torch.testing.assert_close(got.images, s.images, rtol=0, atol=0)
        assert (got.start_step, got.seconds, got.evaluations) == (
            s.start_step,
            s.seconds,
            s.evaluations,
        )
    base = back.baseline()
    assert base is not None and base.seconds == 1.5 and base.step_seconds == [0.5, 0.5, 0.5]
    assert len(base.xs) == 4
    for a, b in zip(base.xs, traj.xs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_fresh_run_forgets_the_old_journal(tmp_path):
    j = Journal(tmp_path, FP, resume=False)
    j.save_baseline(Trajectory([torch.zeros(1, 1, 2, 2)] * 2, 1.0, [1.0]))
    j.append(samples("a", 1))
    fresh = Journal(tmp_path, FP, resume=False)
    assert fresh.done == {} and fresh.baseline() is None
    assert Journal(tmp_path, FP, resume=True).done == {}


def test_resume_without_a_journal_starts_over(tmp_path):
    j = Journal(tmp_path / "new", FP, resume=True)
    assert j.done == {} and j.baseline() is None
    assert (tmp_path / "new" / "journal.jsonl").exists()


def test_a_different_fingerprint_refuses_to_resume(tmp_path):
    Journal(tmp_path, FP, resume=False).append(samples("a", 1))
    with pytest.raises(AblangError) as info:
        Journal(tmp_path, "fingerprint-b", resume=True)
    assert info.value.code == "resume-mismatch"
    assert info.value.hint and "--resume" in info.value.hint
    # nothing was destroyed by the refusal
    assert list(Journal(tmp_path, FP, resume=True).done) == ["a"]


def test_a_line_cut_by_a_crash_is_ignored(tmp_path):
    j = Journal(tmp_path, FP, resume=False)
    j.append(samples("a", 1))
    j.append(samples("b", 2))
    path = tmp_path / "journal.jsonl"
    text = path.read_text()
    cut = text.rstrip("\n").rfind("\n") + 1 + 10  # keep 10 characters of b's line, no newline
    path.write_text(text[:cut])
    back = Journal(tmp_path, FP, resume=True)
    assert list(back.done) == ["a"]


def test_after_a_cut_line_new_records_are_not_lost(tmp_path):
    """Resume after a crash mid-line, finish a variant, crash again: the variant finished after
    the resume must still be found by the next resume."""
    j = Journal(tmp_path, FP, resume=False)
    j.append(samples("a", 1))
    j.append(samples("b", 2))
    path = tmp_path / "journal.jsonl"
    text = path.read_text()
    path.write_text(text[: text.rstrip("\n").rfind("\n") + 1 + 10])
    resumed = Journal(tmp_path, FP, resume=True)
    resumed.append(samples("b", 2))
    resumed.append(samples("c", 3))
    again = Journal(tmp_path, FP, resume=True)
    assert sorted(again.done) == ["a", "b", "c"]
    torch.testing.assert_close(again.done["c"].images, samples("c", 3).images, rtol=0, atol=0)


def test_a_variant_whose_file_is_missing_is_not_done(tmp_path):
    j = Journal(tmp_path, FP, resume=False)
    for k, name in enumerate(["a", "b", "c"]):
        j.append(samples(name, k + 1))
    files = {r["variant"]: r["file"] for r in records(tmp_path)}
    (tmp_path / "samples" / files["b"]).unlink()
    back = Journal(tmp_path, FP, resume=True)
    assert sorted(back.done) == ["a", "c"]


def test_recomputing_a_missing_variant_keeps_the_others(tmp_path):
    """The file of a re-run variant must not overwrite another variant's file."""
    j = Journal(tmp_path, FP, resume=False)
    for k, name in enumerate(["a", "b", "c"]):
        j.append(samples(name, k + 1))
    files = {r["variant"]: r["file"] for r in records(tmp_path)}
    (tmp_path / "samples" / files["b"]).unlink()
    back = Journal(tmp_path, FP, resume=True)
    back.append(samples("b", 2))
    final = Journal(tmp_path, FP, resume=True)
    assert sorted(final.done) == ["a", "b", "c"]
    for k, name in enumerate(["a", "b", "c"]):
        torch.testing.assert_close(
            final.done[name].images, samples(name, k + 1).images, rtol=0, atol=0
        )


def test_no_temporary_files_are_left(tmp_path):
    j = Journal(tmp_path, FP, resume=False)
    j.save_baseline(Trajectory([torch.zeros(1, 1, 2, 2)] * 2, 1.0, [1.0]))
    j.append(samples("a", 1))
    assert not list(tmp_path.rglob("*.tmp"))
