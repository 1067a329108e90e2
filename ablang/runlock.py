"""One writer per run directory: an OS-level lock on ``<out>/.lock`` held for a whole run.

The lock is ``fcntl.flock`` (``msvcrt.locking`` on Windows): the operating system releases it
when the process ends however it ends (exit, exception, SIGKILL), so a crashed run never leaves
a stale lock behind; the file's text only says who holds it (pid, host, since when) for the
message a second run prints.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ablang.errors import AblangError
from ablang.fsio import io_error, make_dirs

LOCK = ".lock"

try:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        text = ""
    return text or "another process (it has not said which yet)"


@contextmanager
def lock_run_dir(out: Path) -> Iterator[Path]:
    """Hold ``out`` for this process until the block ends; an ``AblangError`` (exit 2) at once
    when another process holds it, naming that process."""
    make_dirs(out)
    path = out / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as e:
        raise io_error(path, e, "create the lock file") from e
    try:
        if not _try_lock(fd):
            raise AblangError(
                f"{out} is in use by another ablang run: {_holder(path)}",
                code="busy",
                path=str(out),
                hint="wait for it to finish, or choose another --out",
            )
        since = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        note = f"pid {os.getpid()} on {socket.gethostname()} since {since}\n".encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, note, 0) if hasattr(os, "pwrite") else os.write(fd, note)
        try:
            yield out
        finally:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            _unlock(fd)
    finally:
        os.close(fd)
