"""The run journal: every finished variant is on disk before the next one starts.

Layout of a run's output directory::

    journal.jsonl          first line: the run's fingerprint; then one line per finished
                           variant (and one for the baseline), each naming its file and sha256
    baseline.pt            the baseline trajectory (x before every step, and the final images)
    samples/<identity>.pt  a variant's images; the name is a hash of the variant's identity
                           (its name and resolved interventions), so two variants never share
                           a file, and a variant computed again replaces only its own file

A file is written atomically (``ablang.fsio``) and its journal line is appended and synced only
after the file is complete, so an interrupted run (Ctrl-C, a crash, SIGKILL) leaves a journal
that names only complete variants. ``--resume`` reads it back and skips what is done, provided
the study, model and mode are the same (the fingerprint says so).

Nothing read back is trusted: a line that is not JSON of the right shape, a file name that
would leave ``samples/``, a file that is missing, empty, truncated or fails its checksum is
dropped with a warning (``Journal.warnings``) and that variant is computed again. Damage never
makes a resume fail.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from pathlib import Path

import torch

from ablang.errors import AblangError
from ablang.execute import Samples, Trajectory
from ablang.fsio import atomic_write_bytes, io_error, make_dirs

JOURNAL = "journal.jsonl"
BASELINE = "baseline.pt"
SAMPLES = "samples"
_FILE_NAME = re.compile(r"[0-9a-f]{32}\.pt")


def sample_file_name(identity: str) -> str:
    """``samples/`` file name of a variant: 32 hex digits of the identity's sha256."""
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:32] + ".pt"


def _encode(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _variant_record_problem(rec: object) -> str | None:
    """Why ``rec`` is not a variant line of the right shape (None when it is one)."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    shape = {"variant": str, "file": str, "sha256": str, "start_step": int, "evaluations": int}
    for key, kind in shape.items():
        if not isinstance(rec.get(key), kind) or isinstance(rec.get(key), bool):
            return f"field {key!r} missing or not a {kind.__name__}"
    if not _is_number(rec.get("seconds")):
        return "field 'seconds' missing or not a number"
    if not _FILE_NAME.fullmatch(rec["file"]):
        return f"file name {rec['file']!r} is not a samples/ file of this journal"
    return None


class Journal:
    """What a run has finished, in ``out``. ``identity(variant)`` strings name the sample files
    (``append`` takes one); ``warnings`` lists what was dropped on resume, in plain words."""

    def __init__(self, out: Path, fingerprint: str, resume: bool) -> None:
        self.out = out
        self.path = out / JOURNAL
        self.fingerprint = fingerprint
        self.warnings: list[str] = []
        self._done: dict[str, Samples] = {}
        self._baseline_sha: str | None = None
        make_dirs(out)
        self.samples_dir = make_dirs(out / SAMPLES)
        if resume and self.path.exists() and self._header_readable():
            self._load()
        else:
            try:
                for stale in (self.path, out / BASELINE):
                    stale.unlink(missing_ok=True)
                for old in self.samples_dir.iterdir():
                    if _FILE_NAME.fullmatch(old.name) and not old.is_symlink():
                        old.unlink()
            except OSError as e:
                raise io_error(out, e, "clear the old run in") from e
            self._write_line({"fingerprint": fingerprint})

    def _header_readable(self) -> bool:
        """False when a kill cut the first line itself: nothing was done yet, start over."""
        with open(self.path, "rb") as f:
            first = f.readline()
        try:
            ok = first.endswith(b"\n") and isinstance(json.loads(first), dict)
        except (json.JSONDecodeError, UnicodeDecodeError):
            ok = False
        if not ok:
            self.warnings.append(f"{self.path}: its first line is cut; the run starts over")
        return ok

    def _write_line(self, record: dict) -> None:
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise io_error(self.path, e) from e

    def _warn(self, lineno: int, why: str) -> None:
        where = f"{self.path}:{lineno}" if lineno else str(self.out)  # 0: the baseline
        self.warnings.append(f"{where}: {why}; that part is computed again")

    def _load(self) -> None:
        if self.path.is_symlink():
            raise AblangError(
                f"cannot resume: {self.path} is a symbolic link",
                code="resume-mismatch",
                hint="run without --resume to start over, or choose another --out",
            )
        data = self.path.read_bytes()
        lines = data.decode("utf-8", errors="replace").splitlines()
        try:
            header = json.loads(lines[0]) if lines else {}
        except json.JSONDecodeError:
            header = {}
        if not isinstance(header, dict) or header.get("fingerprint") != self.fingerprint:
            raise AblangError(
                f"cannot resume: {self.out} holds a run of a different study, model or mode",
                hint="run without --resume to start over, or choose another --out",
                code="resume-mismatch",
            )
        if not data.endswith(b"\n"):  # a line cut by a crash: remove it, so that the next record
            with open(self.path, "r+b") as f:  # starts on a line of its own
                f.truncate(data.rfind(b"\n") + 1)
        for lineno, line in enumerate(lines[1:], start=2):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                if lineno != len(lines) or data.endswith(b"\n"):  # a cut last line is no news
                    self._warn(lineno, "not valid JSON")
                continue
            if isinstance(rec, dict) and set(rec) == {"baseline", "sha256"}:
                if rec["baseline"] == BASELINE and isinstance(rec["sha256"], str):
                    self._baseline_sha = rec["sha256"]
                else:
                    self._warn(lineno, "a baseline line of the wrong shape")
                continue
            problem = _variant_record_problem(rec)
            if problem is not None:
                self._warn(lineno, problem)
                continue
            images = self._read_tensor(self.samples_dir / rec["file"], rec["sha256"], lineno)
            if images is None:
                self._done.pop(rec["variant"], None)
                continue
            self._done[rec["variant"]] = Samples(
                rec["variant"], images, rec["start_step"], float(rec["seconds"]), rec["evaluations"]
            )

    def _read_checked(self, path: Path, sha256: str, lineno: int) -> object | None:
        """The object saved in ``path`` if it is a regular file inside the run directory whose
        bytes match ``sha256``; None (and a warning) otherwise."""
        where = f"{path.parent.name}/{path.name}"
        if path.is_symlink() or (
            path.exists() and not path.resolve().is_relative_to(self.out.resolve())
        ):
            self._warn(lineno, f"{where} points outside the run directory; not read")
            return None
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self._warn(lineno, f"{where} is missing")
            return None
        except OSError as e:
            self._warn(lineno, f"{where} cannot be read ({e.strerror or e})")
            return None
        if not data:
            self._warn(lineno, f"{where} is empty")
            return None
        if hashlib.sha256(data).hexdigest() != sha256:
            self._warn(lineno, f"{where} is damaged (its checksum does not match)")
            return None
        try:
            return torch.load(io.BytesIO(data), weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file is recomputed, never fatal
            self._warn(lineno, f"{where} cannot be loaded ({type(e).__name__})")
            return None

    def _read_tensor(self, path: Path, sha256: str, lineno: int) -> torch.Tensor | None:
        got = self._read_checked(path, sha256, lineno)
        if got is not None and not isinstance(got, torch.Tensor):
            self._warn(lineno, f"{path.name} does not hold images")
            return None
        return got

    @property
    def done(self) -> dict[str, Samples]:
        return dict(self._done)

    def baseline(self) -> Trajectory | None:
        """The saved baseline if its journal line and checksum vouch for it, else None."""
        if self._baseline_sha is None:
            return None
        d = self._read_checked(self.out / BASELINE, self._baseline_sha, 0)
        try:
            assert isinstance(d, dict)
            xs, seconds, step_seconds = d["xs"], d["seconds"], d["step_seconds"]
            assert isinstance(xs, torch.Tensor) and _is_number(seconds)
            assert isinstance(step_seconds, list) and all(map(_is_number, step_seconds))
        except (AssertionError, KeyError):
            if d is not None:
                self.warnings.append(
                    f"{self.out / BASELINE} is not a baseline; it is computed again"
                )
            self._baseline_sha = None
            return None
        images = d.get("images")  # a latent model's decoded images
        if images is not None and not isinstance(images, torch.Tensor):
            images = None
        return Trajectory(list(xs), float(seconds), [float(s) for s in step_seconds], images)

    def save_baseline(self, traj: Trajectory) -> None:
        data = _encode(
            {"xs": torch.stack(traj.xs), "seconds": traj.seconds, "step_seconds": traj.step_seconds}
            | ({"images": traj.images_} if traj.images_ is not None else {})
        )
        atomic_write_bytes(self.out / BASELINE, data)
        self._baseline_sha = hashlib.sha256(data).hexdigest()
        self._write_line({"baseline": BASELINE, "sha256": self._baseline_sha})

    def append(self, samples: Samples, identity: str | None = None) -> None:
        """Record a finished variant. ``identity`` (default: the variant's name) must differ
        between the variants of one run; ``ablang.run.variant_identity`` gives one."""
        name = sample_file_name(identity if identity is not None else samples.variant)
        data = _encode(samples.images)
        atomic_write_bytes(self.samples_dir / name, data)
        self._write_line(
            {
                "variant": samples.variant,
                "file": name,
                "sha256": hashlib.sha256(data).hexdigest(),
                "start_step": samples.start_step,
                "seconds": samples.seconds,
                "evaluations": samples.evaluations,
            }
        )
        self._done[samples.variant] = samples
