"""runlock: one writer per run directory, across processes; a killed holder frees it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ablang import cli
from ablang.errors import AblangError
from ablang.runlock import lock_run_dir

SMALL = Path(__file__).parent / "fixtures" / "run" / "small.abl"

HOLD = """
import sys, time
from pathlib import Path
from ablang.runlock import lock_run_dir
with lock_run_dir(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def holder(out: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_process_is_refused_at_once_and_told_who(tmp_path):
    p = holder(tmp_path)
    try:
        t0 = time.monotonic()
        with pytest.raises(AblangError) as info, lock_run_dir(tmp_path):
            pass
        assert time.monotonic() - t0 < 2
        assert info.value.code == "busy"
        assert f"pid {p.pid}" in info.value.message and " since " in info.value.message
    finally:
        p.kill()
        p.wait()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    p = holder(tmp_path)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    with lock_run_dir(tmp_path):
        assert f"pid {os.getpid()}" in (tmp_path / ".lock").read_text()


def test_ablang_run_on_a_busy_out_exits_2_before_sampling(tmp_path, capsys, monkeypatch):
    """Defect 1: two runs into one --out both exited 0 with a mixed journal."""
    import ablang.session

    loads = []
    monkeypatch.setattr(ablang.session, "load_model", lambda spec, device: loads.append(spec))
    (tmp_path / "journal.jsonl").write_text('{"fingerprint": "the other run"}\n')
    p = holder(tmp_path)
    try:
        assert cli.main(["run", str(SMALL), "--out", str(tmp_path), "--device", "cpu"]) == 2
    finally:
        p.kill()
        p.wait()
    err = capsys.readouterr().err
    assert "in use by another ablang run" in err and f"pid {p.pid}" in err
    assert loads == []  # nothing was loaded, let alone sampled
    assert (tmp_path / "journal.jsonl").read_text() == '{"fingerprint": "the other run"}\n'


@pytest.mark.slow
def test_two_ablang_runs_at_once_one_is_refused(tmp_path):
    """Two real `ablang run` processes on one --out: exactly one runs, the other exits 2."""
    args = [
        sys.executable,
        "-m",
        "ablang.cli",
        "run",
        str(SMALL),
        "--out",
        str(tmp_path),
        "--device",
        "cpu",
        "--no-emit",
    ]
    first = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / ".lock").exists() or not (tmp_path / ".lock").read_text():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        second = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
        assert second.returncode == 2
        assert f"pid {first.pid}" in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
