"""Download the whole state file; upload one to replace the state, after a confirmation.

An upload is checked exactly as `import_state` checks a file (every fault named
by its place) and changes nothing by itself: its bytes wait in a private
temporary file named by a random token kept in the user's session, the page
shows what will be replaced (counts per list, before and after), and only the
confirmation imports it, after saving a backup of the state it replaces.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import tempfile
import time
from pathlib import Path

from django.contrib import messages
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from statecore import auditlog, statefile
from statecore.models import Source, Status
from statecore.statefile.parse import CheckedFile, StateFileError, check_file, duplicate_faults

from .access import EXPORT, IMPORT, actor, require_perm, signed_in
from .statefile_forms import TOKEN_PATTERN, ConfirmForm, UploadForm

TEMPLATE = "approvals/upload.html"
SESSION_KEY = "state_upload"
UPLOAD_DIR = Path(tempfile.gettempdir()) / "whatsapp-state-uploads"
# An upload never confirmed is removed by the next upload after this long.
KEEP_UPLOAD_SECONDS = 6 * 3600
LIST_NAMES = [*Status.values, "message_log"]


@signed_in
@require_safe
def download(request: HttpRequest) -> HttpResponse:
    """The very bytes `export_state` writes; audited (who, when, size)."""
    require_perm(request, EXPORT)
    data = statefile.export_bytes()
    auditlog.record_download(len(data), actor=actor(request), source=Source.WEB)
    response = HttpResponse(data, content_type="application/json")
    response["Content-Disposition"] = 'attachment; filename="whatsapp_state.json"'
    return response


@signed_in
@require_http_methods(["GET", "POST"])
def upload(request: HttpRequest) -> HttpResponse:
    require_perm(request, IMPORT)
    errors: list[tuple[str, str]] = []
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        rule = form.cleaned_data["on_duplicate"]
        token, sha256 = _keep(upload)
        checked, errors = _check(_path(token), rule)
        if checked is None:
            _path(token).unlink(missing_ok=True)
        else:
            _discard(request)
            request.session[SESSION_KEY] = {
                "token": token,
                "sha256": sha256,
                "name": Path(upload.name).name[:200],
                "size": upload.size,
                "on_duplicate": rule,
                "duplicates": len(checked.duplicates),
                "after": checked.counts,
            }
            return redirect("approvals:state-upload-confirm")
    context = {
        "step": "upload",
        "form": form,
        "errors": errors,
        "waiting": request.session.get(SESSION_KEY),
    }
    # A refused file is a form to correct, answered 200 as Django answers a form
    # with errors (a 4xx would also be logged by the browser as a failed load).
    return render(request, TEMPLATE, context)


@signed_in
@require_http_methods(["GET", "POST"])
def confirm(request: HttpRequest) -> HttpResponse:
    require_perm(request, IMPORT)
    pending = request.session.get(SESSION_KEY)
    if not pending:
        messages.info(request, "No upload is waiting for a confirmation.")
        return redirect("approvals:state-upload")
    before = statefile.current_counts()
    if request.method == "POST":
        return _import(request, pending, before)
    # What the page shows is what the confirmation must still find.
    pending["before"] = before
    request.session.modified = True
    context = {
        "step": "confirm",
        "pending": pending,
        "rows": [(name, before[name], pending["after"][name]) for name in LIST_NAMES],
        "confirm_form": ConfirmForm(initial={"token": pending["token"]}),
    }
    return render(request, TEMPLATE, context)


@signed_in
@require_POST
def cancel(request: HttpRequest) -> HttpResponse:
    require_perm(request, IMPORT)
    _discard(request)
    messages.info(request, "Upload cancelled; nothing changed.")
    return redirect("approvals:state-upload")


def _import(request: HttpRequest, pending: dict, before: dict) -> HttpResponse:
    form = ConfirmForm(request.POST)
    if not form.is_valid() or form.cleaned_data["token"] != pending["token"]:
        messages.error(
            request, "That confirmation was for another upload (another tab?); nothing changed."
        )
        return redirect("approvals:state-upload-confirm")
    if before != pending.get("before"):
        messages.warning(
            request, "The state changed since this page was shown: check the counts again."
        )
        return redirect("approvals:state-upload-confirm")
    path = _verified(pending)
    if path is None:
        _discard(request)
        messages.error(request, "The uploaded file is gone; upload it again. Nothing changed.")
        return redirect("approvals:state-upload")
    try:
        backup = statefile.backup_state()
    except OSError as exc:
        messages.error(
            request, f"Could not save a backup of the current state ({exc}); nothing changed."
        )
        return redirect("approvals:state-upload-confirm")
    summary = statefile.import_path(
        path,
        actor=actor(request),
        source=Source.WEB,
        on_duplicate=pending["on_duplicate"],
    )
    _discard(request)
    counts = ", ".join(f"{name} {n}" for name, n in summary.after.items())
    messages.success(
        request,
        f"Imported {pending['name']}: {counts}. The state it replaced is saved as {backup.name}.",
    )
    return redirect("approvals:overview")


def _check(path: Path, rule: str) -> tuple[CheckedFile | None, list[tuple[str, str]]]:
    """What the check learnt, or the faults with their places (as import_state names them)."""
    try:
        checked = check_file(lambda: path.open("rb"))
    except StateFileError as exc:
        return None, exc.errors
    if checked.duplicates and rule == "refuse":
        advice = ": choose which copy to keep, or fix the file"
        return None, duplicate_faults(checked, advice)
    return checked, []


# --- The waiting upload: a private file named by the token in the session ---------


def _path(token: str) -> Path:
    if not re.fullmatch(TOKEN_PATTERN, token):
        raise ValueError("not an upload token")
    return UPLOAD_DIR / f"{token}.json"


def _keep(upload: UploadedFile) -> tuple[str, str]:
    """Copy the upload to a private file, in chunks: its token and its SHA-256."""
    UPLOAD_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    _sweep()
    token = secrets.token_urlsafe(32)
    digest = hashlib.sha256()
    handle = os.open(_path(token), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(handle, "wb") as file:
        for chunk in upload.chunks():
            digest.update(chunk)
            file.write(chunk)
    return token, digest.hexdigest()


def _verified(pending: dict) -> Path | None:
    """The file the user confirmed, unchanged (checked by its hash), or None."""
    try:
        path = _path(pending["token"])
        digest = hashlib.sha256()
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
    except (OSError, ValueError, KeyError):
        return None
    return path if digest.hexdigest() == pending.get("sha256") else None


def _discard(request: HttpRequest) -> None:
    pending = request.session.pop(SESSION_KEY, None)
    if pending:
        try:
            _path(pending["token"]).unlink(missing_ok=True)
        except (OSError, ValueError, KeyError):
            pass


def _sweep() -> None:
    """Remove uploads left unconfirmed (a closed tab, an ended session)."""
    limit = time.time() - KEEP_UPLOAD_SECONDS
    for path in UPLOAD_DIR.glob("*.json"):
        try:
            if path.stat().st_mtime < limit:
                path.unlink(missing_ok=True)
        except OSError:
            pass
