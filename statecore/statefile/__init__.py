"""The canonical `whatsapp_state.json`: strict reading with the place of every
fault (`parse`, against the types of `rules`, over the pieces `stream` reads), import
in one transaction (`importing`, rows from `columns` inserted by `bulk`), and export that gives
back what was read (`export`, written safely by `files`).

Canonical form: `json.dumps(state, indent=2, ensure_ascii=False)`, UTF-8, no
trailing newline (STATE_FORMAT.md). A file in that form comes back byte for
byte, because every verbatim part is kept as JSON text with its key order.
This module writes that form and names what the rest of the project uses.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from django.conf import settings

from .export import export_state_dict, export_value
from .files import write_atomically
from .importing import (
    DUPLICATE_RULES,
    ImportSummary,
    current_counts,
    import_bytes,
    import_file,
    import_path,
    import_state,
    state_counts,
)
from .parse import CheckedFile, StateFileError, check_file, parse_state

__all__ = [
    "DUPLICATE_RULES",
    "CheckedFile",
    "check_file",
    "import_file",
    "import_path",
    "ImportSummary",
    "StateFileError",
    "backup_state",
    "current_counts",
    "export_bytes",
    "export_state",
    "export_state_dict",
    "export_text",
    "export_value",
    "import_bytes",
    "import_state",
    "parse_state",
    "state_counts",
    "write_atomically",
]


def export_text() -> str:
    """The whole state in the canonical form."""
    return json.dumps(export_state_dict(), indent=2, ensure_ascii=False)


def export_bytes() -> bytes:
    """The very bytes export_state writes (the canonical form)."""
    return export_text().encode("utf-8")


def export_state(path: Path | str, *, mode: int | None = None) -> Path:
    """Write the canonical file to `path`, atomically (a new file 0600, or `mode`)."""
    return write_atomically(path, export_bytes(), mode=mode)


def backup_state(folder: Path | str | None = None, *, mode: int | None = None) -> Path:
    """A timestamped copy, `whatsapp_state_backup_YYYYmmdd_HHMMSS.json`, in the backup folder."""
    folder = Path(folder or settings.STATE_BACKUP_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime())
    path = folder / f"whatsapp_state_backup_{stamp}.json"
    counter = 1
    while path.exists():  # two backups in one second must not overwrite each other
        path = folder / f"whatsapp_state_backup_{stamp}_{counter}.json"
        counter += 1
    return export_state(path, mode=mode)
