"""Writing a file safely: atomically, with the permissions a file of every
customer's messages needs."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

NEW_FILE_MODE = 0o600  # every customer's number and message: the owner's only


def write_atomically(
    path: Path | str, data: bytes | Iterable[bytes], *, mode: int | None = None
) -> Path:
    """Write to a temporary file in the same folder, flush, fsync, then replace:
    an interrupted write leaves the old file intact. `data`: bytes, or chunks of them
    written as they come (an export that streams).

    A new file is created NEW_FILE_MODE (0600) whatever the umask; a replaced file
    keeps its mode and, where the writer may set it, its group (README: a script
    reading as another user). `mode` sets the permissions either way."""
    path = Path(path)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        _take_permissions(handle, path, mode)
        with os.fdopen(handle, "wb") as tmp:
            for chunk in (data,) if isinstance(data, bytes) else data:
                tmp.write(chunk)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def _take_permissions(handle: int, path: Path, mode: int | None) -> None:
    """Give the temporary file the permissions the result must have (fchmod is
    not subject to the umask)."""
    try:
        old = path.stat()
    except FileNotFoundError:
        old = None
    if old is not None:
        try:
            # Kept so a group given read access (chgrp) still has it after the
            # rename; only a member of that group (or root) may set it.
            os.fchown(handle, -1, old.st_gid)
        except OSError:
            pass
    if mode is not None:
        os.fchmod(handle, mode)
    elif old is not None:
        os.fchmod(handle, stat.S_IMODE(old.st_mode))
    else:
        os.fchmod(handle, NEW_FILE_MODE)
