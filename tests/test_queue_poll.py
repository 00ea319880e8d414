"""The poll: what changed since the page was drawn."""

from __future__ import annotations

import re

from statecore import lifecycle
from statecore.models import Message, Source
from tests.conftest import (
    HTMX,
    ago,
    stale_draft,
    url,
)
from tests.factories import make_reply

# --- The poll ---------------------------------------------------------------------------


def test_poll_removes_handled_cards_adds_new_ones_and_marks_stale(rc):
    handled = make_reply(timestamp=ago(minutes=9))
    kept, _ = stale_draft()
    lifecycle.approve(handled.message_id, actor="sam", source=Source.WEB)
    arrived = make_reply(timestamp=ago(minutes=1))
    response = rc.get(url("queue-poll"), {"shown": [f"{handled.pk}-0", f"{kept.pk}-0"]}, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert re.search(
        rf'<div id="card-{handled.pk}" hx-swap-oob="delete"><span>Approved by sam \d+ s ago', html
    )
    assert f'hx-swap-oob="beforeend:#card-list"><article id="card-{arrived.pk}"' in html.replace(
        "\n", ""
    )
    assert f'<div id="stale-{kept.pk}" class="stale-slot" hx-swap-oob="true">' in html
    assert '<ul id="queue-counts" class="counts"' in html and 'hx-swap-oob="true"' in html
    # A card the page already shows (with its newest message) is left alone.
    newest = Message.objects.filter(chat=kept.chat, reply_to="").latest("timestamp").pk
    again = rc.get(url("queue-poll"), {"shown": [f"{kept.pk}-{newest}", f"{arrived.pk}-0"]}, **HTMX)
    assert f"card-{kept.pk}" not in again.content.decode()
    assert f"stale-{kept.pk}" not in again.content.decode()


def test_poll_leaves_a_pending_card_that_moved_to_another_page(rc):
    drafts = [make_reply(timestamp=ago(minutes=60 - i)) for i in range(51)]
    html = rc.get(url("queue-poll"), {"page": "2", "shown": [f"{drafts[0].pk}-0"]}, **HTMX)
    text = html.content.decode()
    assert f'id="card-{drafts[0].pk}"' not in text  # still pending: not removed
    assert f'<article id="card-{drafts[50].pk}"' in text  # page 2's card comes in


def test_poll_says_when_a_shown_card_was_deleted(rc):
    draft = make_reply()
    pk = draft.pk
    Message.objects.filter(pk=pk).delete()
    text = rc.get(url("queue-poll"), {"shown": [f"{pk}-0"]}, **HTMX).content.decode()
    assert f'<div id="card-{pk}" hx-swap-oob="delete"><span>This reply no longer exists.' in text
