"""The upload page's size: it states its limit, a larger body gets 413 before it is
read, and a file kept on disk by Django (over 2.5 MB) is copied, checked and imported
in pieces."""

from __future__ import annotations

import json

import pytest

from approvals.statefile_forms import MAX_UPLOAD_BYTES
from statecore import statefile
from tests.benchmarks.generate import generate_state
from tests.test_middleware import post_declaring
from tests.test_upload import (  # noqa: F401 - fixtures
    CONFIRM,
    UPLOAD,
    _post_file,
    admin_client,
    private_folders,
)

MIB = 1024 * 1024
pytestmark = pytest.mark.django_db


def test_the_page_states_its_limit_and_where_larger_files_go(admin_client):  # noqa: F811
    html = admin_client.get(UPLOAD).content.decode()
    assert "at most 32 MB" in html and "manage.py import_state" in html
    assert MAX_UPLOAD_BYTES == 32 * MIB


def test_a_larger_upload_gets_413_before_it_is_read(admin_client, settings):  # noqa: F811
    # The test client cannot send 32 MiB cheaply: the body is announced, never readable.
    cap = settings.STATE_UPLOAD_MAX_REQUEST_BYTES
    assert MAX_UPLOAD_BYTES < cap <= MAX_UPLOAD_BYTES + MIB
    response = post_declaring(admin_client, UPLOAD, cap + 1)
    assert response.status_code == 413
    assert f"over {cap:,} bytes" in response.content.decode()


def test_a_file_kept_on_disk_is_checked_and_imported_in_pieces(
    admin_client,  # noqa: F811
    private_folders,  # noqa: F811
    db,
):
    data = json.dumps(generate_state(8000, seed=5), indent=2, ensure_ascii=False).encode()
    assert len(data) > 2.5 * MIB  # Django keeps it in a temporary file, not in memory
    response = _post_file(admin_client, data)
    assert response.status_code == 302 and response.url == CONFIRM
    page = admin_client.get(CONFIRM)
    assert page.context["pending"]["after"]["incoming"] == 4000
    token = page.context["confirm_form"]["token"].value()
    admin_client.post(CONFIRM, {"token": token})
    assert statefile.export_bytes() == data
