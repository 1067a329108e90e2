"""The command line through ``ablang.cli.main``: exit statuses (0 ok, 1 a run failed, 2 the study
or the command line is wrong) and what each command writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

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
    """The default output directory is runs/<study name>-<hash of its path>/ (checked up to the
    run, not run)."""
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

    assert default_out(check_file(study).plan).name.startswith("my_study-")


# ---- issue 11: every argument error is exit 2 and a sentence -------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--n", "0"],
        ["--n", "-3"],
        ["--steps", "0"],
        ["--guidance", "nan"],
        ["--guidance", "inf"],
        ["--seed", "-1"],
    ],
)
def test_sample_refuses_bad_numbers(tmp_path, capsys, args):
    with pytest.raises(SystemExit) as info:
        cli.main(["sample", "tiny", *args, "-o", str(tmp_path / "s.png")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument" in err and "Traceback" not in err
    assert not (tmp_path / "s.png").exists()


def test_sample_refuses_more_steps_than_the_model_has(tmp_path, capsys):
    assert (
        cli.main(["sample", "tiny", "--steps", "5000", "--n", "1", "-o", str(tmp_path / "s.png")])
        == 2
    )
    assert "more than the model's 1000 training steps" in capsys.readouterr().err


def test_sample_into_a_read_only_folder_exits_2(tmp_path, capsys, monkeypatch):
    import errno

    from ablang import fsio

    def refused(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(fsio.tempfile, "mkstemp", refused)
    out = tmp_path / "s.png"
    assert (
        cli.main(["sample", "tiny", "--steps", "2", "--n", "1", "--prompts", "3", "-o", str(out)])
        == 2
    )
    err = capsys.readouterr().err
    assert f"cannot write {out}: the file system is read-only" in err and "Traceback" not in err


def test_run_refuses_a_negative_batch(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["run", str(SMALL), "--batch", "-5", "--out", str(tmp_path)])
    assert info.value.code == 2 and "--batch: must be 0 or more" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_run_with_an_out_it_cannot_create_exits_2(tmp_path, capsys, monkeypatch):
    import errno
    import pathlib

    def refused(self, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(pathlib.Path, "mkdir", refused)
    out = tmp_path / "ro" / "out"
    assert cli.main(["run", str(SMALL), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"cannot create the folder {out}: the file system is read-only" in err
    assert "Traceback" not in err


def test_inspect_a_damaged_checkpoint_exits_2(tmp_path, capsys):
    import json

    (tmp_path / "bad.pt").write_bytes(b"\x80\x02 this is not a checkpoint")
    (tmp_path / "good.json").write_text(
        json.dumps(
            {"image_size": 16, "num_channels": 32, "num_res_blocks": 1, "channel_mult": [1, 2]}
        )
    )
    code = cli.main(
        ["inspect", "adm", str(tmp_path / "bad.pt"), "config", str(tmp_path / "good.json")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "cannot load the model" in err and "Traceback" not in err
    assert "weights_only" not in err  # torch's advice to unpickle untrusted code is not passed on


def test_the_resume_hint_repeats_every_fingerprinted_option(tmp_path, capsys, monkeypatch):
    """Defect 9: the hint left out --mode; typed as printed it refused to resume."""
    import shlex

    def interrupted(plan, options, console):
        raise KeyboardInterrupt

    monkeypatch.setattr("ablang.commands.run.run_plan", interrupted)
    out = tmp_path / "my out"
    args = ["run", str(SMALL), "--out", str(out), "--mode", "accelerate", "--device", "cpu"]
    assert cli.main(args) == 130
    hint = capsys.readouterr().err.strip().splitlines()[-1]
    command = shlex.split(hint.split("with: ", 1)[1])
    assert command[:2] == ["ablang", "run"] and command[2:] == args[1:] + ["--resume"]


def test_the_default_out_differs_for_studies_of_one_name_in_two_folders(tmp_path):
    """Defect 1: a/study.abl and b/study.abl shared runs/study and replaced each other's results."""
    from ablang.commands.check import check_file
    from ablang.run import default_out

    outs = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copyfile(SMALL, tmp_path / folder / "study.abl")
        outs.append(default_out(check_file(tmp_path / folder / "study.abl").plan))
    assert outs[0] != outs[1]
    assert all(o.parent == Path("runs") and o.name.startswith("study-") for o in outs)


def test_emit_into_a_read_only_folder_exits_2(tmp_path, capsys, monkeypatch):
    import errno

    import ablang.emit

    def refused(plan, variant, model, out, programs, **options):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(ablang.emit, "emit_sampler", refused)
    out = tmp_path / "ro" / "fast.py"
    assert cli.main(["emit", str(SMALL), "late_cache", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {out}: the file system is read-only" in err and "Traceback" not in err
