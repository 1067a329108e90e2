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
    assert out.out == f"{path}: ok (123 variants, 1 sweep, 1 emit)\n"
    assert "error" not in out.err and "warning: fid on 32 images" in out.err  # FID's small-n bias


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


# ---- issue 11: check knows what run will refuse ------------------------------------------


@pytest.fixture
def tiny_sized(monkeypatch):
    """The built-in model's components, classes and image size, without loading the model."""
    import dataclasses

    from ablang.models.tiny import DIGITS

    table = dataclasses.replace(tiny_table(), classes=DIGITS, image_shape=(1, 32, 32))
    monkeypatch.setattr(ablang.models, "component_table", lambda spec: table)


def codes(checked):
    return [(e.code, e.span.line, e.span.col) for e in checked.errors]


def test_the_real_tiny_table_knows_its_classes_and_image_size():
    from ablang.models import component_table
    from ablang.plan import ModelSpec

    table = component_table(ModelSpec("tiny"))
    assert table.classes == tuple("0123456789") and table.image_shape == (1, 32, 32)


def test_prompts_outside_the_models_classes_are_positioned_errors(tiny_sized, tmp_path, capsys):
    """Defect 7: prompts "10", "11", "７" passed check and failed in run without a line:col."""
    path = write(tmp_path, "p.abl", 'model tiny\nprompts "3", "10", "11", "７"\ndrop mid\n')
    checked = check_file(path)
    assert codes(checked) == [("prompts", 2, 14), ("prompts", 2, 20), ("prompts", 2, 26)]
    assert all('"0", "1", "2"' in e.hint and '"9"' in e.hint for e in checked.errors)
    assert main(["check", str(path)]) == 2
    assert "p.abl:2:26: error:" in capsys.readouterr().err


def test_fid_with_one_image_is_an_error_at_check_time(tiny_sized, tmp_path):
    """Defect 7: `metrics fid, kid` with 1 image sampled everything, then exited 2."""
    path = write(
        tmp_path, "f.abl", 'model tiny\nsamples 1\nprompts "3"\nmetrics fid, kid\ndrop mid\n'
    )
    checked = check_file(path)
    assert codes(checked) == [("too-few-samples", 2, 9)]
    assert checked.plan is None


def test_fid_on_few_images_is_a_warning_with_the_figure(tiny_sized, tmp_path, capsys):
    path = write(
        tmp_path, "f.abl", 'model tiny\nsamples 3\nprompts "3", "4"\nmetrics fid\ndrop mid\n'
    )
    checked = check_file(path)
    assert not checked.errors and checked.plan is not None
    (w,) = checked.warnings
    assert w.code == "few-samples" and "6 images" in w.message and w.span.line == 2
    assert main(["check", str(path)]) == 0
    assert "f.abl:2:9: warning: fid on 6 images" in capsys.readouterr().err


def test_a_study_too_large_for_memory_is_refused_with_the_figure(tiny_sized, tmp_path):
    """Defect 7: `samples 100000` was a MemoryError traceback after minutes."""
    path = write(tmp_path, "m.abl", "model tiny\nsamples 100000\ndrop mid\n")
    checked = check_file(path)
    (err,) = checked.errors
    assert err.code == "too-much-memory" and (err.span.line, err.span.col) == (2, 9)
    assert "GiB" in err.message and "1000000 images" in err.message


def test_the_memory_estimate_passes_an_ordinary_study(tiny_sized):
    from ablang.parse import parse
    from ablang.preflight import memory_needed, preflight
    from ablang.resolve import resolve

    study = parse("model tiny\nsamples 4\nsampler ddim steps 5\ndrop mid\n")
    table = ablang.models.component_table(None)
    plan = resolve(study, table)
    need = memory_needed(plan, 40, table)
    assert 0 < need < 2**30
    assert preflight(study, plan, table, memory=need)[0] == []
    (err,) = preflight(study, plan, table, memory=need - 1)[0]
    assert err.code == "too-much-memory"


@pytest.mark.parametrize("number", ["1e-400", "0.1e-330", "-1e-999"])
def test_a_number_that_underflows_to_zero_is_an_error(tiny, tmp_path, number):
    """Defect 10: `by 1e-400` silently became 0."""
    path = write(
        tmp_path, "u.abl", f"model tiny\nscale skip[0] by {number}\nscale skip[1] by 0.0e5\n"
    )
    checked = check_file(path)
    assert codes(checked) == [("bad-number", 2, 18)]
    assert "silently become 0" in checked.errors[0].message


def test_a_nested_block_is_reported_once(tiny, tmp_path, capsys):
    """Defect 10: nesting errors were printed twice (and a stray `}` error after them)."""
    path = write(
        tmp_path,
        "n.abl",
        "model tiny\nvariant a {\n  variant b {\n    drop mid\n  }\n  drop skip[1]\n}\n",
    )
    checked = check_file(path)
    assert codes(checked) == [("syntax/not-in-block", 3, 3)]
    assert main(["check", str(path)]) == 2
    assert capsys.readouterr().err.count("cannot stand inside") == 1


@pytest.mark.parametrize(
    "path", ["/tmp/elsewhere.py", "../up.py", "build/../../up.py", "~/.bashrc", "C:\\\\x.py"]
)
def test_an_emit_path_leaving_the_study_folder_is_an_error(tiny, tmp_path, path):
    """Defect 5: `emit sampler "PATH"` could overwrite any file; check said ok."""
    study = write(
        tmp_path,
        "e.abl",
        f'model tiny\nvariant v {{\n    drop mid\n}}\nemit sampler "{path}" from v\n',
    )
    checked = check_file(study)
    assert codes(checked) == [("emit-path", 5, 14)]
    assert "ablang emit" in checked.errors[0].hint


def test_an_emit_path_inside_the_study_folder_is_fine(tiny, tmp_path):
    study = write(
        tmp_path,
        "e.abl",
        'model tiny\nvariant v {\n    drop mid\n}\nemit sampler "build/./v.py" from v\n',
    )
    assert not check_file(study).errors
