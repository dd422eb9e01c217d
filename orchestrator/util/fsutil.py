"""Local file writes that never leave a half-written file behind."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from orchestrator.errors import BadInput

MiB = 1 << 20


def write_atomic(path: Path, data: str | bytes | Iterable[bytes], mode: int = 0o644) -> None:
    """Write to a temporary file beside `path`, fsync it, then rename it into place.

    `data` may come in pieces (a 100k-host plan is written as it is serialized)."""
    if isinstance(data, str):
        data = data.encode()
    chunks = [data] if isinstance(data, bytes) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_input(path: Path, limit: int, what: str, *, follow: bool = True) -> bytes:
    """The bytes of `path`, a regular file of at most `limit` bytes; anything else (a device,
    a FIFO, too large, unreadable; a symlink when `follow` is false) is `BadInput` naming it."""
    chunks: list[bytes] = []
    size = 0
    with open_input(path, limit, what, follow=follow) as handle:
        while chunk := handle.read(min(MiB, limit + 1 - size)):  # a file may grow meanwhile
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise too_large(path, limit, what)
    return b"".join(chunks)


def open_input(path: Path, limit: int, what: str, *, follow: bool = True) -> BinaryIO:
    """`path` opened for reading as `read_input` reads it, for a caller that reads it in pieces
    (and stops at `limit` bytes itself: the file may grow)."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise BadInput(f"{path}: no such {what}") from None
    except OSError as error:
        link = error.errno == errno.ELOOP and not follow
        why = "a symbolic link, not followed" if link else error.strerror or str(error)
        raise BadInput(f"{path}: cannot read the {what}: {why}") from None
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = BadInput(f"{path}: the {what} is not a regular file")
    elif info.st_size > limit:
        problem = too_large(path, limit, what)
    if problem is not None:
        os.close(fd)
        raise problem
    return os.fdopen(fd, "rb")


def too_large(path: Path, limit: int, what: str) -> BadInput:
    return BadInput(f"{path}: the {what} is larger than {limit // MiB} MiB")
