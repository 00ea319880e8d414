"""A card's conversation: the chat's last messages in both directions, on demand (key `c`
on the queue, a disclosure on the history entry), one bounded query, text as text."""

from __future__ import annotations

import re

import pytest

from statecore.models import THREAD_SIZE, Message, Status
from tests.conftest import HTMX, ago, url
from tests.factories import make_incoming, make_reply
from tests.test_window import phone_answer

NUMBER = "923001112233"
# Sign-in (session, user) 2, permission 2, the reply 1, the chat's messages 1.
THREAD_QUERIES = 6


def a_conversation() -> dict[str, Message]:
    """One chat over an hour: every kind of message it can hold, and a neighbour's chat."""
    first = make_incoming(
        number=NUMBER, name="Amina", body="Do you ship to Lahore?", timestamp=ago(minutes=60)
    )
    sent = make_reply(
        Status.SENT, incoming=first, body="Yes, in two days.", timestamp=ago(minutes=58)
    )
    second = make_incoming(number=NUMBER, name="Amina", body="How much?", timestamp=ago(minutes=50))
    failed = make_reply(
        Status.FAILED, incoming=second, body="It is 300.", timestamp=ago(minutes=49)
    )
    phone = phone_answer(NUMBER, at=ago(minutes=40), body="Called you about the price")
    third = make_incoming(
        number=NUMBER, name="Amina", body="OK, order one", timestamp=ago(minutes=20)
    )
    rejected = make_reply(
        Status.REJECTED, incoming=third, body="Never said", timestamp=ago(minutes=19)
    )
    draft = make_reply(
        incoming=third, body="Done, it ships today.", timestamp=ago(minutes=10), id="reply_2"
    )
    elsewhere = make_reply(incoming=make_incoming(body="Someone else"), body="Other chat")
    return locals()


def thread_html(client, msg: Message, **extra) -> str:
    response = client.get(url("thread", msg), **HTMX, **extra)
    assert response.status_code == 200
    return response.content.decode()


def said(html: str) -> list[str]:
    """The bodies the conversation shows, in order."""
    return re.findall(r'<div class="body" dir="auto">(.*?)</div>', html, re.S)


def test_the_thread_is_both_directions_oldest_first_without_rejected_drafts(rc):
    chat = a_conversation()
    html = thread_html(rc, chat["draft"])
    assert said(html) == [
        "Do you ship to Lahore?",
        "Yes, in two days.",
        "How much?",
        "It is 300.",
        "Called you about the price",
        "OK, order one",
        "Done, it ships today.",
    ]
    labels = re.findall(r'<p class="msg-label">(.*?)</p>', html, re.S)
    assert [re.sub(r"<[^>]+>", "", label).split(" · ")[0].strip() for label in labels] == [
        "Amina",
        "Reply sent",
        "Amina",
        "Reply failed",
        "From the phone",
        "Amina",
        "Reply draft, waiting this reply",
    ]
    assert html.count('class="msg msg-in thread-in') == 3
    assert html.count('class="msg msg-out thread-out') == 4
    assert html.count("is-this") == 1
    assert "The whole chat as stored" in html
    # Times, as the page shows them and for machines.
    assert (
        len(re.findall(r'<time datetime="\d{4}-\d\d-\d\dT[^"]+">\w{3} \d+, \d\d:\d\d</time>', html))
        == 7
    )


def test_a_history_entry_shows_the_same_thread(rc):
    chat = a_conversation()
    assert said(thread_html(rc, chat["sent"])) == said(thread_html(rc, chat["draft"]))
    html = rc.get(url("history-entry", chat["sent"])).content.decode()
    link = url("thread", chat["sent"])
    assert f'hx-get="{link}" hx-trigger="toggle from:closest details once"' in html
    assert f'<a href="{link}?next=' in html


def test_the_thread_is_the_last_messages_of_the_chat_in_one_query(rc, django_assert_num_queries):
    incoming = [
        make_incoming(number=NUMBER, body=f"message {i}", timestamp=ago(minutes=100 - i))
        for i in range(THREAD_SIZE + 5)
    ]
    draft = make_reply(incoming=incoming[-1], body="the draft", timestamp=ago(minutes=1))
    with django_assert_num_queries(THREAD_QUERIES):
        html = thread_html(rc, draft)
    assert said(html) == [f"message {i}" for i in range(6, THREAD_SIZE + 5)] + ["the draft"]
    assert f"The last {THREAD_SIZE} messages of this chat" in html


def test_the_core_query_reads_one_chat_only_and_nothing_for_no_chat(db):
    chat = a_conversation()
    thread = Message.objects.thread(NUMBER, limit=3)
    assert [m.pk for m in thread] == [chat["phone"].pk, chat["third"].pk, chat["draft"].pk]
    assert [m.body for m in Message.objects.thread(chat["elsewhere"].chat)] == [
        "Someone else",
        "Other chat",
    ]
    # A message of no known chat is no conversation (not every chat-less one at once).
    Message.objects.filter(pk=chat["elsewhere"].pk).update(chat="")
    assert Message.objects.thread("") == []


def test_hostile_text_in_the_thread_is_text(rc):
    body = "<script>alert(1)</script>"
    name = "<img src=x onerror=alert(1)>"
    incoming = make_incoming(number=NUMBER, name=name, body=body)
    draft = make_reply(incoming=incoming, body=f"Re: {body}")
    html = thread_html(rc, draft)
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_the_thread_of_an_unknown_reply_is_404(rc):
    assert rc.get("/queue/999999/thread/", **HTMX).status_code == 404


def test_the_thread_needs_sign_in_and_the_review_permission(client, reader, db):
    draft = make_reply()
    response = client.get(url("thread", draft))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert reader.get(url("thread", draft), **HTMX).status_code == 403
    assert reader.post(url("thread", draft)).status_code in (403, 405)


def test_a_reader_sees_no_conversation_control(reader):
    sent, pending = make_reply(Status.SENT), make_reply()
    queue_html = reader.get(url("queue")).content.decode()
    history_html = reader.get(url("history")).content.decode()
    assert f'id="card-{pending.pk}"' in queue_html and "data-thread" not in queue_html
    assert f'id="entry-{sent.pk}"' in history_html and "thread-disclosure" not in history_html


def test_without_javascript_the_thread_is_a_page_of_its_own(rc):
    chat = a_conversation()
    response = rc.get(url("thread", chat["draft"]), {"next": "/history/"})
    html = response.content.decode()
    assert "<h1>Conversation with <bdi>Amina</bdi></h1>" in html
    assert '<a href="/history/">← Back</a>' in html
    assert said(html)[-1] == "Done, it ships today."


def test_each_pending_card_has_a_conversation_link_with_a_real_href(rc):
    draft = make_reply()
    html = rc.get(url("queue")).content.decode()
    link = url("thread", draft)
    assert re.search(
        rf'<a class="button button-quiet button-sm" href="{link}" hx-get="{link}" '
        rf'hx-target="#thread-{draft.pk}" hx-swap="innerHTML" data-key="c"',
        html,
    )
    assert f'<div id="thread-{draft.pk}" class="thread-slot" hx-preserve="true"></div>' in html


@pytest.mark.parametrize("status", [Status.APPROVED, Status.SENT, Status.FAILED])
def test_a_history_entry_has_the_disclosure_for_every_handled_status(rc, status):
    reply = make_reply(status)
    assert f'hx-get="{url("thread", reply)}"' in rc.get(url("history")).content.decode()
