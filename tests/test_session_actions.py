"""Running the session from /session/: link with a phone number, restart, log out.

Each is behind `statecore.manage_session` (not bare `is_staff`), offered only where
the kind of gateway has it, audited, and never a 500: a kind without it, a gateway
that does not answer and a number that is not one are refusals in words. First the
gateway is a small fake client of the Gateway protocol (`whatsapp.gateway` replaced);
the last sections run the same actions against each kind's stand-in, through its
real adapter.
"""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client

from statecore import session, session_actions, session_check, whatsapp
from statecore.models import AuditEvent, GatewayState, Source
from statecore.session_actions import Refusal, SessionActionRefused
from statecore.whatsapp import GatewayUnavailable, SessionAction, Traits
from tests.fake_evolution import API_KEY as EVOLUTION_KEY
from tests.fake_evolution import WEBHOOK_SECRET as EVOLUTION_SECRET
from tests.fake_waha import API_KEY as WAHA_KEY
from tests.fake_waha import WEBHOOK_SECRET as WAHA_SECRET
from tests.session_helpers import valid_session

ALL = frozenset(SessionAction)
API_KEY = "waha-key-7f3a9c-DO-NOT-SHOW"
WEBHOOK_SECRET = "webhook-secret-c0ffee-DO-NOT-SHOW"
WHO = {"actor": "sam", "source": Source.WEB}
PERMISSION = "Can check, re-link, restart and log out the WhatsApp session"


class FakeGateway:
    """A client of the Gateway protocol that remembers what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.code = "ABCD-EFGH"
        self.failure: Exception | None = None

    def __call__(self, **timeouts: float) -> FakeGateway:  # stands in for whatsapp.gateway()
        self.calls.append(("open", timeouts))
        return self

    def __enter__(self) -> FakeGateway:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.calls.append(("close",))

    @property
    def asked(self) -> list[tuple]:
        return [call for call in self.calls if call[0] not in ("open", "close")]

    def _act(self, *call: object) -> None:
        self.calls.append(call)
        if self.failure is not None:
            raise self.failure

    def request_pairing_code(self, number: str) -> str:
        self._act("pair", number)
        return self.code

    def restart(self) -> None:
        self._act("restart")

    def logout(self) -> None:
        self._act("logout")


@pytest.fixture
def gateway(db, settings, tmp_path, monkeypatch):
    """A WAHA-like gateway with every session action, the session valid."""
    valid_session(settings, tmp_path)
    settings.GATEWAY_KIND = "waha"
    settings.GATEWAY_URL = "http://127.0.0.1:9"
    settings.GATEWAY_API_KEY = API_KEY
    settings.GATEWAY_WEBHOOK_SECRET = WEBHOOK_SECRET
    fake = FakeGateway()
    monkeypatch.setattr(whatsapp, "gateway", fake)
    offer(monkeypatch, ALL)
    return fake


def offer(monkeypatch, actions) -> None:
    """The configured kind's traits: has webhooks, keeps its login, these actions."""
    traits = Traits(has_webhooks=True, session_actions=frozenset(actions))
    monkeypatch.setattr(whatsapp, "traits", lambda: traits)


@pytest.fixture
def manager(django_user_model):
    user = django_user_model.objects.create_user("sam", password="pw-sam-123456")
    user.user_permissions.add(Permission.objects.get(codename="manage_session"))
    return user


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def text_of(response) -> str:
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))
    return unescape(re.sub(r" ([:.,;])", r"\1", text))


def flashed(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def audit(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("pk"))


# --- The verbs ------------------------------------------------------------------------


def test_pair_asks_for_a_code_and_records_that_the_session_waits_for_it(gateway):
    code = session_actions.pair("+92 300 1234567", **WHO)

    assert code == "ABCD-EFGH"
    assert gateway.asked == [("pair", "923001234567")]
    row = GatewayState.objects.get()
    assert (row.state, row.pairing_code) == ("needs_pairing", "ABCD-EFGH")
    stored = session.current()
    assert stored["session_valid"] is False and stored["requires_qr"] is True
    [row] = audit("session_pair")
    assert (row.message_id, row.actor, row.source) == ("", "sam", Source.WEB)
    assert row.note == "pairing code asked for +923001234567"
    assert row.detail == {"kind": "waha", "number": "923001234567", "outcome": "asked"}


@pytest.mark.parametrize(
    "number",
    [
        "",
        "   ",
        "923-001-234",  # a dash
        "92 300 12a4567",
        "++923001234567",
        "92300+1234567",
        "1234567",  # 7 digits
        "1234567890123456",  # 16 digits
        "0300 1234567",  # no country code
        "٩٢٣٠٠١٢٣٤٥٦٧",  # Arabic-Indic digits: not what the gateway takes
        None,
    ],
)
def test_pair_refuses_what_is_not_a_phone_number_and_asks_nobody(gateway, number):
    with pytest.raises(SessionActionRefused) as refused:
        session_actions.pair(number, **WHO)

    assert refused.value.code == Refusal.BAD_NUMBER
    assert gateway.calls == []
    assert not AuditEvent.objects.filter(action="session_pair").exists()


@pytest.mark.parametrize(
    ("given", "digits"),
    [
        ("12345678", "12345678"),
        ("+123456789012345", "123456789012345"),
        (" 55 11 9999 9999 ", "551199999999"),
    ],
)
def test_phone_digits_keeps_8_to_15_digits_and_drops_plus_and_spaces(given, digits):
    assert session_actions.phone_digits(given) == digits


def test_restart_asks_the_gateway_and_leaves_the_session_to_what_it_says_next(gateway):
    before = session.current()

    session_actions.restart(**WHO)

    assert gateway.asked == [("restart",)]
    assert session.current() == before
    [row] = audit("session_restart")
    assert (row.actor, row.source, row.note) == ("sam", Source.WEB, "restart asked")


def test_logout_logs_out_and_records_the_session_as_logged_out(gateway):
    session_actions.logout(**WHO)

    assert gateway.asked == [("logout",)]
    stored = session.current()
    assert stored["session_valid"] is False
    assert stored["authenticated"] is False
    assert stored["requires_qr"] is True
    assert stored["invalidation_reason"] == "logged out from the dashboard by sam"
    assert not session.check(stored).valid
    [row] = audit("session_logout")
    assert (row.message_id, row.actor, row.source) == ("", "sam", Source.WEB)
    assert len(audit("session_invalid")) == 1  # the session verb's own row


@pytest.mark.parametrize("action", list(SessionAction))
def test_a_kind_without_the_action_refuses_it_before_asking_the_gateway(
    gateway, monkeypatch, action
):
    offer(monkeypatch, ALL - {action})
    before = session.current()

    with pytest.raises(SessionActionRefused) as refused:
        _do(action)

    assert refused.value.code == Refusal.NOT_OFFERED
    assert str(refused.value).startswith("The waha gateway cannot ")
    assert gateway.calls == []
    assert session.current() == before
    assert (
        not AuditEvent.objects.filter(action__startswith="session_")
        .exclude(action="session_status")
        .exists()
    )


@pytest.mark.parametrize("action", list(SessionAction))
def test_the_scripts_service_has_none_of_them(db, settings, tmp_path, action):
    valid_session(settings, tmp_path)

    with pytest.raises(SessionActionRefused) as refused:
        _do(action)

    assert refused.value.code == Refusal.NOT_OFFERED
    assert str(refused.value).startswith("The wwebjs gateway cannot ")
    assert session_actions.offered() == frozenset()


@pytest.mark.parametrize("action", list(SessionAction))
def test_a_client_that_does_not_implement_it_is_a_refusal(gateway, action):
    gateway.failure = NotImplementedError("not on this engine")
    before = session.current()

    with pytest.raises(SessionActionRefused) as refused:
        _do(action)

    assert refused.value.code == Refusal.NOT_OFFERED
    assert session.current() == before


@pytest.mark.parametrize("action", list(SessionAction))
def test_no_answer_is_a_refusal_in_words_and_is_audited_all_the_same(gateway, action):
    gateway.failure = GatewayUnavailable("the gateway timed out after 10 s")
    before = session.current()

    with pytest.raises(SessionActionRefused) as refused:
        _do(action)

    assert refused.value.code == Refusal.NO_ANSWER
    assert "the gateway timed out after 10 s" in str(refused.value)
    assert session.current() == before
    assert GatewayState.objects.filter(pairing_code__gt="").count() == 0
    # A restart or a logout may have happened: who asked stays on record.
    [row] = audit(f"session_{action}")
    assert row.detail["outcome"] == "no_answer"
    assert "timed out" in row.note


def test_a_gateway_answering_without_a_code_is_no_answer(gateway):
    gateway.code = "  "

    with pytest.raises(SessionActionRefused) as refused:
        session_actions.pair("923001234567", **WHO)

    assert refused.value.code == Refusal.NO_ANSWER
    assert GatewayState.objects.filter(state="needs_pairing").count() == 0


def _do(action: SessionAction) -> None:
    if action == SessionAction.PAIR:
        session_actions.pair("923001234567", **WHO)
    elif action == SessionAction.RESTART:
        session_actions.restart(**WHO)
    else:
        session_actions.logout(**WHO)


# --- The permission -----------------------------------------------------------------------

ACTION_POSTS = [
    ("/session/pair/", {"number": "923001234567"}),
    ("/session/restart/", {}),
    ("/session/logout/", {"confirm": "yes"}),
    ("/session/check/", {}),
    ("/session/mark-invalid/", {"reason": "lost phone"}),
]


def test_the_permission_exists_with_its_name(db):
    permission = Permission.objects.get(
        content_type__app_label="statecore", codename="manage_session"
    )
    assert permission.name == PERMISSION


@pytest.mark.parametrize(("url", "data"), ACTION_POSTS)
@pytest.mark.parametrize("staff", [False, True])
def test_without_the_permission_every_action_is_403_staff_or_not(
    gateway, django_user_model, url, data, staff
):
    user = django_user_model.objects.create_user("sam", is_staff=staff)
    before = session.current()

    response = signed_in(user).post(url, data)

    assert response.status_code == 403
    assert gateway.calls == []
    assert session.current() == before
    assert (
        not AuditEvent.objects.filter(action__startswith="session_")
        .exclude(action="session_status")
        .exists()
    )


@pytest.mark.parametrize(("url", "data"), ACTION_POSTS[:3])
def test_a_superuser_holds_the_permission(gateway, django_user_model, url, data):
    root = django_user_model.objects.create_superuser("root", password="pw-root-123456")

    response = signed_in(root).post(url, data)

    assert response.status_code == 302
    assert len(gateway.asked) == 1


@pytest.mark.parametrize(("url", "data"), ACTION_POSTS[:3])
def test_the_actions_need_the_csrf_token_and_a_post(gateway, manager, url, data):
    client = Client(enforce_csrf_checks=True)
    client.force_login(manager)

    assert client.post(url, data).status_code == 403
    assert signed_in(manager).get(url).status_code == 405
    assert gateway.calls == []


@pytest.mark.parametrize(("url", "data"), ACTION_POSTS[:3])
def test_signed_out_the_actions_send_to_the_sign_in(gateway, url, data):
    response = Client().post(url, data)

    assert response.status_code == 302 and response.url.startswith("/accounts/login/")
    assert gateway.calls == []


# --- The page -----------------------------------------------------------------------------


def test_link_with_phone_number_shows_the_code_large_on_the_page(gateway, manager):
    client = signed_in(manager)

    response = client.post("/session/pair/", {"number": "+92 300 1234567"}, follow=True)

    assert gateway.asked == [("pair", "923001234567")]
    page = text_of(response)
    assert "Pairing code ABCD-EFGH: on that phone open WhatsApp" in page
    html = response.content.decode()
    assert re.search(
        r'class="pairing-code"><output aria-label="Pairing code">ABCD-EFGH</output>', html
    )
    assert "Enter this code on the phone" in page
    # The QR panel, which polls, keeps showing it.
    panel = client.get("/session/", headers={"HX-Request": "true", "HX-Target": "qr-panel"})
    assert "ABCD-EFGH" in panel.content.decode()
    assert 'hx-trigger="every 3s"' in panel.content.decode()
    assert audit("session_pair")[0].actor == "sam"


@pytest.mark.parametrize(
    ("number", "error"),
    [
        ("0300 1234567", "Start with the country code"),
        ("12 34", "A phone number has 8 to 15 digits with its country code; this one has 4."),
        ("call me", "Enter the phone number in digits"),
        ("", "This field is required."),
    ],
)
def test_a_wrong_number_is_refused_on_the_page_with_why(gateway, manager, number, error):
    response = signed_in(manager).post("/session/pair/", {"number": number})

    assert response.status_code == 422
    assert error in text_of(response)
    assert 'aria-invalid="true"' in response.content.decode()
    assert gateway.calls == []


def test_log_out_asks_first_and_only_yes_logs_out(gateway, manager):
    client = signed_in(manager)

    asked = client.post("/session/logout/")

    assert asked.status_code == 200
    assert "Log WhatsApp out?" in text_of(asked)
    assert re.search(
        r'<input type="hidden" name="confirm" value="yes">\s*<button type="submit" class="button button-danger">Yes, log out</button>',
        asked.content.decode(),
    )
    assert gateway.calls == []
    assert session.check(session.current()).valid

    done = client.post("/session/logout/", {"confirm": "yes"}, follow=True)

    assert gateway.asked == [("logout",)]
    assert "WhatsApp is logged out" in text_of(done)
    assert not session.check(session.current()).valid
    assert [row.actor for row in audit("session_logout")] == ["sam"]


def test_restart_from_the_page(gateway, manager):
    response = signed_in(manager).post("/session/restart/", follow=True)

    assert gateway.asked == [("restart",)]
    assert "The gateway is restarting the session" in text_of(response)
    assert audit("session_restart")[0].source == Source.WEB


@pytest.mark.parametrize(("url", "data"), ACTION_POSTS[:3])
def test_a_kind_without_the_action_says_so_on_the_page_not_a_500(
    gateway, manager, monkeypatch, url, data
):
    offer(monkeypatch, frozenset())

    response = signed_in(manager).post(url, data, follow=True)

    assert response.status_code == 200
    assert re.search(r"The waha gateway cannot [a-z ]+ from the dashboard\.", text_of(response))
    assert gateway.calls == []


@pytest.mark.parametrize(("url", "data"), ACTION_POSTS[:3])
def test_a_gateway_that_does_not_answer_is_said_on_the_page(gateway, manager, url, data):
    gateway.failure = GatewayUnavailable("connection refused at 127.0.0.1:9")

    response = signed_in(manager).post(url, data, follow=True)

    assert response.status_code == 200
    assert "The gateway did not answer" in text_of(response)
    assert "connection refused at 127.0.0.1:9" in text_of(response)


@pytest.mark.parametrize(
    ("actions", "buttons"),
    [
        (ALL, {"Check now", "Mark invalid", "Link with phone number", "Restart", "Log out…"}),
        ({SessionAction.RESTART}, {"Check now", "Mark invalid", "Restart"}),
        (set(), {"Check now", "Mark invalid"}),
    ],
)
def test_buttons_are_shown_for_what_the_kind_has(gateway, manager, monkeypatch, actions, buttons):
    offer(monkeypatch, actions)

    response = signed_in(manager).get("/session/")

    assert _buttons(response) == buttons


@pytest.mark.parametrize("staff", [False, True])
def test_no_buttons_without_the_permission(gateway, django_user_model, staff):
    user = django_user_model.objects.create_user("rita", is_staff=staff)

    assert _buttons(signed_in(user).get("/session/")) == set()


def test_the_scripts_service_gets_check_and_mark_invalid_only(db, settings, tmp_path, manager):
    valid_session(settings, tmp_path)

    assert _buttons(signed_in(manager).get("/session/")) == {"Check now", "Mark invalid"}


def _buttons(response) -> set[str]:
    html = response.content.decode()
    return {unescape(b).strip() for b in re.findall(r"<button[^>]*>([^<]*)</button>", html)} - {
        "Sign out",
        "Stay signed in",
    }


def test_the_page_and_the_admin_say_the_gateway_in_use_and_no_secret(
    gateway, manager, django_user_model
):
    address = "http://127.0.0.1:9 (session default)"
    session.gateway_state()  # the one row the admin shows
    root = django_user_model.objects.create_superuser("root", password="pw-root-123456")

    page = signed_in(manager).get("/session/")
    admin = signed_in(root).get("/admin/statecore/gatewaystate/1/change/")
    listing = signed_in(root).get("/admin/statecore/gatewaystate/")

    assert f"waha at {address}" in text_of(page)
    assert "the state's api_endpoint is not used by this gateway" in text_of(page)
    assert admin.status_code == 200
    assert f"Gateway kind: waha Address in use: {address}" in text_of(admin)
    assert address in text_of(listing)
    for response in (page, admin, listing):
        body = response.content.decode()
        assert API_KEY not in body and WEBHOOK_SECRET not in body


def test_the_admin_says_the_scripts_service_is_at_api_endpoint(
    db, settings, tmp_path, django_user_model
):
    valid_session(settings, tmp_path)
    session.gateway_state()
    root = django_user_model.objects.create_superuser("root", password="pw-root-123456")

    admin = signed_in(root).get("/admin/statecore/gatewaystate/1/change/")

    assert "Gateway kind: wwebjs Address in use: http://localhost:3000/api/whatsapp" in text_of(
        admin
    )


def test_a_kind_without_pairing_says_so_even_for_a_wrong_number(gateway, manager, monkeypatch):
    # The page has no number field to show an error in: the refusal is what is said.
    offer(monkeypatch, ALL - {SessionAction.PAIR})

    response = signed_in(manager).post("/session/pair/", {"number": "12"}, follow=True)

    assert response.status_code == 200
    assert "The waha gateway cannot link with a phone number from the dashboard." in text_of(
        response
    )


# --- Against the stand-ins: WAHA --------------------------------------------------------


@pytest.fixture
def waha(db, settings, tmp_path, fake_waha):
    """The WAHA stand-in, WORKING, and the stored session valid."""
    valid_session(settings, tmp_path)
    return fake_waha


def loop_checks() -> None:
    """The receiving loop's watch: ask the gateway, record what it says."""
    with whatsapp.gateway() as gateway:
        session_check.check(gateway, actor="receiver", source=Source.WORKER)


def no_secret_recorded(*secrets: str) -> None:
    for row in AuditEvent.objects.all():
        recorded = f"{row.note} {json.dumps(row.detail)} {row.actor}"
        for secret in secrets:
            assert secret not in recorded


def test_waha_pairs_by_phone_number_while_it_waits_for_a_login(waha, manager):
    waha.show_qr()
    loop_checks()

    response = signed_in(manager).post("/session/pair/", {"number": "+92 300 1234567"}, follow=True)

    assert waha.pairing_requests() == ["923001234567"]
    assert f"Pairing code {waha.pairing_code}" in text_of(response)
    assert (
        f'<output aria-label="Pairing code">{waha.pairing_code}</output>'
        in response.content.decode()
    )
    assert GatewayState.objects.get().pairing_code == waha.pairing_code
    waha.scan()
    loop_checks()
    assert session.check(session.current()).valid
    assert GatewayState.objects.get().pairing_code == ""
    no_secret_recorded(WAHA_KEY, WAHA_SECRET)


def test_waha_refuses_a_pairing_code_while_linked_and_the_page_says_why(waha, manager):
    response = signed_in(manager).post("/session/pair/", {"number": "923001234567"}, follow=True)

    assert waha.pairing_requests() == ["923001234567"]
    page = text_of(response)
    assert "The gateway did not answer (link with a phone number)" in page
    assert "Can request code only in SCAN_QR_CODE status" in page
    assert session.check(session.current()).valid
    assert audit("session_pair")[0].detail["outcome"] == "no_answer"


def test_waha_restarts_the_session_keeping_the_login(waha, manager):
    before = session.current()

    signed_in(manager).post("/session/restart/")

    assert waha.calls()["restart"] == 1
    assert (waha.status, waha.me is not None) == ("WORKING", True)
    assert session.current() == before
    assert [row.note for row in audit("session_restart")] == ["restart asked"]


def test_waha_logs_out_and_the_page_then_shows_its_qr(waha, manager):
    client = signed_in(manager)

    client.post("/session/logout/")
    assert waha.calls()["logout"] == 0  # only asked
    client.post("/session/logout/", {"confirm": "yes"})

    assert waha.calls()["logout"] == 1
    assert (waha.status, waha.me) == ("SCAN_QR_CODE", None)
    stored = session.current()
    assert (stored["authenticated"], stored["session_valid"]) == (False, False)
    loop_checks()
    page = client.get("/session/")
    assert "Scan to link WhatsApp" in text_of(page)
    assert waha.qr in text_of(page)
    no_secret_recorded(WAHA_KEY, WAHA_SECRET)


@pytest.mark.parametrize("route", ["restart", "logout", "request_code"])
def test_waha_failing_is_a_refusal_and_audited(waha, route):
    waha.show_qr()
    waha.set_failure(route, "error500")
    action = {"restart": SessionAction.RESTART, "logout": SessionAction.LOGOUT}.get(
        route, SessionAction.PAIR
    )

    with pytest.raises(SessionActionRefused) as refused:
        _do(action)

    assert refused.value.code == Refusal.NO_ANSWER
    assert "HTTP 500" in str(refused.value)
    assert WAHA_KEY not in str(refused.value)
    [row] = audit(f"session_{action}")
    assert row.detail["outcome"] == "no_answer"


def test_waha_with_a_wrong_key_says_so_and_never_shows_the_key(waha, settings):
    settings.GATEWAY_API_KEY = "a-wrong-key-123"

    with pytest.raises(SessionActionRefused) as refused:
        session_actions.restart(**WHO)

    assert "GATEWAY_API_KEY" in str(refused.value)
    assert "a-wrong-key-123" not in str(refused.value)
    no_secret_recorded("a-wrong-key-123", WAHA_KEY)


# --- Against the stand-ins: Evolution ----------------------------------------------------


@pytest.fixture
def evolution(db, settings, tmp_path, fake_evolution):
    """The Evolution stand-in, linked and open, and the stored session valid."""
    valid_session(settings, tmp_path)
    return fake_evolution


def test_evolution_logs_out_then_pairs_by_phone_number(evolution, manager):
    client = signed_in(manager)

    client.post("/session/logout/", {"confirm": "yes"})

    assert evolution.calls()["logout"] == 1
    assert evolution.state == "close"
    assert session.current()["authenticated"] is False

    response = client.post("/session/pair/", {"number": "+55 11 99999 9999"}, follow=True)

    code = evolution.pairing_code
    assert code
    assert f"Pairing code {code}" in text_of(response)
    assert f'<output aria-label="Pairing code">{code}</output>' in response.content.decode()
    # The receiving loop's watch keeps it: Evolution shows it beside its QR.
    loop_checks()
    assert GatewayState.objects.get().pairing_code == code
    evolution.scan()
    loop_checks()
    assert session.check(session.current()).valid
    no_secret_recorded(EVOLUTION_KEY, EVOLUTION_SECRET)


def test_evolution_will_not_pair_while_linked_and_says_why(evolution, manager):
    response = signed_in(manager).post("/session/pair/", {"number": "5511999999999"}, follow=True)

    assert "WhatsApp is already linked: log out first" in text_of(response)
    assert session.check(session.current()).valid


def test_evolution_restarts_the_session(evolution, manager):
    signed_in(manager).post("/session/restart/")

    assert evolution.calls()["restart"] == 1
    assert evolution.state == "open"
    assert [row.note for row in audit("session_restart")] == ["restart asked"]


def test_evolution_restart_of_a_closed_session_is_refused_in_words(evolution):
    evolution.set_state("close")

    with pytest.raises(SessionActionRefused) as refused:
        session_actions.restart(**WHO)

    assert refused.value.code == Refusal.NO_ANSWER
    assert EVOLUTION_KEY not in str(refused.value)


@pytest.mark.parametrize("route", ["restart", "logout", "connect"])
def test_evolution_failing_is_a_refusal_and_audited(evolution, route):
    if route == "connect":
        evolution.set_state("close")
    evolution.set_failure(route, "error500")
    action = {"restart": SessionAction.RESTART, "logout": SessionAction.LOGOUT}.get(
        route, SessionAction.PAIR
    )

    with pytest.raises(SessionActionRefused) as refused:
        _do(action)

    assert refused.value.code == Refusal.NO_ANSWER
    assert audit(f"session_{action}")[0].detail["outcome"] == "no_answer"
    no_secret_recorded(EVOLUTION_KEY, EVOLUTION_SECRET)


# --- Against the stand-ins: Cloud has no session to run ------------------------------------


def test_cloud_offers_no_session_action_and_refuses_each(
    db, settings, tmp_path, fake_cloud, manager
):
    valid_session(settings, tmp_path)

    assert _buttons(signed_in(manager).get("/session/")) == {"Check now", "Mark invalid"}
    for action in SessionAction:
        with pytest.raises(SessionActionRefused) as refused:
            _do(action)
        assert refused.value.code == Refusal.NOT_OFFERED
        assert str(refused.value).startswith("The cloud gateway cannot ")
