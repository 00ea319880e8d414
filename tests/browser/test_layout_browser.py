"""No page scrolls sideways, whatever a customer, a gateway or a reviewer wrote.

Every page is loaded in Chromium at 1280 px with 3,000 characters without a break in
each text it shows (a body, a name, a reason, a QR, an event's detail, an error), every
folded part opened, and the page must be no wider than the window.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone
from playwright.sync_api import Page

from statecore import lifecycle, rootstate, session
from statecore.models import GatewayEvent, Heartbeat, Source, Status
from statecore.sending import HEARTBEAT_NAME
from statecore.whatsapp import State
from statecore.whatsapp import Status as GatewayStatus
from tests.factories import make_incoming, make_reply
from tests.session_helpers import set_session, valid_session

pytestmark = pytest.mark.browser

LONG = 3000


def unbroken(tag: str) -> str:
    """3,000 characters with no place to break, named so a failure says whose they are."""
    return (tag + "-" + "W" * LONG)[:LONG].replace("-", "W")


def overflow(page: Page) -> int:
    """How far the page is wider than the window, with every <details> opened."""
    return page.evaluate(
        """() => {
            document.querySelectorAll("details").forEach((d) => { d.open = true; });
            return document.documentElement.scrollWidth - window.innerWidth;
        }"""
    )


def squeezed(page: Page) -> list[str]:
    """What long text beside it squeezed: a short table cell (a time, an event's name)
    broken over lines, a label broken inside a word, a value left under half its row."""
    return page.evaluate(
        r"""() => {
            const out = [];
            for (const cell of document.querySelectorAll("table.events td:not(:last-child)")) {
                const line = parseFloat(getComputedStyle(cell).lineHeight);
                const text = document.createRange();
                text.selectNodeContents(cell);
                if (text.getBoundingClientRect().height > 1.5 * line) out.push("cell " + cell.textContent.trim());
            }
            for (const dt of document.querySelectorAll(".facts dt, .ov-facts dt")) {
                const walker = document.createTreeWalker(dt, NodeFilter.SHOW_TEXT);
                for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                    for (const word of node.data.matchAll(/\S+/g)) {
                        const range = document.createRange();
                        range.setStart(node, word.index);
                        range.setEnd(node, word.index + word[0].length);
                        if (range.getClientRects().length > 1) out.push("label " + dt.textContent.trim());
                    }
                }
            }
            for (const dd of document.querySelectorAll(".facts dd, .ov-facts dd")) {
                const row = dd.parentElement.getBoundingClientRect().width;
                if (dd.getBoundingClientRect().width < row / 2) out.push("value " + dd.textContent.trim().slice(0, 20));
            }
            return out;
        }"""
    )


@pytest.fixture
def long_data(transactional_db, settings, tmp_path) -> dict:
    """Something 3,000 characters long and unbroken in every text each page shows."""
    valid_session(settings, tmp_path)
    incoming = make_incoming(name=unbroken("name"), body=unbroken("incoming"))
    pending = make_reply(incoming=incoming, body=unbroken("draft"))
    rejected = make_reply(incoming=make_incoming(name=unbroken("rejname")))
    lifecycle.reject(rejected.message_id, actor="dana", source=Source.WEB, reason=unbroken("why"))
    failed = make_reply(Status.APPROVED, body=unbroken("failbody"))
    lifecycle.mark_failed(failed.message_id, unbroken("error"), actor="sender", source="worker")
    edited = make_reply(body=unbroken("original"))
    lifecycle.edit_and_approve(
        edited.message_id, unbroken("edited"), actor="dana", source=Source.WEB
    )
    # The session page: a reason, an account, an undrawable QR's text, the gateway's words,
    # an event's detail, the sender's heartbeat.
    set_session(session_valid=False, invalidation_reason=unbroken("invalid"))
    rootstate.update_part(
        "account_info",
        lambda _old: {"name": unbroken("account"), "number": unbroken("number")},
        actor="test",
        source=Source.API,
        action="set",
    )
    qr_status = GatewayStatus(
        State.NEEDS_QR, unbroken("gwreason"), code="qr", qr=unbroken("qr"), logged_out=True
    )
    session.record_status(qr_status, actor="gateway", source=Source.GATEWAY)
    GatewayEvent.objects.create(
        event="disconnected",
        payload=json.dumps({"event": "disconnected", "reason": unbroken("event")}),
        received_at=timezone.now(),
    )
    Heartbeat.objects.create(
        name=HEARTBEAT_NAME,
        beat_at=timezone.now(),
        detail={"state": "waiting", "reason": unbroken("beat"), "worker": unbroken("worker")},
    )
    return {"pending": pending, "rejected": rejected, "failed": failed}


def test_no_page_is_wider_than_the_window_with_long_unbroken_text(new_page, live_url, long_data):
    page = new_page("sam", staff=True)
    User.objects.get(username="sam").user_permissions.add(
        *Permission.objects.filter(codename__in=["import_state", "export_state"])
    )
    pending, failed = long_data["pending"].pk, long_data["failed"].pk
    paths = [
        "/",
        "/queue/",
        f"/queue/{pending}/",
        f"/queue/{pending}/edit/",
        f"/queue/{pending}/reject/",
        "/history/",
        f"/history/{failed}/",
        f"/history/{long_data['rejected'].pk}/",
        "/session/",
        "/state/upload/",
    ]
    wide, narrow = {}, {}
    for path in paths:
        page.goto(f"{live_url}{path}")
        if (extra := overflow(page)) > 0:
            wide[path] = extra
        if cramped := squeezed(page):
            narrow[path] = cramped

    # A refused file whose fault is at a key 3,000 characters long.
    page.goto(f"{live_url}/state/upload/")
    bad = json.dumps({"session": {unbroken("key"): 1}, "messages": 5}).encode()
    page.get_by_label("State file").set_input_files(
        {"name": "w" * 200 + ".json", "mimeType": "application/json", "buffer": bad}
    )
    page.get_by_role("button", name="Check the file").click()
    page.wait_for_load_state()
    assert page.locator(".up-errors").count() == 1
    if (extra := overflow(page)) > 0:
        wide["/state/upload/ (errors)"] = extra

    # A file that passes, under a 200-character name: the confirmation names it.
    page.get_by_label("State file").set_input_files(
        {"name": "n" * 195 + ".json", "mimeType": "application/json", "buffer": b"{}"}
    )
    page.get_by_role("button", name="Check the file").click()
    page.wait_for_url(f"{live_url}/state/upload/confirm/")
    if (extra := overflow(page)) > 0:
        wide["/state/upload/confirm/"] = extra

    # A search too long to run: its error, with no results.
    page.goto(f"{live_url}/queue/?q={'q' * 300}")
    if (extra := overflow(page)) > 0:
        wide["/queue/?q=(300)"] = extra

    assert wide == {}, f"wider than the window by (px): {wide}"
    assert narrow == {}, f"squeezed by the long text beside them: {narrow}"


def test_labels_keep_their_words_with_everyday_data(new_page, live_url, transactional_db):
    """The wrapping that long text needs does not break our own short labels."""
    make_reply()
    page = new_page("sam", staff=True)
    for path in ("/", "/session/"):
        page.goto(f"{live_url}{path}")
        assert overflow(page) <= 0, path
        assert squeezed(page) == [], path
