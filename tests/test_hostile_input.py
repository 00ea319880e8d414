"""No input gets a 500: hostile values in every GET parameter and form field of every page.

The named cases first (each answered 500 once), then the corpus: every value in every
parameter a page reads, as a signed-in superuser. A GET changes nothing in the database,
ever; a POST either does what it is for or answers 4xx and changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client, RequestFactory
from django.urls import reverse

from approvals.forms import HistoryFilterForm, QueueFilterForm, db_id
from approvals.queue import parse_shown
from statecore import lifecycle, session_events
from statecore.models import Source, Status
from statecore.statefile.rules import INT64_MAX
from statecore.whatsapp.wwebjs_events import parse_event
from tests.factories import make_incoming, make_reply
from tests.session_helpers import use_gateway, valid_session

HTMX = {"HX-Request": "true", "HX-Current-URL": "http://testserver/queue/"}
PAST_64_BITS = "99999999999999999999"
CORPUS = [
    "²",  # str.isdigit() says yes, int() says no
    "١٢",  # Arabic-Indic digits: int() reads them as 12
    PAST_64_BITS,  # more than SQLite's (or PostgreSQL's bigint's) 64 bits
    f"{PAST_64_BITS}-0",  # the poll's "<id>-<id>"
    "1-²",
    "-1",
    "0",
    "1e400",
    "NaN",
    "",
    "\x00",
    "\ud800",  # a lone surrogate: sent as the bytes it would be, which are not UTF-8
    "x" * 10_000,
    "<script>alert(1)</script>",
    "%",
    "' OR '1'='1",
    "\u202egnp.exe",  # right-to-left override
    "//evil.example/",
    "\r\nX-Injected: 1",
]


# --- The values that answered 500 --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1),
        ("42", 42),
        (str(INT64_MAX), INT64_MAX),
        (str(INT64_MAX + 1), None),
        (PAST_64_BITS, None),
        ("9" * 5000, None),  # int() refuses more than 4,300 digits
        ("0", None),
        ("-1", None),
        ("+1", None),
        (" 1", None),
        ("²", None),
        ("١٢", None),
        ("", None),
        ("1\x00", None),
    ],
)
def test_a_database_id_is_ascii_digits_from_1_to_2_63_minus_1(text, expected):
    assert db_id(text) == expected


def test_the_poll_ignores_shown_values_int_refuses_or_a_database_cannot_hold():
    shown = parse_shown(["²", f"{PAST_64_BITS}-0", "1-²", f"2-{PAST_64_BITS}", "3-0", "4", "5-6"])
    assert shown == {3: 0, 4: 0, 5: 6}


@pytest.fixture
def superuser(db) -> User:
    return User.objects.create_superuser("root", password="a-long-test-password-1")


@pytest.fixture
def su(superuser) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


@pytest.mark.parametrize("value", ["²", PAST_64_BITS, "١٢"])
def test_done_that_is_no_id_shows_the_queue_without_a_done_card(su, value):
    decided = make_reply(Status.APPROVED)
    response = su.get("/queue/", {"done": value})
    assert response.status_code == 200
    assert 'class="just-done"' not in response.content.decode()
    # The real id still shows it (the parse is not simply off).
    assert 'class="just-done"' in su.get("/queue/", {"done": decided.pk}).content.decode()


@pytest.mark.parametrize("shown", ["²", f"{PAST_64_BITS}-0", f"1-{PAST_64_BITS}"])
def test_the_poll_answers_shown_values_that_are_no_ids(su, shown):
    make_reply()
    response = su.get("/queue/poll/", {"shown": [shown, "0"]}, headers=HTMX)
    assert response.status_code == 200


@pytest.mark.parametrize("bad", ["²", PAST_64_BITS, str(INT64_MAX + 1), "١٢"])
def test_bulk_refuses_ids_that_are_no_database_ids_and_changes_nothing(su, bad):
    draft = make_reply()
    before = snapshot()
    response = su.post(
        "/queue/bulk/", {"ids": [str(draft.pk), bad], "action": "reject"}, headers=HTMX
    )
    assert response.status_code == 422
    assert "Unknown selection" in response.content.decode()
    assert snapshot() == before


# --- The gateway's events: read as strictly as a state file, but not as one ---------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"event": "ready", "session": "x", "messages": 5, "statistics": []}',
        b'{"event": "ready", "at": "2026-11-25T09:00:00", "extra": {"id": 1}}',
    ],
)
def test_an_event_is_not_held_to_the_state_files_types(body):
    assert parse_event(body).kind == "ready"


# --- A search too long to run ---------------------------------------------------------------


def cards_on(html: str) -> list[str]:
    return re.findall(r'<article id="(?:card|entry)-(\d+)"', html)


@pytest.mark.parametrize(
    ("path", "status"), [("/queue/", Status.PENDING_APPROVAL), ("/history/", Status.REJECTED)]
)
def test_a_refused_search_shows_its_error_and_no_replies(su, path, status):
    make_reply(status)
    assert len(cards_on(su.get(path).content.decode())) == 1

    html = su.get(path, {"q": "x" * 201}).content.decode()

    assert cards_on(html) == []
    assert re.search(r'<p class="field-error" role="alert">[^<]+</p>', html)
    assert "A search can be at most 200 characters (this one has 201)" in html
    assert ">Clear</a>" in html


@pytest.mark.parametrize("path", ["/queue/", "/history/"])
def test_a_search_with_a_nul_is_refused_before_the_page(su, path):
    make_reply(Status.REJECTED)
    response = su.get(path, {"q": "a\x00b"})
    assert response.status_code == 400
    assert cards_on(response.content.decode()) == []


def test_a_refused_search_counts_nothing_waiting(su):
    for _ in range(51):
        make_reply()
    assert "Page 1 of 2" in su.get("/queue/").content.decode()

    html = su.get("/queue/", {"q": "x" * 201}).content.decode()

    assert "Page 1 of" not in html and "51 waiting" not in html


def test_the_queue_poll_brings_no_card_for_a_refused_search(su):
    make_reply()
    html = su.get("/queue/poll/", {"q": "x" * 201}, headers=HTMX).content.decode()
    assert "<article" not in html


def test_a_search_of_200_characters_still_runs(su):
    text = "y" * 200
    make_reply(body=f"before {text} after")
    make_reply(body="something else")
    assert len(cards_on(su.get("/queue/", {"q": text}).content.decode())) == 1


# --- The corpus ------------------------------------------------------------------------------


# A download of the whole state is audited by design: the one row a GET writes.
READ_RECORDS = {"statecore.AuditEvent": {"action": "state_download"}}


def snapshot() -> dict:
    """Every row of the app's tables and the users (sign-in times aside)."""
    tables = {}
    for model in apps.get_app_config("statecore").get_models():
        rows = model.objects.exclude(**READ_RECORDS.get(model._meta.label, {}))
        tables[model._meta.label] = sorted(map(repr, rows.values_list()))
    tables["users"] = sorted(
        map(repr, User.objects.values_list("username", "password", "is_active", "is_staff"))
    )
    return tables


def _quote(value: str) -> str:
    # A lone surrogate goes as the bytes it would be: not UTF-8, as a hostile client sends it.
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def encode(params: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{_quote(name)}={_quote(value)}" for name, value in params)


@pytest.fixture
def data(db, settings, tmp_path, fake_gateway):
    """Something on every page: each status, an event, a QR, a gateway that answers."""
    valid_session(settings, tmp_path)
    use_gateway(fake_gateway.url)
    pending = make_reply()
    failed = make_reply(Status.FAILED)
    for status in (Status.APPROVED, Status.REJECTED, Status.SENT):
        make_reply(status)
    make_incoming(name="Farah")
    session_events.apply_event(parse_event(b'{"event": "qr", "qr": "2@hostile-test"}'))
    session_events.apply_event(parse_event(b'{"event": "disconnected", "reason": "NAVIGATION"}'))
    return {"pending": pending, "failed": failed}


def get_each(
    client: Client, path: str, names: list[str], headers: dict | None = None, corpus=CORPUS
) -> int:
    """Each value in each parameter alone, then in all at once: no 5xx, nothing changed
    (compared once per page: a change is then found by sending that page's requests)."""
    before = snapshot()
    sent = 0
    for value in corpus:
        for params in [[(name, value)] for name in names] + [[(n, value) for n in names]]:
            url = f"{path}?{encode(params)}"
            response = client.get(url, headers=headers or {})
            assert response.status_code < 500, url[:200]
            sent += 1
    assert snapshot() == before, path
    return sent


def test_no_get_parameter_of_the_reviewer_pages_gets_a_5xx_or_changes_anything(su, data):
    pending, failed = data["pending"].pk, data["failed"].pk
    queue_params = [*QueueFilterForm.base_fields, "page", "done", "next"]
    pages = {
        "/": ["next"],
        "/queue/": queue_params,
        f"/queue/{pending}/": ["next"],
        f"/queue/{pending}/edit/": ["next"],
        f"/queue/{pending}/reject/": ["next"],
        "/history/": [*HistoryFilterForm.base_fields, "page", "next"],
        f"/history/{failed}/": ["next"],
        "/session/": ["live", "next"],
        "/state/upload/": ["next"],
        "/state/upload/confirm/": ["next"],
        "/state/download/": ["next"],
    }
    for path, names in pages.items():
        get_each(su, path, names)
    # The htmx requests: the poll (with the cards it is told are shown), a card, the
    # session page's two fragments.
    get_each(su, "/queue/poll/", [*queue_params, "shown"], headers=HTMX)
    get_each(su, f"/queue/{pending}/", ["next"], headers=HTMX)
    for target in ("gateway-status", "qr-panel"):
        get_each(su, "/session/", ["live"], headers={"HX-Request": "true", "HX-Target": target})


# What every changelist reads the same way (Django's own code): sent to one of them.
CHANGELIST_PARAMS = ["o", "p", "all", "_to_field"]


def changelist_params(superuser: User) -> dict[str, list[str]]:
    """Each admin changelist and the parameters of its own: the search, and every filter's
    on ours (the other apps' filters are Django's and the packages' own code)."""
    request = RequestFactory().get("/")
    request.user = superuser
    pages = {}
    for model, model_admin in admin.site._registry.items():
        path = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        changelist = model_admin.get_changelist_instance(request)
        names = ["q"] if changelist.search_fields else []
        if model._meta.app_label == "statecore":
            for spec in changelist.filter_specs:
                names += spec.expected_parameters()
        pages[path] = names
    return pages


WITHOUT_NUL = [value for value in CORPUS if "\x00" not in value]


def test_no_get_parameter_of_an_admin_changelist_gets_a_5xx_or_changes_anything(
    su, superuser, data
):
    pages = changelist_params(superuser)
    assert {"q", "status__exact", "timestamp__gte"} <= set(pages["/admin/statecore/message/"])
    pages["/admin/statecore/message/"] += CHANGELIST_PARAMS
    for path, names in pages.items():
        if "q" in names:
            get_each(su, path, ["q"])
        if filters := [name for name in names if name != "q"]:
            # A NUL in a filter: the test below (PostgreSQL cannot compare with one).
            get_each(su, path, filters, corpus=WITHOUT_NUL)


def test_a_nul_in_an_admin_filter_gets_a_400(su, superuser, data):
    # PostgreSQL cannot compare with a NUL: refused before any view (statecore.middleware).
    for path, names in changelist_params(superuser).items():
        if filters := [name for name in names if name != "q"]:
            get_each(su, path, filters, corpus=["\x00"])
            response = su.get(path, {filters[0]: "\x00"})
            assert response.status_code == 400, path


def test_no_get_parameter_of_the_sign_in_page_gets_a_5xx(db):
    assert get_each(Client(), "/accounts/login/", ["next"]) == len(CORPUS) * 2


# --- Every form field ---------------------------------------------------------------------


def post_each(client: Client, target, *, only=None, headers: dict | None = None) -> None:
    """Each value in each field (or `only` these), the others valid, on a fresh target
    each time (`target()` makes it and gives the path and the valid fields): no 5xx, and
    a refusal (4xx) changes nothing."""
    _, fields = target()
    for name in only or [name for name in fields if name != NEXT]:
        for value in CORPUS:
            path, valid = target()
            body = encode([(n, value if n == name else v) for n, v in valid.items()])
            before = snapshot()
            response = client.post(
                path, body, content_type="application/x-www-form-urlencoded", headers=headers or {}
            )
            where = (path, name, value[:50], response.status_code)
            assert response.status_code < 500, where
            if response.status_code >= 400:
                assert snapshot() == before, where


# The post/redirect/get target: a case of its own (below).
NEXT = "next"


def on_a_fresh(action: str, fields: dict, status: str = Status.PENDING_APPROVAL):
    def target() -> tuple[str, dict]:
        return reverse(f"approvals:{action}", args=[make_reply(status).pk]), fields

    return target


def undo_of_my_approval(user: User):
    def target() -> tuple[str, dict]:
        draft = make_reply()
        lifecycle.approve(draft.message_id, actor=user.username, source=Source.WEB)
        return reverse("approvals:undo", args=[draft.pk]), {"next": "/queue/"}

    return target


def bulk_on_a_fresh_draft() -> tuple[str, dict]:
    fields = {"ids": str(make_reply().pk), "action": "reject", "reason": "", "next": "/queue/"}
    return reverse("approvals:bulk"), fields | {"confirm_stale": "1"}


@pytest.mark.parametrize("htmx", [False, True])
def test_no_form_field_of_the_queue_gets_a_5xx_and_a_refusal_changes_nothing(
    su, superuser, data, htmx
):
    headers = HTMX if htmx else {}
    post_each(su, on_a_fresh("approve", {"confirm_stale": "1", "next": "/queue/"}), headers=headers)
    post_each(su, on_a_fresh("edit", {"text": "Edited", "next": "/queue/"}), headers=headers)
    post_each(su, on_a_fresh("reject", {"reason": "no", "next": "/queue/"}), headers=headers)
    post_each(su, undo_of_my_approval(superuser), headers=headers)
    post_each(su, bulk_on_a_fresh_draft, headers=headers)


def test_no_form_field_of_the_history_and_session_gets_a_5xx_and_a_refusal_changes_nothing(
    su, data
):
    post_each(su, on_a_fresh("retry", {"next": "/history/"}, Status.FAILED))
    note = {"note": "seen on the phone", "next": "/history/"}
    post_each(su, on_a_fresh("confirm-sent", note, Status.FAILED))
    post_each(
        su, on_a_fresh("reopen", {"note": "asked again", "next": "/history/"}, Status.REJECTED)
    )
    post_each(su, lambda: (reverse("approvals:session-mark-invalid"), {"reason": "lost phone"}))


BOUNDARY = "hostile-boundary"


def multipart(file_name: str, content: str, on_duplicate: str) -> bytes:
    """The upload form's body as a hostile client writes it (the test client would refuse
    a lone surrogate or a file name without a name)."""

    def raw(text: str) -> bytes:
        return text.encode("utf-8", "surrogatepass")

    return (
        raw(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="on_duplicate"\r\n\r\n')
        + raw(on_duplicate)
        + raw(f'\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="')
        + raw(file_name)
        + b'"\r\nContent-Type: application/json\r\n\r\n'
        + raw(content)
        + raw(f"\r\n--{BOUNDARY}--\r\n")
    )


def test_no_form_field_of_the_upload_gets_a_5xx_and_changes_anything(su, data):
    before = snapshot()
    for value in CORPUS:
        for body in (
            multipart("state.json", value, "refuse"),
            multipart(value, "{}", "refuse"),
            multipart("state.json", "{}", value),
        ):
            response = su.post(
                "/state/upload/", body, content_type=f"multipart/form-data; boundary={BOUNDARY}"
            )
            assert response.status_code < 500, (value[:50], body[:300])
        response = su.post(
            "/state/upload/confirm/",
            encode([("token", value)]),
            content_type="application/x-www-form-urlencoded",
        )
        assert response.status_code < 500, value[:50]
    assert snapshot() == before


def test_no_form_field_of_the_sign_in_page_gets_a_5xx_or_changes_anything(superuser):
    fields = {"username": "root", "password": "wrong-password", "next": "/queue/"}
    post_each(Client(), lambda: ("/accounts/login/", fields), only=list(fields))
    assert User.objects.get(username="root").last_login is None  # nobody got in


@pytest.mark.parametrize(
    "target",
    [
        on_a_fresh("approve", {"next": "/queue/"}),
        on_a_fresh("reject", {"reason": "", "next": "/queue/"}),
        on_a_fresh("retry", {"next": "/history/"}, Status.FAILED),
    ],
)
def test_a_hostile_next_on_an_action_gets_no_5xx(su, target):
    post_each(su, target, only=[NEXT])
