"""Approving or rejecting several cards at once."""

from __future__ import annotations

import pytest

from statecore import lifecycle
from statecore.models import AuditEvent, Source, Status
from tests.conftest import (
    HTMX,
    card_html,
    fresh,
    stale_draft,
    url,
)
from tests.factories import make_reply

# --- Bulk --------------------------------------------------------------------------------


def test_bulk_approve_skips_a_stale_draft_unless_confirmed(rc):
    plain = [make_reply() for _ in range(2)]
    stale, _ = stale_draft()
    ids = [m.pk for m in [*plain, stale]]
    response = rc.post(url("bulk"), {"ids": ids, "action": "approve"}, **HTMX)
    assert response.status_code == 200
    assert response["HX-Trigger-After-Settle"] == '{"queue-changed": {}}'
    html = response.content.decode()
    assert "Approved 2 of 3 selected" in html and "customer wrote again" in html
    assert html.count('hx-swap-oob="true"') == 2  # the two cards, swapped in place
    assert [fresh(m).status for m in plain] == [Status.APPROVED, Status.APPROVED]
    assert fresh(stale).status == Status.PENDING_APPROVAL
    response = rc.post(url("bulk"), {"ids": [stale.pk], "action": "approve", "confirm_stale": "1"})
    assert response.status_code == 302
    assert fresh(stale).status == Status.APPROVED


def test_bulk_reject_with_a_reason_and_a_card_someone_else_handled(rc):
    mine, theirs = make_reply(), make_reply()
    lifecycle.approve(theirs.message_id, actor="sam", source=Source.WEB)
    response = rc.post(
        url("bulk"),
        {"ids": [mine.pk, theirs.pk, 987654], "action": "reject", "reason": "Spam"},
        **HTMX,
    )
    html = response.content.decode()
    assert "Rejected 1 of 3 selected" in html
    assert "Approved by sam" in html and "1 selected reply no longer exist" in html
    assert fresh(mine).status == Status.REJECTED and fresh(theirs).status == Status.APPROVED
    assert AuditEvent.objects.get(message_id=mine.message_id, action="reject").note == "Spam"


def test_bulk_without_javascript_reports_with_messages(rc):
    draft = make_reply()
    stale, _ = stale_draft()
    response = rc.post(
        url("bulk"), {"ids": [draft.pk, stale.pk], "action": "approve", "next": "/queue/"}
    )
    assert response.status_code == 302 and response["Location"] == "/queue/"
    page = rc.get("/queue/").content.decode()
    assert "Approved 1 reply." in page and "Skipped 1 where the customer wrote again" in page


@pytest.mark.parametrize("data", [{"action": "approve"}, {"ids": ["x"], "action": "approve"}])
def test_bulk_with_nothing_or_garbage_selected_is_refused(rc, data):
    response = rc.post(url("bulk"), data, **HTMX)
    assert response.status_code == 422
    assert "Select at least one reply" in response.content.decode() or "Unknown" in (
        response.content.decode()
    )


def test_a_bulk_refusal_card_someone_else_decided_offers_no_undo(rc):
    mine, theirs = make_reply(), make_reply()
    lifecycle.approve(theirs.message_id, actor="sam", source=Source.WEB)
    response = rc.post(url("bulk"), {"ids": [mine.pk, theirs.pk], "action": "approve"}, **HTMX)
    assert response.status_code == 200
    refused = card_html(response, theirs)
    assert "Approved by sam" in refused
    assert "Undo" not in refused and url("undo", theirs) not in refused
    assert ">Undo</button>" in card_html(response, mine)  # one's own decision keeps it


def test_a_card_someone_else_just_decided_offers_no_undo_anywhere(rc):
    theirs = make_reply()
    lifecycle.approve(theirs.message_id, actor="sam", source=Source.WEB)
    for response in (
        rc.get(url("card", theirs)),
        rc.get(url("card", theirs), **HTMX),
        rc.get(url("queue"), {"done": theirs.pk}),
    ):
        assert response.status_code == 200
        assert url("undo", theirs) not in response.content.decode()
