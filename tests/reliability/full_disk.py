"""Run a management command on a disk that fills up after ROOM bytes.

    python -m tests.reliability.full_disk ROOM COMMAND [ARGS...]

Every file the state code opens for writing (statefile's os.fdopen) takes
ROOM bytes, then the write fails with ENOSPC, as on a full disk: the part
written stays on disk, as the kernel would leave it.
"""

from __future__ import annotations

import errno
import os
import sys


class _FillingFile:
    def __init__(self, file, room: int) -> None:
        self._file = file
        self._room = room

    def write(self, data: bytes) -> int:
        if len(data) > self._room:
            self._file.write(data[: self._room])
            self._file.flush()
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._file.write(data)

    def __getattr__(self, name: str):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()


def main(argv: list[str]) -> None:
    import django

    room, command = int(argv[0]), argv[1:]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    django.setup()

    from django.core.management import execute_from_command_line

    real_fdopen = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        file = real_fdopen(fd, mode, *args, **kwargs)
        return _FillingFile(file, room) if "w" in mode else file

    # For the whole process: the export is the only code here that writes a file.
    os.fdopen = fdopen
    execute_from_command_line(["manage.py", *command])


if __name__ == "__main__":
    main(sys.argv[1:])
