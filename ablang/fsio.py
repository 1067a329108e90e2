"""Replacing a file so that a reader (or a crash) sees either the old contents or the new, never
half of either.

Every function writes a temporary file next to the target (same directory, so same file system),
flushes and fsyncs it, renames it over the target with ``os.replace`` (atomic on POSIX and
Windows), then fsyncs the directory so the rename itself survives a power cut. When the disk is
full, read-only or not ours (ENOSPC, EROFS, EACCES, ...), the temporary file is removed, the
original is untouched, and the caller gets an ``AblangError`` naming the path (exit 2).
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ablang.errors import AblangError

_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOENT: "the folder does not exist",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EISDIR: "it is a folder",
}


def io_error(path: str | Path, e: OSError, doing: str = "write") -> AblangError:
    """A plain sentence for an ``OSError`` while writing ``path``."""
    reason = _REASONS.get(e.errno or 0, e.strerror or str(e))
    return AblangError(
        f"cannot {doing} {path}: {reason}",
        code="io",
        path=str(path),
        hint="nothing was changed; free some space or choose another place"
        if e.errno in (errno.ENOSPC, errno.EDQUOT)
        else None,
    )


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories; the rename still happened
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Replace ``path`` with what ``write(file)`` writes to a binary file object."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():  # keep the user's permissions on the file they had
            try:
                os.chmod(tmp, path.stat().st_mode & 0o7777)
            except OSError:
                pass
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise io_error(path, e) from e
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    fsync_dir(directory)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    def write(f: IO[bytes]) -> None:
        f.write(data)

    return atomic_write(path, write)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """UTF-8, newlines written as given (no platform translation)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: object, path: str | Path) -> Path:
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def atomic_savefig(fig, path: str | Path, **kwargs) -> Path:
    """A matplotlib figure, as PNG unless ``format`` says otherwise."""
    kwargs.setdefault("format", "png")
    return atomic_write(path, lambda f: fig.savefig(f, **kwargs))


def atomic_save_image(image, path: str | Path, **kwargs) -> Path:
    """A PIL image, as PNG unless ``format`` says otherwise."""
    kwargs.setdefault("format", "PNG")
    return atomic_write(path, lambda f: image.save(f, **kwargs))


def make_dirs(path: str | Path) -> Path:
    """``mkdir -p`` with a sentence instead of a traceback when it cannot be done."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:
        raise AblangError(
            f"cannot create the folder {path}: a file of that name exists",
            code="io",
            path=str(path),
        ) from e
    except OSError as e:
        raise io_error(path, e, "create the folder") from e
    return path
