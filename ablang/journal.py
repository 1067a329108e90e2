"""The run journal: every finished variant is on disk before the next one starts.

Layout of a run's output directory::

    journal.jsonl     first line: the run's fingerprint; then one line per finished variant
    baseline.pt       the baseline trajectory (x before every step, and the final images)
    samples/NNN.pt    the images of the variant on journal line NNN

A file is written to a temporary name and renamed, and the journal line is appended and synced
only after its file is complete, so an interrupted run (Ctrl-C, a crash) leaves a journal that
names only complete variants. ``--resume`` reads it back and skips what is done, provided the
study, model and mode are the same (the fingerprint says so).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ablang.errors import AblangError
from ablang.execute import Samples, Trajectory


def _atomic_save(obj: object, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Journal:
    def __init__(self, out: Path, fingerprint: str, resume: bool) -> None:
        self.out = out
        self.path = out / "journal.jsonl"
        self.fingerprint = fingerprint
        self._done: dict[str, Samples] = {}
        self._records = 0  # variant lines in the journal; names the next samples file
        out.mkdir(parents=True, exist_ok=True)
        (out / "samples").mkdir(exist_ok=True)
        if resume and self.path.exists():
            self._load()
        else:
            for stale in (self.path, out / "baseline.pt"):
                stale.unlink(missing_ok=True)
            self._write_line({"fingerprint": fingerprint})

    def _write_line(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _load(self) -> None:
        data = self.path.read_bytes()
        lines = data.decode("utf-8", errors="replace").splitlines()
        try:
            header = json.loads(lines[0]) if lines else {}
        except json.JSONDecodeError:
            header = {}
        if header.get("fingerprint") != self.fingerprint:
            raise AblangError(
                f"cannot resume: {self.out} holds a run of a different study, model or mode",
                hint="run without --resume to start over, or choose another --out",
                code="resume-mismatch",
            )
        if not data.endswith(b"\n"):  # a line cut by a crash: remove it, so that the next record
            with open(self.path, "r+b") as f:  # starts on a line of its own
                f.truncate(data.rfind(b"\n") + 1)
        for line in lines[1:]:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a crash: that variant is not done
                continue
            self._records += 1
            file = self.out / "samples" / rec["file"]
            if not file.exists():
                continue
            images = torch.load(file, weights_only=True)
            self._done[rec["variant"]] = Samples(
                rec["variant"], images, rec["start_step"], rec["seconds"], rec["evaluations"]
            )

    @property
    def done(self) -> dict[str, Samples]:
        return dict(self._done)

    def baseline(self) -> Trajectory | None:
        path = self.out / "baseline.pt"
        if not path.exists():
            return None
        d = torch.load(path, weights_only=True)
        return Trajectory(list(d["xs"]), d["seconds"], list(d["step_seconds"]))

    def save_baseline(self, traj: Trajectory) -> None:
        _atomic_save(
            {
                "xs": torch.stack(traj.xs),
                "seconds": traj.seconds,
                "step_seconds": traj.step_seconds,
            },
            self.out / "baseline.pt",
        )

    def append(self, samples: Samples) -> None:
        # numbered by journal line, not by variants done: a re-run variant whose file was missing
        # must not overwrite the file of one done after it
        name = f"{self._records:04d}.pt"
        _atomic_save(samples.images, self.out / "samples" / name)
        self._write_line(
            {
                "variant": samples.variant,
                "file": name,
                "start_step": samples.start_step,
                "seconds": samples.seconds,
                "evaluations": samples.evaluations,
            }
        )
        self._done[samples.variant] = samples
        self._records += 1
