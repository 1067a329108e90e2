"""The command line through ``ablang.cli.main``: exit statuses (0 ok, 1 a run failed, 2 the study
or the command line is wrong) and what each command writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import ablang.commands.inspect
import ablang.models
from ablang import __version__, cli

RUN = Path(__file__).parent / "fixtures" / "run"
SMALL, ERROR = RUN / "small.abl", RUN / "error.abl"
PNG = b"\x89PNG\r\n\x1a\n"


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in ("run", "check", "fmt", "inspect", "emit", "sample", "train"):
        assert f"    {name}" in out, name


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and __version__ in capsys.readouterr().out


def test_no_command_and_bad_flags_exit_2(capsys):
    assert cli.main([]) == 2
    with pytest.raises(SystemExit) as exit_:
        cli.main(["check", "--no-such-flag", str(SMALL)])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        cli.main(["frobnicate"])
    assert exit_.value.code == 2


def test_check_exit_codes(capsys, tmp_path):
    assert cli.main(["check", str(SMALL)]) == 0
    out = capsys.readouterr()
    assert "ok" in out.out and out.err == ""
    assert cli.main(["check", str(ERROR)]) == 2
    err = capsys.readouterr().err
    assert "error.abl:7:6: error: no component" in err and "did you mean skip[3]?" in err
    assert cli.main(["check", str(SMALL), str(ERROR)]) == 2  # one bad file is enough
    assert "small.abl: ok" in capsys.readouterr().out
    assert cli.main(["check", str(tmp_path / "missing.abl")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_inspect_tiny_json(capsys):
    assert cli.main(["inspect", "tiny", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["model"] == "tiny" and table["num_timesteps"] == 1000
    skips = [c for c in table["components"] if c["kind"] == "skip"]
    assert [c["name"] for c in skips] == [f"skip[{i}]" for i in range(8)]
    assert [c["feeds"] for c in skips] == [f"dec[{7 - i}]" for i in range(8)]


def test_inspect_an_unknown_model_exits_2(capsys):
    assert cli.main(["inspect", "nosuchmodel"]) == 2
    assert capsys.readouterr().err


def test_sample_writes_a_png(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert (
        cli.main(["sample", "tiny", "--prompts", "3,7", "--n", "1", "--steps", "5", "-o", str(out)])
        == 0
    )
    assert out.read_bytes()[:8] == PNG
    assert "2 images" in capsys.readouterr().out


def test_sample_refuses_prompts_the_model_lacks(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert (
        cli.main(["sample", "tiny", "--prompts", "cat", "--n", "1", "--steps", "2", "-o", str(out)])
        == 2
    )
    assert not out.exists()
    assert "digits" in capsys.readouterr().err


def test_run_of_a_study_with_errors_runs_nothing(tmp_path, capsys, monkeypatch):
    import ablang.run

    def must_not_run(*args, **kwargs):
        raise AssertionError("a study with errors must not run")

    monkeypatch.setattr(ablang.run, "run_plan", must_not_run)
    monkeypatch.setattr("ablang.commands.run.run_plan", must_not_run)
    out = tmp_path / "out"
    assert cli.main(["run", str(ERROR), "--out", str(out)]) == 2
    assert not out.exists()
    assert "no component" in capsys.readouterr().err


def test_run_without_out_uses_runs_study_name(tmp_path, capsys, monkeypatch):
    """The default output directory is runs/<study name>/ (checked up to the run, not run)."""
    from ablang.run import RunOptions, default_out

    seen: list[RunOptions] = []
    monkeypatch.setattr(
        "ablang.commands.run.run_plan", lambda plan, options, console: seen.append(options)
    )
    study = tmp_path / "my study.abl"
    shutil.copyfile(SMALL, study)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", str(study), "--mode", "accelerate", "--batch", "3", "--no-emit"]) == 0
    (options,) = seen
    assert (
        options.out is None
        and options.mode == "accelerate"
        and options.batch == 3
        and not options.emit
    )
    from ablang.commands.check import check_file

    assert default_out(check_file(study).plan) == Path("runs") / "my_study"
