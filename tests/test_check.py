"""``ablang check``: every error of every file, exit 0/2, and an honest note when the model's
components could not be checked."""

from __future__ import annotations

import pytest
from abl_fixtures import FIXTURES, cases, expected_check, tiny_table

import ablang.models
from ablang.cli import main
from ablang.commands.check import check_file
from ablang.errors import AblangError


@pytest.fixture
def tiny(monkeypatch):
    """The built-in model's components without loading the model."""
    monkeypatch.setattr(ablang.models, "component_table", lambda spec: tiny_table())


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_clean_study(tiny, capsys):
    path = FIXTURES / "plan" / "skip_phases.abl"
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr()
    assert out.out == f"{path}: ok (123 variants, 1 sweep, 1 emit)\n" and out.err == ""


def test_every_error_of_every_file(tiny, tmp_path, capsys):
    a = write(tmp_path, "a.abl", "model tiny\ndrop skp[3]\nseed -1\n")
    b = write(tmp_path, "b.abl", "model tiny\ndrop skip 3\n")
    c = write(tmp_path, "c.abl", "model tiny\n")
    assert main(["check", str(a), str(b), str(c)]) == 2
    out = capsys.readouterr()
    assert f"{a}:2:6: error: no component `skp[3]`" in out.err
    assert f"{a}:3:6: error: `seed` must be at least 0, not -1" in out.err
    assert f"{a}: 2 errors" in out.err
    assert f"{b}:2:11: error: component indices go in square brackets" in out.err
    assert out.out == f"{c}: ok (1 variants)\n"


@pytest.mark.parametrize("abl", cases("check")[:5], ids=lambda p: p.stem)
def test_output_is_the_rendered_errors(tiny, abl, capsys, monkeypatch):
    monkeypatch.chdir(abl.parent)
    assert main(["check", abl.name]) == 2
    assert capsys.readouterr().err == expected_check(abl) + f"{abl.name}: " + (
        "1 error\n"
        if expected_check(abl).count(": error:") == 1
        else f"{expected_check(abl).count(': error:')} errors\n"
    )


@pytest.mark.parametrize(
    "failure",
    [
        ablang.models.ModelUnavailable("the checkpoint base.pt is not there"),
        ImportError("No module named 'glide_text2im'"),
        RuntimeError("half-built adapter"),
    ],
    ids=["unavailable", "import-error", "other"],
)
def test_model_not_available(monkeypatch, tmp_path, capsys, failure):
    def fail(spec):
        raise failure

    monkeypatch.setattr(ablang.models, "component_table", fail)
    path = write(tmp_path, "g.abl", 'model glide "base.pt"\ndrop skip[*] for t in 0..500\n')
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        f'{path}: note: checked syntax and settings only: glide "base.pt" not available ('
    )
    assert getattr(failure, "message", str(failure)) in out
    bad = write(tmp_path, "h.abl", 'model glide "base.pt"\nseed -1\n')
    assert main(["check", str(bad)]) == 2


def test_unreadable_and_binary_files(tiny, tmp_path, capsys):
    binary = tmp_path / "x.abl"
    binary.write_bytes(b"model tiny\n\x89PNG\r\n")
    assert main(["check", str(binary), str(tmp_path / "missing.abl")]) == 2
    err = capsys.readouterr().err
    assert f"{binary}:2:1: error: the file is not UTF-8 text (byte 0x89)" in err
    assert f"{tmp_path / 'missing.abl'}: error: cannot read the file" in err


def test_check_file_gives_the_plan(tiny):
    checked = check_file(FIXTURES / "plan" / "windows.abl")
    assert checked.errors == () and checked.unavailable is None
    assert checked.plan.variants[-1].name == "phases"
    assert len(checked.plan.sha256) == 64


def test_check_file_reports_errors_as_objects(tiny):
    checked = check_file(FIXTURES / "check" / "overlap.abl")
    assert checked.plan is None
    assert [(e.code, e.span.line) for e in checked.errors] == [
        ("overlap", 4),
        ("overlap", 6),
        ("overlap", 8),
    ]
    assert all(isinstance(e, AblangError) for e in checked.errors)
