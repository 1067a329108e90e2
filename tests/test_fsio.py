"""fsio: a replaced file is the old one or the new one, never half; a full or read-only disk is
a sentence naming the path (exit 2), with the original untouched."""

from __future__ import annotations

import errno
import os

import pytest

from ablang import cli, fsio
from ablang.errors import AblangError

STUDY = "model tiny\ndrop   skip[3]    for t in 600..1000\n"


def full_disk(monkeypatch, code=errno.ENOSPC, after: int = 5):
    """Every write to a file fails with ``code`` after ``after`` bytes, as on a full disk."""
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, data):
            if self.n + len(data) > after:
                self.f.write(data[: after - self.n])
                raise OSError(code, os.strerror(code))
            self.n += len(data)
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(fsio.os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))


def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    os.chmod(path, 0o640)
    fsio.atomic_write_text(path, "new text")
    assert path.read_text() == "new text"
    assert os.stat(path).st_mode & 0o777 == 0o640  # the user's permissions are kept
    assert os.listdir(tmp_path) == ["a.txt"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_failed_write_names_the_path_and_keeps_the_original(tmp_path, monkeypatch, code):
    path = tmp_path / "results.json"
    path.write_text('{"old": true}\n')
    full_disk(monkeypatch, code)
    with pytest.raises(AblangError) as info:
        fsio.atomic_write_text(path, '{"new": true, "much": "more text than fits"}\n')
    assert str(path) in info.value.message and info.value.code == "io"
    assert path.read_text() == '{"old": true}\n'
    assert os.listdir(tmp_path) == ["results.json"]


def test_a_kill_before_the_rename_leaves_the_old_file(tmp_path, monkeypatch):
    """Defect 4: results.json was 0 bytes after a kill; the old file survives until the new one
    is complete."""
    path = tmp_path / "results.json"
    path.write_text("old")

    def killed(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(fsio.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        fsio.atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["results.json"]  # the temporary file was removed too


def test_fmt_on_a_full_disk_leaves_the_study_whole(tmp_path, monkeypatch, capsys):
    """Defect 4: `ablang fmt` on a full disk left the study cut mid-line (ENOSPC traceback)."""
    study = tmp_path / "s.abl"
    study.write_text(STUDY)
    full_disk(monkeypatch)
    assert cli.main(["fmt", str(study)]) == 2
    assert study.read_text() == STUDY
    err = capsys.readouterr().err
    assert "disk is full" in err and str(study) in err and "Traceback" not in err
    assert os.listdir(tmp_path) == ["s.abl"]


def test_fmt_still_formats(tmp_path):
    study = tmp_path / "s.abl"
    study.write_text(STUDY)
    assert cli.main(["fmt", str(study)]) == 0
    assert study.read_text() == "model tiny\ndrop skip[3] for t in 600..1000\n"


def test_make_dirs_says_why_not(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(AblangError, match="not a folder|file of that name"):
        fsio.make_dirs(tmp_path / "file" / "sub")
    with pytest.raises(AblangError, match="a file of that name"):
        fsio.make_dirs(tmp_path / "file")
