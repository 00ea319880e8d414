"""An admin, as a new user would: find a message by a fragment of its text, retry
it, and see the effect in the audit log and on the overview (Chromium, real server)."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission, User
from playwright.sync_api import expect

from approvals import statefile_views
from statecore import statefile
from statecore.models import Status
from tests.factories import make_reply

pytestmark = pytest.mark.browser


def _admin_rights(username: str) -> None:
    User.objects.get(username=username).user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="statecore",
            codename__in=["view_message", "change_message", "view_auditevent"],
        )
    )


def test_an_admin_finds_a_failed_reply_by_its_text_retries_it_and_sees_the_effect(
    new_page, live_url, page_errors
):
    failed = make_reply(Status.FAILED, body="Your invoice for October is attached", error="timeout")
    make_reply(Status.FAILED, body="We open at nine tomorrow", error="timeout")
    page = new_page("olga", staff=True)
    _admin_rights("olga")

    page.goto(f"{live_url}/admin/")
    page.get_by_role("link", name="Messages").click()
    page.locator("#searchbar").fill("invoice for oct")
    page.locator("#searchbar").press("Enter")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(failed.message_id)

    rows.first.locator("input.action-select").check()
    page.locator("select[name=action]").select_option(label="Retry failed")
    page.get_by_role("button", name="Go").click()
    expect(page.locator("ul.messagelist")).to_contain_text("Retry: 1 moved, 0 skipped.")

    page.get_by_role("link", name="Audit events").click()
    newest = page.locator("#result_list tbody tr").first
    expect(newest).to_contain_text("retry")
    expect(newest).to_contain_text(failed.message_id)
    expect(newest).to_contain_text("olga")

    page.goto(f"{live_url}/")
    expect(page.locator('[data-status="approved"]')).to_have_text("1")
    expect(page.locator('[data-status="failed"]')).to_have_text("1")
    expect(page.locator("svg.ov-chart-svg")).to_be_visible()
    assert page_errors == []


def test_an_admin_uploads_a_state_file_sees_what_it_replaces_and_confirms(
    new_page, live_url, page_errors, sample_bytes, settings, tmp_path, monkeypatch
):
    settings.STATE_BACKUP_DIR = tmp_path / "backups"
    monkeypatch.setattr(statefile_views, "UPLOAD_DIR", tmp_path / "uploads")
    statefile.import_bytes(sample_bytes, actor="test", source="command")
    page = new_page("karim", staff=True)
    User.objects.get(username="karim").user_permissions.add(
        *Permission.objects.filter(codename__in=["import_state", "export_state"])
    )
    state = json.loads(sample_bytes)
    state["messages"]["sent"][3]["id"] = 5
    page.goto(f"{live_url}/")
    page.get_by_role("link", name="Upload a state file").click()
    page.get_by_label("State file").set_input_files(
        files=[{"name": "bad.json", "mimeType": "application/json", "buffer": _canonical(state)}]
    )
    page.get_by_role("button", name="Check the file").click()
    expect(page.locator("#up-error-list")).to_contain_text("messages.sent[3].id: expected a string")

    state["messages"]["sent"] = state["messages"]["sent"][:2]
    page.get_by_label("State file").set_input_files(
        files=[{"name": "good.json", "mimeType": "application/json", "buffer": _canonical(state)}]
    )
    page.get_by_role("button", name="Check the file").click()
    expect(page.get_by_role("heading", name="Replace the whole state?")).to_be_visible()
    expect(page.locator('tr[data-list="sent"] td').last).to_have_text("2")
    assert statefile.export_bytes() == sample_bytes
    page.get_by_role("button", name="Replace the state").click()
    expect(page.locator(".flash")).to_contain_text("Imported good.json")
    assert statefile.export_bytes() == _canonical(state)
    assert page_errors == []


def _canonical(state: dict) -> bytes:
    return json.dumps(state, indent=2, ensure_ascii=False).encode()
