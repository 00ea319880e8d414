"""A mode per chat (issue 14, item 3): review / auto / off, enforced where a draft is
added, whoever adds it; set from the card, the history, the admin and the Python API;
audited; never in the state file."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from statecore import chat_modes, clock, drafting, lifecycle, rootstate, statefile, stats
from statecore.drafting import NOT_DRAFTED, Drafter
from statecore.models import AuditEvent, ChatMode, DraftAttempt, Message, Mode, Source, Status
from statecore.standin_assistant import draft_reply as standin_draft_reply
from statecore.state_manager import StateManager
from tests.conftest import HTMX, card_html, fresh, url
from tests.factories import make_incoming, make_reply
from tests.test_window import use_cloud

pytestmark = pytest.mark.django_db

NUMBER = "923001112222"
OTHER = "923009998888"


def set_mode(chat: str, mode: str, actor: str = "boss") -> bool:
    return chat_modes.set_mode(chat, mode, actor=actor, source=Source.API)


def script_draft(number: str = NUMBER) -> Message:
    """A drafted reply a script adds through the Python API, as the old scripts do."""
    incoming = make_incoming(number=number)
    data = StateManager(actor="script").add_message(
        {
            "id": f"reply_{incoming.message_id}",
            "recipient": number,
            "body": "We open at nine.",
            "original_message_id": incoming.message_id,
        },
        "pending_approval",
    )
    return Message.objects.get(message_id=data["id"])


def actions_of(msg: Message) -> list[tuple[str, str, str, str]]:
    events = AuditEvent.objects.filter(message_id=msg.message_id).order_by("created_at", "pk")
    return [(e.action, e.to_status, e.actor, e.note) for e in events]


def mode_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=chat_modes.SET_CHAT_MODE).order_by("pk"))


# --- The verb ---------------------------------------------------------------------------


def test_a_chat_without_a_row_is_in_review():
    assert chat_modes.mode_of(NUMBER) == Mode.REVIEW
    assert chat_modes.modes_of([NUMBER, ""]) == {NUMBER: Mode.REVIEW}


def test_set_mode_stores_the_mode_and_writes_one_audit_row():
    assert set_mode("+92 300 1112222", "auto") is True

    row = ChatMode.objects.get()
    assert (row.chat, row.mode, row.updated_by) == (NUMBER, Mode.AUTO, "boss")
    (event,) = mode_events()
    assert (event.actor, event.source, event.message_id) == ("boss", Source.API, "")
    assert event.detail == {"chat": NUMBER, "before": "review", "after": "auto"}
    assert chat_modes.mode_of(NUMBER) == Mode.AUTO


def test_setting_the_mode_a_chat_is_in_writes_nothing():
    assert set_mode(NUMBER, "review") is False
    assert not ChatMode.objects.exists() and not mode_events()
    set_mode(NUMBER, "off")
    assert set_mode(NUMBER, "off") is False
    assert len(mode_events()) == 1


def test_back_to_review_is_a_change_like_any_other():
    set_mode(NUMBER, "off")
    assert set_mode(NUMBER, "review", actor="sam") is True
    assert ChatMode.objects.get().mode == Mode.REVIEW
    assert [e.detail["after"] for e in mode_events()] == ["off", "review"]


@pytest.mark.parametrize(
    ("chat", "mode", "field"),
    [
        (NUMBER, "silent", "mode"),
        (NUMBER, "", "mode"),
        ("", "auto", "chat"),
        ("not a number", "auto", "chat"),
        ("9" * 201, "auto", "chat"),
        ("٩٢٣٠٠", "auto", "chat"),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_nothing_is_written(chat, mode, field):
    with pytest.raises(ValueError, match=rf"^{field}: "):
        set_mode(chat, mode)
    assert not ChatMode.objects.exists() and not mode_events()


def test_an_old_group_id_with_its_dash_is_a_chat():
    assert chat_modes.clean_chat("923001234567-1609459200@g.us") == "923001234567-1609459200"


# --- Enforced where a draft is added (the Python API) -------------------------------------


def test_review_leaves_the_draft_pending():
    set_mode(NUMBER, "off")
    set_mode(NUMBER, "review")
    draft = script_draft()
    assert draft.status == Status.PENDING_APPROVAL
    assert [a[0] for a in actions_of(draft)] == ["add"]


def test_review_with_human_in_the_loop_off_still_approves_at_once():
    rootstate.update_part(
        "human_in_the_loop", lambda _old: False, actor="t", source=Source.API, action="set"
    )
    set_mode(NUMBER, "off")
    set_mode(NUMBER, "review")
    draft = script_draft()
    assert draft.status == Status.APPROVED
    assert actions_of(draft)[-1] == ("approve", "approved", "auto", "human_in_the_loop is off")


def test_auto_approves_the_draft_at_once_by_the_same_path():
    set_mode(NUMBER, "auto")
    draft = script_draft()

    assert draft.status == Status.APPROVED and draft.status_changed_by == "auto"
    assert actions_of(draft) == [
        ("add", "pending_approval", "script", ""),
        ("approve", "approved", "auto", "the chat is on auto"),
    ]
    approve = AuditEvent.objects.get(message_id=draft.message_id, action="approve")
    assert approve.source == Source.API  # the caller's source, as with human_in_the_loop off
    assert rootstate.statistics()["total_approved"] == 1


def test_off_rejects_the_draft_at_once_and_the_script_gets_no_error():
    set_mode(NUMBER, "off")
    draft = script_draft()  # no exception

    assert draft.status == Status.REJECTED and draft.status_changed_by == "chat off"
    assert actions_of(draft) == [
        ("add", "pending_approval", "script", ""),
        ("reject", "rejected", "chat off", "the chat is off"),
    ]
    assert not Message.objects.pending().exists()
    assert rootstate.statistics()["total_rejected"] == 1


def test_a_script_that_drafts_on_its_own_is_not_given_the_messages_of_a_chat_that_is_off():
    quiet = make_incoming(number=NUMBER, body="Any news?")
    other = make_incoming(body="Are you open?")
    set_mode(NUMBER, "off")
    listed = [m["id"] for m in StateManager(actor="script").get_undrafted_messages()]
    assert listed == [other.message_id]
    set_mode(NUMBER, "review")
    listed = [m["id"] for m in StateManager(actor="script").get_undrafted_messages()]
    assert listed == [quiet.message_id, other.message_id]


def test_off_a_reply_a_script_approves_itself_is_rejected_too():
    set_mode(NUMBER, "off")
    set_mode(OTHER, "auto")
    held = make_reply(Status.APPROVED, incoming=make_incoming(number=NUMBER))
    other = make_reply(Status.APPROVED, incoming=make_incoming(number=OTHER))

    assert held.status == Status.REJECTED
    assert actions_of(held) == [
        ("add", "pending_approval", "factory", "added as approved; the chat is off"),
        ("reject", "rejected", "chat off", "the chat is off"),
    ]
    assert rootstate.statistics()["total_approved"] == 1  # only the other chat's
    assert other.status == Status.APPROVED and len(actions_of(other)) == 1


def test_what_was_sent_is_stored_as_it_came_whatever_the_mode():
    set_mode(NUMBER, "off")
    sent = make_reply(Status.SENT, incoming=make_incoming(number=NUMBER))
    assert sent.status == Status.SENT


def test_a_mode_applies_to_its_chat_only():
    set_mode(OTHER, "off")
    assert script_draft(NUMBER).status == Status.PENDING_APPROVAL
    assert script_draft(OTHER).status == Status.REJECTED


def test_a_customers_message_in_a_chat_that_is_off_is_stored_as_it_came():
    set_mode(NUMBER, "off")
    incoming = make_incoming(number=NUMBER)
    assert incoming.status == Status.INCOMING
    assert [a[0] for a in actions_of(incoming)] == ["add"]


def test_drafts_waiting_when_the_mode_changes_stay_for_a_person():
    draft = make_reply(incoming=make_incoming(number=NUMBER))
    set_mode(NUMBER, "auto")
    set_mode(NUMBER, "off")
    assert fresh(draft).status == Status.PENDING_APPROVAL


def test_auto_leaves_pending_a_draft_the_gateway_would_refuse(settings):
    """A text longer than one send carries (Cloud: 4,096): the automation leaves it for a
    person with an audited why, as with human_in_the_loop off."""
    use_cloud(settings)
    set_mode(NUMBER, "auto")
    incoming = make_incoming(number=NUMBER)
    draft = make_reply(incoming=incoming, body="x" * 5000)
    assert draft.status == Status.PENDING_APPROVAL
    assert actions_of(draft)[-1][:3] == ("auto_approve_refused", "pending_approval", "auto")


def test_an_import_is_the_state_as_it_was_whatever_the_modes(sample_state):
    pending = sorted(Message.objects.pending().values_list("chat", "message_id"))
    assert pending, "the sample has drafts waiting"
    for chat, _ in pending:
        set_mode(chat, "off")
    statefile.import_bytes(sample_state, actor="test", source=Source.COMMAND)
    # The same drafts, in whatever order the database returns them.
    assert sorted(Message.objects.pending().values_list("chat", "message_id")) == pending
    # ...and an import does not reset the modes: they are not part of the file.
    assert {chat_modes.mode_of(chat) for chat, _ in pending} == {Mode.OFF}


def test_the_modes_never_reach_the_state_file(sample_state):
    before = statefile.export_bytes()
    chat = Message.objects.pending().first().chat
    set_mode(chat, "auto")
    set_mode(OTHER, "off")
    assert statefile.export_bytes() == before


def test_decisions_of_a_chats_mode_are_no_persons_wait():
    set_mode(NUMBER, "auto")
    set_mode(OTHER, "off")
    script_draft(NUMBER)
    script_draft(OTHER)
    assert stats.decision_waits(clock.now()).count == 0
    person = make_reply(incoming=make_incoming(number="923005550000"))
    lifecycle.reject(person.message_id, actor="dana", source=Source.WEB)
    assert stats.decision_waits(clock.now()).count == 1


# --- Enforced where the assistant is asked (the drafter) -----------------------------------


class RecordingAssistant:
    """The stand-in assistant's answers, with each message it was asked about."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, message: dict) -> str | None:
        self.asked.append(message["id"])
        return standin_draft_reply(message)


def drafting_round(assistant: RecordingAssistant):
    return Drafter(assistant, say=lambda _text: None).run_once()


def test_off_the_assistant_is_not_asked_and_the_skip_is_recorded():
    assistant = RecordingAssistant()
    set_mode(NUMBER, "off")
    quiet = make_incoming(number=NUMBER, body="spam spam")
    asked = make_incoming(number=OTHER, body="Do you deliver?")

    summary = drafting_round(assistant)

    assert assistant.asked == [asked.message_id]
    assert summary.chat_off == 1 and summary.drafted == 1
    assert not Message.objects.filter(reply_to=quiet.message_id).exists()
    skip = DraftAttempt.objects.get(message_id=quiet.message_id)
    assert (skip.outcome, skip.error) == (DraftAttempt.Outcome.NO_REPLY, "the chat is off")
    assert actions_of(quiet)[-1][:3] == (NOT_DRAFTED, "", "chat off")


def test_a_message_that_came_while_off_is_not_drafted_once_the_chat_is_back_on():
    assistant = RecordingAssistant()
    set_mode(NUMBER, "off")
    make_incoming(number=NUMBER)
    drafting_round(assistant)
    set_mode(NUMBER, "review")

    summary = drafting_round(assistant)

    assert assistant.asked == [] and summary.chat_off == 0
    assert AuditEvent.objects.filter(action=NOT_DRAFTED).count() == 1


def test_more_messages_of_a_chat_that_is_off_than_a_round_records_are_never_asked(monkeypatch):
    monkeypatch.setattr(drafting, "OFF_BATCH", 1)
    assistant = RecordingAssistant()
    set_mode(NUMBER, "off")
    for n in range(3):
        make_incoming(number=NUMBER, body=f"noise {n}")

    rounds = [drafting_round(assistant).chat_off for _ in range(4)]

    assert assistant.asked == []
    assert rounds == [1, 1, 1, 0]


def test_auto_the_assistants_draft_is_approved_at_once():
    assistant = RecordingAssistant()
    set_mode(NUMBER, "auto")
    incoming = make_incoming(number=NUMBER)

    drafting_round(assistant)

    reply = Message.objects.get(reply_to=incoming.message_id)
    assert assistant.asked == [incoming.message_id]
    assert reply.status == Status.APPROVED
    assert actions_of(reply) == [
        ("add", "pending_approval", "assistant", ""),
        ("approve", "approved", "auto", "the chat is on auto"),
    ]


def test_review_the_assistants_draft_waits_for_a_person():
    assistant = RecordingAssistant()
    set_mode(NUMBER, "review")  # no change: the default
    incoming = make_incoming(number=NUMBER)
    drafting_round(assistant)
    assert Message.objects.get(reply_to=incoming.message_id).status == Status.PENDING_APPROVAL


@pytest.mark.django_db(transaction=True)
def test_a_chat_turned_off_while_the_assistant_thinks_gets_its_draft_rejected():
    """The mode is read again where the draft is added, not only when the round began."""

    class TurnsOff(RecordingAssistant):
        def __call__(self, message: dict) -> str | None:
            set_mode(NUMBER, "off")
            return super().__call__(message)

    incoming = make_incoming(number=NUMBER)
    drafting_round(TurnsOff())
    assert Message.objects.get(reply_to=incoming.message_id).status == Status.REJECTED


# --- The pages: the card's menu and the history's entry ------------------------------------


def mode_url(name: str, msg: Message) -> str:
    return reverse(f"approvals:{name}", args=[msg.pk])


@pytest.fixture
def draft(db) -> Message:
    return make_reply(incoming=make_incoming(number=NUMBER, name="Ayesha"))


def test_the_cards_menu_sets_the_mode_and_answers_with_the_card(rc, draft):
    response = rc.post(mode_url("chat-mode", draft), {"mode": "auto"}, **HTMX)

    assert response.status_code == 200
    assert chat_modes.mode_of(NUMBER) == Mode.AUTO
    html = response.content.decode()
    assert f'id="card-{draft.pk}"' in html and badge(html) == "auto"
    (event,) = mode_events()
    assert (event.actor, event.source) == ("dana", Source.WEB)
    # The draft on the card stays for the reviewer to decide.
    assert fresh(draft).status == Status.PENDING_APPROVAL


def test_without_javascript_the_menu_redirects_back_with_a_message(rc, draft):
    response = rc.post(mode_url("chat-mode", draft), {"mode": "off", "next": "/queue/?q=a"})
    assert response.status_code == 302 and response["Location"] == "/queue/?q=a"
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert texts == [f"The chat +{NUMBER} is now on off: {chat_modes_meaning('off')}."]


def chat_modes_meaning(mode: str) -> str:
    from approvals.chat_mode_views import MEANING

    return MEANING[Mode(mode)]


def badge(html: str) -> str:
    """The chat-mode badge a card or an entry shows, "" without one."""
    match = re.search(
        r'<span class="tag tag-mode tag-mode-(\w+)"[^>]*>'
        r'<span class="visually-hidden">Chat mode: </span>(\w+)</span>',
        html,
    )
    if not match:
        return ""
    assert match.group(1) == match.group(2)
    return match.group(2)


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_the_card_says_when_its_chat_is_not_in_review(rc, draft, mode):
    other = make_reply(incoming=make_incoming(number=OTHER))
    set_mode(NUMBER, mode)
    page = rc.get("/queue/")
    assert badge(card_html(page, draft)) == mode
    assert badge(card_html(page, other)) == ""
    # The card's own view (one card, its own query) says it too.
    assert badge(rc.get(url("card", draft), **HTMX).content.decode()) == mode


def test_a_card_the_poll_brings_says_its_chats_mode(rc, draft):
    arrived = make_reply(incoming=make_incoming(number=OTHER))
    set_mode(OTHER, "auto")  # after it came: it waits, and its card says why it is unusual
    poll = rc.get(url("queue-poll"), {"shown": [f"{draft.pk}-0"]}, **HTMX)
    assert poll.status_code == 200
    html = poll.content.decode()
    assert f'id="card-{arrived.pk}"' in html and badge(html) == "auto"


def test_the_menu_shows_the_chats_mode_checked(rc, draft):
    set_mode(NUMBER, "off")
    card = card_html(rc.get("/queue/"), draft)
    assert re.search(r'value="off" checked', card)
    assert not re.search(r'value="(review|auto)" checked', card)


def without_set_mode(reviewer: User) -> Client:
    """The reviewer signed in after the permission was taken from their group (the
    Reviewers group has it from approvals 0004; an admin can take it back)."""
    group = reviewer.groups.get()
    group.permissions.remove(Permission.objects.get(codename="set_chat_mode"))
    client = Client()
    client.force_login(User.objects.get(pk=reviewer.pk))
    return client


def test_the_menu_is_offered_only_with_the_permission(rc, reviewer, draft):
    assert 'class="chat-mode-form"' in card_html(rc.get("/queue/"), draft)
    lost = without_set_mode(reviewer)
    card = card_html(lost.get("/queue/"), draft)
    assert 'class="chat-mode-form"' not in card
    assert f'action="{url("approve", draft)}"' in card  # still a reviewer


def test_without_the_permission_it_is_refused_with_403(reader, draft):
    for name in ("chat-mode", "history-chat-mode"):
        response = reader.post(mode_url(name, draft), {"mode": "off"}, **HTMX)
        assert response.status_code == 403
    assert not ChatMode.objects.exists() and not mode_events()


def test_a_reviewer_whose_permission_was_taken_is_refused(reviewer, draft):
    lost = without_set_mode(reviewer)
    for name in ("chat-mode", "history-chat-mode"):
        assert lost.post(mode_url(name, draft), {"mode": "off"}).status_code == 403
    assert not ChatMode.objects.exists()


def test_signed_out_it_asks_to_sign_in(client, draft):
    response = client.post(mode_url("chat-mode", draft), {"mode": "off"})
    assert response.status_code == 302 and "/login" in response["Location"]
    assert not ChatMode.objects.exists()


def test_a_post_without_the_csrf_token_is_refused(reviewer, draft):
    client = Client(enforce_csrf_checks=True)
    client.force_login(reviewer)
    response = client.post(mode_url("chat-mode", draft), {"mode": "off"})
    assert response.status_code == 403
    assert not ChatMode.objects.exists()


def test_a_get_is_not_an_action(rc, draft):
    assert rc.get(mode_url("chat-mode", draft)).status_code == 405
    assert not ChatMode.objects.exists()


@pytest.mark.parametrize("data", [{"mode": "silent"}, {"mode": ""}, {}, {"mode": "<b>x</b>"}])
def test_an_unknown_mode_is_a_400_naming_the_field(rc, draft, data):
    response = rc.post(mode_url("chat-mode", draft), data, **HTMX)
    assert response.status_code == 400
    text = response.content.decode()
    assert text.startswith("mode: ")
    assert response["Content-Type"].startswith("text/plain")
    assert not ChatMode.objects.exists() and not mode_events()


def test_a_reply_that_names_no_chat_is_a_400_naming_the_chat(rc):
    nowhere = lifecycle.add_message(
        {"id": "reply_nowhere", "body": "hi", "timestamp": clock.local_iso()},
        Status.PENDING_APPROVAL,
        actor="t",
        source=Source.API,
    )
    assert nowhere.chat == ""
    response = rc.post(mode_url("chat-mode", nowhere), {"mode": "off"})
    assert response.status_code == 400 and response.content.decode().startswith("chat: ")
    # ...and its card offers no menu.
    assert 'class="chat-mode-form"' not in card_html(rc.get("/queue/"), nowhere)


def test_an_unknown_reply_is_a_404(rc):
    assert rc.post("/queue/999999/chat-mode/", {"mode": "off"}).status_code == 404


def test_the_history_entry_sets_the_mode_and_answers_with_the_entry(rc, draft):
    decided = lifecycle.approve(draft.message_id, actor="dana", source=Source.WEB)
    page = rc.get("/history/").content.decode()
    assert reverse("approvals:history-chat-mode", args=[decided.pk]) in page

    response = rc.post(mode_url("history-chat-mode", decided), {"mode": "off"}, **HTMX)

    assert response.status_code == 200
    html = response.content.decode()
    assert f'id="entry-{decided.pk}"' in html and badge(html) == "off"
    assert chat_modes.mode_of(NUMBER) == Mode.OFF
    assert badge(rc.get("/history/").content.decode()) == "off"


def test_the_history_menu_is_offered_only_with_the_permission(rc, reviewer, draft):
    decided = lifecycle.reject(draft.message_id, actor="dana", source=Source.WEB)
    target = reverse("approvals:history-chat-mode", args=[decided.pk])
    assert target in rc.get("/history/").content.decode()
    assert target not in without_set_mode(reviewer).get("/history/").content.decode()


def test_the_queue_page_runs_no_more_queries_with_modes_set(rc, draft):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_reply(incoming=make_incoming(number=OTHER))
    rootstate.get_root()
    rc.get("/queue/")  # the session's first read
    with CaptureQueriesContext(connection) as without:
        rc.get("/queue/")
    set_mode(NUMBER, "auto")
    set_mode(OTHER, "off")
    with CaptureQueriesContext(connection) as with_modes:
        page = rc.get("/queue/")
    assert len(with_modes) == len(without)
    assert badge(card_html(page, draft)) == "auto"


# --- The admin -------------------------------------------------------------------------


@pytest.fixture
def admin_client(db) -> tuple[Client, User]:
    user = User.objects.create_user("root", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="set_chat_mode"))
    client = Client()
    client.force_login(user)
    return client, user


def test_the_admin_lists_filters_and_searches_the_modes(admin_client):
    client, _ = admin_client
    set_mode(NUMBER, "auto")
    set_mode(OTHER, "off")
    changelist = reverse("admin:statecore_chatmode_changelist")

    def chats(query: str = "") -> set[str]:
        response = client.get(changelist + query)
        assert response.status_code == 200
        return {row.chat for row in response.context["cl"].result_list}

    assert chats() == {NUMBER, OTHER}
    assert chats("?mode__exact=off") == {OTHER}
    assert chats("?q=1112") == {NUMBER}


def test_an_admin_edit_goes_through_the_verb(admin_client):
    client, _ = admin_client
    set_mode(NUMBER, "auto")
    row = ChatMode.objects.get()
    response = client.post(
        reverse("admin:statecore_chatmode_change", args=[row.pk]), {"mode": "off"}
    )
    assert response.status_code == 302
    assert ChatMode.objects.get().mode == Mode.OFF
    last = mode_events()[-1]
    assert (last.actor, last.source, last.detail) == (
        "root",
        Source.ADMIN,
        {"chat": NUMBER, "before": "auto", "after": "off"},
    )
    # The chat itself is not edited there: a row is one chat.
    assert ChatMode.objects.get().chat == NUMBER


def test_an_admin_add_goes_through_the_verb_and_cleans_the_number(admin_client):
    client, _ = admin_client
    response = client.post(
        reverse("admin:statecore_chatmode_add"), {"chat": "+92 300 1112222", "mode": "auto"}
    )
    assert response.status_code == 302
    assert chat_modes.mode_of(NUMBER) == Mode.AUTO
    (event,) = mode_events()
    assert (event.actor, event.source) == ("root", Source.ADMIN)


def test_an_admin_add_of_a_bad_number_names_the_field(admin_client):
    client, _ = admin_client
    response = client.post(
        reverse("admin:statecore_chatmode_add"), {"chat": "call me", "mode": "auto"}
    )
    assert response.status_code == 200
    assert "chat" in response.context["adminform"].form.errors
    assert not ChatMode.objects.exists() and not mode_events()


def test_an_admin_add_in_review_writes_nothing_and_says_so(admin_client):
    client, _ = admin_client
    response = client.post(
        reverse("admin:statecore_chatmode_add"), {"chat": NUMBER, "mode": "review"}
    )
    assert response.status_code == 302
    assert not ChatMode.objects.exists() and not mode_events()
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert texts == [f"The chat {NUMBER} is in review already: nothing saved."]


def test_the_admin_never_deletes_a_mode_and_needs_the_permission(admin_client):
    client, user = admin_client
    set_mode(NUMBER, "off")
    row = ChatMode.objects.get()
    assert client.post(
        reverse("admin:statecore_chatmode_delete", args=[row.pk]), {"post": "yes"}
    ).status_code in (302, 403)
    assert ChatMode.objects.filter(pk=row.pk).exists()

    user.user_permissions.clear()
    plain = Client()
    plain.force_login(User.objects.get(pk=user.pk))
    change = reverse("admin:statecore_chatmode_change", args=[row.pk])
    assert plain.post(change, {"mode": "review"}).status_code == 403
    assert ChatMode.objects.get().mode == Mode.OFF


# --- One verb, the same audit row from every place -----------------------------------------


def test_page_admin_and_api_write_the_same_audit_row_but_for_the_source(rc, admin_client, draft):
    client, _ = admin_client
    rows = []

    def last() -> tuple:
        event = mode_events()[-1]
        rows.append(event.source)
        return (event.action, event.note, event.detail, event.message_id)

    rc.post(mode_url("chat-mode", draft), {"mode": "auto"}, **HTMX)
    page = last()
    set_mode(NUMBER, "review")
    row = ChatMode.objects.get()
    client.post(reverse("admin:statecore_chatmode_change", args=[row.pk]), {"mode": "auto"})
    admin = last()
    set_mode(NUMBER, "review")
    StateManager(actor="script").set_chat_mode(NUMBER, "auto")
    api = last()

    assert page == admin == api
    assert rows == [Source.WEB, Source.ADMIN, Source.API]


def test_the_python_api_reads_and_sets_a_mode():
    manager = StateManager(actor="script")
    assert manager.get_chat_mode("+92 300 1112222") == "review"
    assert manager.set_chat_mode(NUMBER, "off") is True
    assert manager.get_chat_mode(NUMBER) == "off"
    with pytest.raises(ValueError, match="^mode: "):
        manager.set_chat_mode(NUMBER, "loud")
