"""Text search from the index (statecore/search.py): what the queue, the history and the
admin find is what a scan of the folded text finds, and the index follows every writer."""

from __future__ import annotations

import io
import unicodedata

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from approvals import history, queue
from statecore import clock, lifecycle, search, statefile
from statecore.models import HANDLED, Message, Source, Status
from tests.benchmarks.bench_data import pending_state
from tests.factories import make_incoming, make_reply
from tests.users import make_user

pytestmark = pytest.mark.django_db

WHO = {"actor": "dana", "source": Source.WEB}
CHANGELIST = "admin:statecore_message_changelist"


def hand_built() -> None:
    """Accents composed and decomposed, numbers, every character a LIKE or a MATCH treats
    specially, and text in other scripts."""
    jose = make_incoming(
        number="923001234567",
        name="José Pérez",
        body="Can you send me the invoice for last month?",
    )
    zoe = make_incoming(
        number="923009998877",
        name="Zoë",
        body="50% off? a_b and 'quotes' \"double\" back\\slash",
    )
    upper = make_incoming(number="447700900123", name="ZOE UPPER", body="Ñandú straße")
    lines = make_incoming(number="923005550000", name="Dana", body="line one\nline two")
    make_incoming(number="15550001111", name="", body="ok, a double room")
    arabic = make_incoming(number="923006660000", name="محمد", body="مرحبا، هل المتجر مفتوح")
    make_incoming(number="923007770000", name="Rene\u0301e", body="e\u0301 combining accent")
    make_reply(incoming=jose, body="Hi José, your INVOICE is on its way 📄")
    make_reply(Status.REJECTED, incoming=zoe, body="Hi Zoë, 20% off this week only!")
    make_reply(Status.SENT, incoming=upper, body="Thanks")
    make_reply(incoming=lines, body="ok")
    make_reply(Status.FAILED, incoming=arabic, body="Hello")


SEARCHES = [
    "invoice",
    "INVOICE",
    "jose",
    "JOSÉ",
    "perez",
    "zoe",
    "Zoë",
    "ZOË",
    "4567",
    "9230",
    "0900",
    "50%",
    "20%",
    "%",
    "_",
    "a_b",
    "'quotes'",
    '"double"',
    "back\\slash",
    "\\",
    "nandu",
    "strasse",
    "line two",
    "renee",
    "Renée",
    "مرحبا",
    "ok",
    "e",
    "é",
    "LI",
    "payment",
    "x",
]


def folded(text: str) -> str:
    """The comparison users expect, written out here on its own (not the code's): case
    folded, compatibility forms and accents dropped."""
    compatible = unicodedata.normalize("NFKD", text)  # `𝔘` is a capital U, `１` a 1
    decomposed = unicodedata.normalize("NFKD", compatible.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def scan(text: str, fields=search.FIELDS) -> set[str]:
    """What a search must find: every message one of whose fields holds the folded text."""
    wanted = folded(text)
    return {
        m.message_id
        for m in Message.objects.all()
        if any(wanted in folded(getattr(m, name)) for name in fields)
    }


def found(text: str, fields=search.FIELDS) -> set[str]:
    return set(
        Message.objects.filter(search.matches(text, fields)).values_list("message_id", flat=True)
    )


@pytest.mark.parametrize("sparse", [2_000, 0], ids=["hits", "walk"])
@pytest.mark.parametrize("text", SEARCHES)
@pytest.mark.parametrize("fields", [search.FIELDS, queue.REPLY_FIELDS, queue.ANSWERED_FIELDS])
def test_a_search_finds_what_a_scan_of_the_folded_text_finds(text, fields, sparse, monkeypatch):
    monkeypatch.setattr(search, "SPARSE", sparse)  # the admin's list: hits listed or walked
    hand_built()
    assert found(text, fields) == scan(text, fields)


def test_the_searches_find_something_where_it_matters():
    """The table above is not vacuous: accents, numbers and literal wildcards each find
    the one message that holds them."""
    hand_built()
    assert len(found("jose")) == 2  # the customer's name and the reply's greeting
    assert len(found("4567")) == 2  # the customer's number and the reply's recipient
    assert len(found("a_b")) == 1 and len(found("50%")) == 1
    assert found("nandu") == found("ÑANDÚ") and len(found("nandu")) == 1
    assert found("payment") == set()


def _replies_scan(text: str, statuses) -> set[str]:
    answered = scan(text, queue.ANSWERED_FIELDS)
    return {
        m.message_id
        for m in Message.objects.filter(status__in=statuses)
        if m.message_id in scan(text, queue.REPLY_FIELDS) or m.reply_to in answered
    }


# The index's hits looked up (a rare text), or each row of the list tested (a common one).
HITS_OR_WALK = [
    pytest.param(2_000, id="hits"),
    pytest.param(3, id="past-the-limit"),
    pytest.param(0, id="walk"),
]


@pytest.mark.parametrize("sparse", HITS_OR_WALK)
@pytest.mark.parametrize("text", SEARCHES)
def test_the_queue_and_the_history_find_replies_by_their_text_or_their_customer(
    text, sparse, monkeypatch
):
    monkeypatch.setattr(search, "SPARSE", sparse)
    hand_built()
    now = clock.now()
    drafts = queue.pending_drafts({"q": text}, now=now).values_list("message_id", flat=True)
    handled = history.handled_replies({"q": text}).values_list("message_id", flat=True)
    assert set(drafts) == _replies_scan(text, [Status.PENDING_APPROVAL])
    assert set(handled) == _replies_scan(text, HANDLED)


def test_the_history_finds_a_reply_by_its_customers_name_without_accents():
    hand_built()
    handled = history.handled_replies({"q": "zoe"})
    # Zoë's own, and the one to ZOE UPPER, whose text does not name her.
    assert {m.body for m in handled} == {"Hi Zoë, 20% off this week only!", "Thanks"}


# --- The admin ---------------------------------------------------------------------------


@pytest.fixture
def staff_client() -> Client:
    client = Client()
    client.force_login(_staff("fixer", "view_message"))
    return client


def _staff(username: str, *codenames: str):
    user = make_user(username, staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def _admin_ids(client: Client, q: str) -> set[str]:
    response = client.get(reverse(CHANGELIST), {"q": q})
    assert response.status_code == 200
    return {m.message_id for m in response.context["cl"].result_list}


def test_the_admin_finds_each_word_in_any_column(staff_client):
    hand_built()
    assert _admin_ids(staff_client, "zoe 20%") == scan("zoe") & scan("20%")
    assert len(_admin_ids(staff_client, "zoe 20%")) == 1
    assert _admin_ids(staff_client, "Zoë") == scan("zoe")
    assert _admin_ids(staff_client, '"line two"') == scan("line two")


# Raw query strings: a NUL, bytes that are not UTF-8 (a lone surrogate's encoding), the
# characters FTS5's query language and LIKE give a meaning to, and a very long search.
HOSTILE = [
    "x" * 5000,
    "a%00b",
    "%ED%A0%80abc",
    "%FF%FE",
    "%22%27",
    "%22",
    "%7Bbody%7D%3A%20x",
    "NEAR(a%20b)",
    "AND%20OR%20NOT",
    "*",
    "%5Eabc",
    "%25%25%25",
    "___",
]


@pytest.mark.parametrize("q", HOSTILE)
def test_the_admin_answers_any_search_with_a_page_or_a_refusal(staff_client, q):
    hand_built()
    response = staff_client.get(f"{reverse(CHANGELIST)}?q={q}")
    assert response.status_code in (200, 400)


@pytest.mark.parametrize("path", ["/queue/", "/history/"])
@pytest.mark.parametrize("q", HOSTILE)
def test_the_reviewer_pages_answer_any_search_with_a_page_or_a_refusal(path, q):
    hand_built()
    client = Client()
    client.force_login(make_user("dana", reviewer=True))
    assert client.get(f"{path}?q={q}").status_code in (200, 400)


@pytest.mark.parametrize("text", ["\ud800abc", "abc\udfff", "a\x00bc", "\x00"])
def test_a_search_from_the_python_api_drops_what_no_message_can_hold(text):
    hand_built()
    make_incoming(body="xabcx")
    assert found(text) == scan(text.replace("\x00", "").encode("utf-8", "ignore").decode())


# --- In step with every writer -------------------------------------------------------------


def _indexed() -> set[str]:
    """What the index finds of each message by the whole of its id."""
    return {m.message_id for m in Message.objects.all() if m.message_id in found(m.message_id)}


def test_an_import_replaces_what_the_index_finds(sample_state):
    before = set(Message.objects.values_list("message_id", flat=True))
    assert before and _indexed() == before
    state = pending_state(3)
    statefile.import_state(state, actor="test", source=Source.COMMAND)
    assert found("Customer 2") == {
        "false_923000000002@c.us_3EB00000000002",
        "reply_false_923000000002@c.us_3EB00000000002",
    }
    assert not before & found("9230")
    assert _indexed() == set(Message.objects.values_list("message_id", flat=True))
    assert _index_size() in (None, Message.objects.count())


def test_a_bulk_replacement_with_the_index_deferred_leaves_it_in_step():
    hand_built()
    old = make_incoming(body="gone tomorrow 7781")
    with transaction.atomic(), search.deferred():
        Message.objects.filter(pk=old.pk).delete()
        fresh = make_incoming(body="arrived today 7782")
    assert found("778") == {fresh.message_id}
    assert found("invoice") == scan("invoice") and _index_size() in (None, Message.objects.count())
    edited = make_reply(body="written after 7783")  # the triggers are back
    lifecycle.edit_and_approve(edited.message_id, "rewritten 7784", **WHO)
    assert found("7783") == set() and found("7784") == {edited.message_id}


# Texts the index folds on each of its paths: plain ASCII (upper and lower case), accents
# composed and decomposed, compatibility forms, other scripts, and ASCII and not mixed.
FOLDED_TEXTS = [
    ("ASCII Only 123", "Plain Sender"),
    ("José PÉREZ", "Zoë"),
    ("Rene\u0301e e\u0301", "ZOE UPPER"),
    ("ﬁle 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 Ⅻ", "Ñandú"),
    ("مرحبا، هل المتجر مفتوح", "محمد"),
    ("Straße 👍 and ASCII", ""),
    ("Ｉｎｖｏｉｃｅ １２３ full width", "Ⓐnna"),
    ("آپ کا آرڈر کب پہنچے گا؟", "Urdu"),  # alef with madda: a mark unaccent keeps
]


@pytest.mark.parametrize("text", [t for pair in FOLDED_TEXTS for t in pair])
def test_the_fold_is_the_comparison_users_expect(text):
    # The rows a walk tests and the fragments too short for the index are compared as
    # search.fold leaves them: it must fold as the index does (`𝔘` as "u", `１` as "1").
    assert search.fold(text) == folded(text)


def _imported_with_folded_texts() -> None:
    incoming = [
        {
            "id": f"FOLD_{i}_{name or 'NONAME'}",
            "from": f"92300000{i:04d}@c.us",
            "fromName": name,
            "body": body,
            "timestamp": "2026-11-01T10:00:00",
        }
        for i, (body, name) in enumerate(FOLDED_TEXTS)
    ]
    state = {"messages": {"incoming": incoming}}
    statefile.import_state(state, actor="test", source=Source.COMMAND)


def _index_content() -> dict[str, tuple]:
    """The folded text the index holds, by message id: SQLite's content table, or
    PostgreSQL's `search_text` column."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"SELECT * FROM {search.TABLE}_content ORDER BY id")
            return {row[1]: row[1:] for row in cursor.fetchall()}
        cursor.execute("SELECT message_id, search_text FROM statecore_message ORDER BY id")
        return {row[0]: row[1:] for row in cursor.fetchall()}


def test_the_index_an_import_builds_is_the_one_the_triggers_keep():
    _imported_with_folded_texts()
    built = _index_content()
    with connection.cursor() as cursor:
        # Every row written again: the update trigger folds each one as a write would.
        cursor.execute("UPDATE statecore_message SET message_id = message_id")
        kept = _index_content()
        if connection.vendor == "sqlite":
            cursor.execute(
                f"INSERT INTO {search.TABLE} ({search.TABLE}) VALUES ('integrity-check')"
            )
    assert built == kept and len(built) == len(FOLDED_TEXTS)
    searches = ("jose", "PEREZ", "renee", "zoe", "file", "xii", "nandu", "مرحبا", "unicode")
    for text in (*searches, "invoice 123", "ANNA", "１２３", "آرڈر"):
        assert found(text) == scan(text) != set(), text
    assert found("strasse") == scan("strasse") != set()


def test_a_rebuilt_index_finds_what_the_import_made_it_find():
    _imported_with_folded_texts()
    before = {text: found(text) for text in ("jose", "renee", "plain", "محمد")}
    assert search.rebuild() == len(FOLDED_TEXTS)
    assert search.rebuild() == len(FOLDED_TEXTS)  # once more over a full index
    assert {text: found(text) for text in before} == before
    assert all(before.values())


def test_every_move_keeps_the_reply_found_by_its_text():
    reply = make_reply(body="parcel number 88421")
    for verb in (lifecycle.approve, lifecycle.undo, lifecycle.reject, lifecycle.reopen):
        verb(reply.message_id, **WHO)
        assert found("88421") == {reply.message_id}
    lifecycle.approve(reply.message_id, **WHO)
    lifecycle.mark_failed(reply.message_id, "timeout", **WHO)
    assert found("88421") == {reply.message_id}
    lifecycle.retry(reply.message_id, **WHO)
    lifecycle.mark_sent(reply.message_id, **WHO)
    assert found("88421") == {reply.message_id}


def test_an_edited_reply_is_found_by_its_new_text_only():
    reply = make_reply(body="parcel number 88421")
    lifecycle.edit_and_approve(reply.message_id, "Votre colis arrivé", **WHO)
    assert found("88421") == set()
    assert found("ARRIVE") == {reply.message_id}


def test_an_admin_edit_keeps_the_message_found(client):
    msg = make_incoming(body="the blue scarf please")
    client.force_login(_staff("root", "view_message", "change_message"))
    url = reverse("admin:statecore_message_change", args=[msg.pk])
    form = client.get(url).context["adminform"].form
    posted = {"extra_keys": '{"note": "checked"}', "seen": form["seen"].value()}
    assert client.post(url, posted).status_code == 302
    assert '"note"' in Message.objects.get(pk=msg.pk).raw
    assert found("blue scarf") == {msg.message_id}


def test_a_deleted_message_is_found_no_more():
    make_reply(Status.REJECTED, body="cancel order 5511")
    kept = make_reply(body="keep order 5512")
    lifecycle.clear_list(Status.REJECTED, **WHO)
    assert found("order 551") == {kept.message_id}
    Message.objects.filter(pk=kept.pk).delete()
    assert found("order 551") == set()
    # The newest id is free again (SQLite reuses it): the next message takes its place.
    again = make_incoming(body="order 5513 instead")
    assert found("order 551") == {again.message_id}
    assert _index_size() in (None, Message.objects.count())


def _index_size() -> int | None:
    """SQLite: the rows of the index, one per message (PostgreSQL's is an index proper)."""
    if connection.vendor != "sqlite":
        return None
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {search.TABLE}")
        return cursor.fetchone()[0]


def test_the_command_rebuilds_a_lost_index_and_says_how_many():
    hand_built()
    expected = found("invoice")
    _lose_the_index()
    out = io.StringIO()
    call_command("rebuild_search_index", stdout=out)
    assert f"{Message.objects.count()} messages" in out.getvalue()
    assert found("invoice") == expected and len(expected) == 2


def _lose_the_index() -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"DELETE FROM {search.TABLE}")
        else:
            cursor.execute("UPDATE statecore_message SET search_text = NULL")
    assert found("invoice") == set()


# --- Short fragments ----------------------------------------------------------------------


def test_a_fragment_too_short_for_the_index_scans_only_the_newest_messages(monkeypatch):
    old = make_incoming(body="xy old")
    new = make_incoming(body="xy new")
    assert found("xy") == {old.message_id, new.message_id}
    monkeypatch.setattr(search, "SHORT_SCAN_CAP", 1)
    assert found("xy") == {new.message_id}


def test_a_fragment_too_short_for_the_index_finds_replies_among_the_newest_messages(
    monkeypatch,
):
    old = make_reply(incoming=make_incoming(body="xy old"), body="Answer")
    new = make_reply(incoming=make_incoming(body="xy new"), body="Answer")
    assert _queue_finds("xy") == {old.message_id, new.message_id}
    monkeypatch.setattr(search, "SHORT_SCAN_CAP", 2)  # the newest reply and what it answers
    assert _queue_finds("xy") == {new.message_id}


def _queue_finds(text: str) -> set[str]:
    drafts = queue.pending_drafts({"q": text}, now=clock.now())
    return set(drafts.values_list("message_id", flat=True))


# --- Rare or common: the index's hits or a walk of the list --------------------------------


def _handed_over_as_ids(text: str) -> bool:
    """Whether the search gives the list its replies as a list of ids (from the index's
    hits), rather than a test of each row."""
    sql = str(history.handled_replies({"q": text}).query)
    return "json_each" in sql or "unnest" in sql


def test_a_rare_text_is_looked_up_and_a_common_one_walked(monkeypatch):
    monkeypatch.setattr(search, "SPARSE", 2)
    make_reply(Status.SENT, incoming=make_incoming(body="rare word"))
    for _ in range(3):
        make_reply(Status.SENT, incoming=make_incoming(body="common word"))
    assert _handed_over_as_ids("rare")
    assert not _handed_over_as_ids("common")  # 3 hits, past the limit of 2
    assert history.handled_replies({"q": "common"}).count() == 3


# --- Flat query counts ----------------------------------------------------------------------


def _queries_of_a_search(client: Client, n: int) -> int:
    statefile.import_state(pending_state(n), actor="test", source=Source.COMMAND)
    with CaptureQueriesContext(connection) as captured:
        response = client.get("/queue/", {"q": "customer 1"})
    assert response.status_code == 200
    return len(captured)


def test_a_searched_queue_page_runs_as_many_queries_at_1000_messages_as_at_10():
    client = Client()
    client.force_login(make_user("dana", reviewer=True))
    few = _queries_of_a_search(client, 10)
    many = _queries_of_a_search(client, 1000)
    assert many == few
