from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from statecore import clock, statefile
from statecore.models import Message, Source
from tests.factories import make_incoming, make_reply
from tests.users import make_user

pytest_plugins = [
    "tests.fake_gateway",
    "tests.fake_waha",
    "tests.fake_evolution",
    "tests.fake_cloud",
]

SAMPLE = (
    Path(__file__).resolve().parent.parent / "statecore" / "fixtures" / "whatsapp_state.sample.json"
)
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def sample_bytes() -> bytes:
    return SAMPLE.read_bytes()


@pytest.fixture
def sample_state(db, sample_bytes):
    """The real sample file, imported."""
    statefile.import_bytes(sample_bytes, actor="test", source=Source.COMMAND)
    return sample_bytes


# --- The reviewer pages (test_queue_*.py, test_history_*.py) ---------------------------

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://testserver/queue/"}
# A page: sign-in (session, user) and permission (2) queries included.
MAX_QUERIES = 9
# An htmx approve: sign-in 2, permission 2, the reply 1 (to ask whether the chat moved
# on), what its card shows 1, the move 6 (BEGIN, lock-read, compare-and-set, counter,
# audit row, COMMIT). Confirmed ("approve anyway"): the reply is read by the move only.
APPROVE_QUERIES = 12
CONFIRMED_APPROVE_QUERIES = APPROVE_QUERIES - 1


@pytest.fixture
def reviewer(db):
    return make_user("dana", reviewer=True)


@pytest.fixture
def rc(reviewer) -> Client:
    """A client signed in as a reviewer."""
    client = Client()
    client.force_login(reviewer)
    return client


@pytest.fixture
def other(db) -> Client:
    """A second reviewer, the one who comes too late."""
    client = Client()
    client.force_login(make_user("sam", reviewer=True))
    return client


@pytest.fixture
def reader(db) -> Client:
    """Signed in, without the permission to review."""
    client = Client()
    client.force_login(make_user("reader"))
    return client


def ago(**delta) -> str:
    return clock.local_iso(clock.now() - timedelta(**delta))


def url(name: str, msg: Message | None = None) -> str:
    return reverse(f"approvals:{name}", args=[msg.pk] if msg else [])


def fresh(msg: Message) -> Message:
    return Message.objects.get(pk=msg.pk)


def card_html(response, msg: Message) -> str:
    """The card of `msg` in a page."""
    text = response.content.decode()
    match = re.search(rf'<article id="card-{msg.pk}".*?</article>', text, re.S)
    assert match, f"no card for {msg.message_id}"
    return match.group(0)


def stale_draft() -> tuple[Message, Message]:
    incoming = make_incoming(number="923007770000", body="first", timestamp=ago(minutes=10))
    draft = make_reply(incoming=incoming, timestamp=ago(minutes=9))
    again = make_incoming(
        number="923007770000", body="Also: cancel my order!", timestamp=ago(minutes=5)
    )
    return draft, again
