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


# ---- issue 11: a journal that cannot point at the wrong data ------------------------------


def lines(out: Path) -> list[str]:
    return (out / "journal.jsonl").read_text().splitlines()


def write_lines(out: Path, text: list[str]) -> None:
    (out / "journal.jsonl").write_text("\n".join(text) + "\n")


def three(out: Path) -> Journal:
    j = Journal(out, FP, resume=False)
    for k, name in enumerate(["a", "b", "c"]):
        j.append(samples(name, k + 1))
    return j


def test_files_are_named_by_identity_not_by_position(tmp_path):
    """Defect 2: a damaged middle line made the re-run variant reuse another's file number."""
    three(tmp_path)
    text = lines(tmp_path)
    text[2] = text[2][:15]  # b's line damaged in the middle of the journal
    write_lines(tmp_path, text)
    back = Journal(tmp_path, FP, resume=True)
    assert sorted(back.done) == ["a", "c"]
    assert any("not valid JSON" in w for w in back.warnings)
    back.append(samples("b", 2))  # recomputed: must not overwrite a's or c's file
    again = Journal(tmp_path, FP, resume=True)
    assert sorted(again.done) == ["a", "b", "c"]
    for k, name in enumerate(["a", "b", "c"]):
        torch.testing.assert_close(
            again.done[name].images, samples(name, k + 1).images, rtol=0, atol=0
        )
    files = [
        json.loads(t)["file"]
        for t in lines(tmp_path)[1:]
        if t.startswith('{"variant"') and t.endswith("}")
    ]
    assert len(set(files)) == 3


@pytest.mark.parametrize(
    "line",
    [
        "[1, 2, 3]",
        '"a string"',
        "{}",
        '{"variant": "b"}',
        '{"variant": "b", "file": 7, "sha256": "x", "start_step": 0, "seconds": 1, "evaluations": 1}',
        '{"variant": 3, "file": "0.pt", "sha256": "x", "start_step": 0, "seconds": 1, "evaluations": 1}',
        '{"variant": "b", "file": "%s", "sha256": "x", "start_step": "0", "seconds": 1, "evaluations": 1}',
        '{"variant": "b", "file": "%s", "sha256": "x", "start_step": 0, "seconds": null, "evaluations": 1}',
    ],
)
def test_a_line_of_the_wrong_shape_is_dropped_not_fatal(tmp_path, line):
    """Defect 3: valid JSON of the wrong shape gave TypeError/KeyError and a resume that failed
    forever."""
    three(tmp_path)
    text = lines(tmp_path)
    b_file = json.loads(text[2])["file"]
    text[2] = line.replace("%s", b_file)
    write_lines(tmp_path, text)
    back = Journal(tmp_path, FP, resume=True)
    assert sorted(back.done) == ["a", "c"]
    assert len(back.warnings) == 1 and "journal.jsonl:3" in back.warnings[0]


@pytest.mark.parametrize("damage", ["empty", "truncated", "flipped", "garbage", "not-a-tensor"])
def test_a_damaged_samples_file_is_recomputed(tmp_path, damage):
    """Defect 3: a 0-byte or truncated .pt file gave EOFError and exit 1 on every resume."""
    three(tmp_path)
    file = tmp_path / "samples" / {r["variant"]: r["file"] for r in records(tmp_path)}["b"]
    data = file.read_bytes()
    if damage == "empty":
        file.write_bytes(b"")
    elif damage == "truncated":
        file.write_bytes(data[: len(data) // 2])
    elif damage == "flipped":
        file.write_bytes(data[:-40] + bytes([data[-40] ^ 1]) + data[-39:])
    elif damage == "garbage":
        file.write_bytes(b"\x80\x02garbage")
    else:  # a valid checkpoint with the right checksum, but of a dict, not images
        import hashlib
        import io

        buf = io.BytesIO()
        torch.save({"x": 1}, buf)
        file.write_bytes(buf.getvalue())
        text = lines(tmp_path)
        rec = json.loads(text[2])
        rec["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
        text[2] = json.dumps(rec)
        write_lines(tmp_path, text)
    back = Journal(tmp_path, FP, resume=True)
    assert sorted(back.done) == ["a", "c"]
    assert len(back.warnings) == 1 and "computed again" in back.warnings[0]


@pytest.mark.parametrize(
    "name", ["../../elsewhere/samples/0000.pt", "/etc/passwd", "sub/x.pt", "..", ""]
)
def test_file_names_outside_samples_are_never_read(tmp_path, name, monkeypatch):
    """Defect 6: a journal line's file was loaded from outside the run folder."""
    three(tmp_path)
    opened: list[str] = []
    original = torch.load
    monkeypatch.setattr(
        torch, "load", lambda f, *a, **k: opened.append(str(f)) or original(f, *a, **k)
    )
    text = lines(tmp_path)
    rec = json.loads(text[2])
    rec["file"] = name
    text[2] = json.dumps(rec)
    write_lines(tmp_path, text)
    back = Journal(tmp_path, FP, resume=True)
    assert sorted(back.done) == ["a", "c"] and back.warnings
    assert not any(name and name in f for f in opened)


def test_a_symlink_out_of_the_run_directory_is_not_followed(tmp_path):
    out = tmp_path / "run"
    three(out)
    file = out / "samples" / {r["variant"]: r["file"] for r in records(out)}["b"]
    outside = tmp_path / "outside.pt"
    outside.write_bytes(file.read_bytes())  # even a file with the right checksum
    file.unlink()
    file.symlink_to(outside)
    back = Journal(out, FP, resume=True)
    assert sorted(back.done) == ["a", "c"]
    assert any("outside the run directory" in w for w in back.warnings)


@pytest.mark.parametrize("damage", ["empty", "truncated", "replaced", "no-line"])
def test_a_damaged_baseline_is_recomputed(tmp_path, damage):
    j = Journal(tmp_path, FP, resume=False)
    j.save_baseline(Trajectory([torch.randn(1, 1, 4, 4) for _ in range(3)], 1.0, [0.5, 0.5]))
    path = tmp_path / "baseline.pt"
    data = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[:100])
    elif damage == "replaced":  # another run's baseline, complete but not this one
        torch.save(
            {"xs": torch.zeros(3, 1, 4, 4), "seconds": 1.0, "step_seconds": [0.5, 0.5]}, path
        )
    else:
        write_lines(tmp_path, lines(tmp_path)[:1])
    back = Journal(tmp_path, FP, resume=True)
    assert back.baseline() is None


def test_a_fresh_run_removes_the_old_runs_sample_files(tmp_path):
    three(tmp_path)
    (tmp_path / "samples" / "notes.txt").write_text("mine")
    Journal(tmp_path, FP, resume=False)
    assert [p.name for p in (tmp_path / "samples").iterdir()] == ["notes.txt"]


def test_a_header_cut_by_a_kill_starts_over(tmp_path):
    """A kill while the fingerprint line was being written: resume starts over, not refuses."""
    (tmp_path / "journal.jsonl").write_text('{"fingerpr')
    back = Journal(tmp_path, FP, resume=True)
    assert back.done == {} and back.warnings
    assert json.loads((tmp_path / "journal.jsonl").read_text()) == {"fingerprint": FP}
