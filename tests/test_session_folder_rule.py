"""STATE_FORMAT.md's session-folder rule is whatsapp-web.js's: its login lives in
`.wwebjs_auth`. WAHA, Evolution and the Cloud API keep their login themselves, so
for them the rule passes as "not applicable", and the verdict, the Python API's
`is_session_valid()`, check_session and /session/ all follow."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.core.management import call_command
from django.test import Client

from statecore import session, whatsapp
from statecore.state_manager import StateManager
from tests.session_helpers import set_session, valid_session

OTHER_KINDS = ["waha", "evolution", "cloud"]


@pytest.fixture
def no_folder(db, settings, tmp_path):
    """A session valid on every other rule, whose session folder does not exist."""
    valid_session(settings, tmp_path)
    (tmp_path / ".wwebjs_auth").rmdir()
    return tmp_path / ".wwebjs_auth"


def use_kind(settings, kind: str) -> None:
    settings.GATEWAY_KIND = kind
    settings.GATEWAY_URL = "http://127.0.0.1:9"
    settings.GATEWAY_API_KEY = "test-key"
    settings.GATEWAY_PHONE_NUMBER_ID = "1234567890"


def folder_rule(report: session.SessionReport) -> session.Rule:
    return next(rule for rule in report.rules if rule.name == "session folder")


def test_wwebjs_still_needs_its_session_folder(no_folder):
    report = session.check(session.current())

    assert whatsapp.kind() == "wwebjs"
    rule = folder_rule(report)
    assert (rule.passed, rule.applicable) == (False, True)
    assert rule.reason == f"the session folder {no_folder} does not exist"
    assert not report.valid
    assert StateManager(actor="script").is_session_valid() is False


def test_wwebjs_with_its_folder_says_it_exists(no_folder):
    no_folder.mkdir()

    rule = folder_rule(session.check(session.current()))

    assert (rule.passed, rule.applicable, rule.reason) == (True, True, f"{no_folder} exists")
    assert StateManager(actor="script").is_session_valid() is True


@pytest.mark.parametrize("kind", OTHER_KINDS)
def test_other_gateways_pass_the_rule_as_not_applicable_without_any_folder(
    no_folder, settings, kind
):
    use_kind(settings, kind)

    report = session.check(session.current())

    rule = folder_rule(report)
    assert rule.passed and not rule.applicable
    assert rule.reason == f"not applicable: the {kind} gateway keeps its login itself"
    assert report.valid and report.verdict == "Session valid"
    assert StateManager(actor="script").is_session_valid() is True


@pytest.mark.parametrize("kind", OTHER_KINDS)
def test_not_applicable_does_not_make_an_invalid_session_valid(no_folder, settings, kind):
    use_kind(settings, kind)
    set_session(session_valid=False, invalidation_reason="phone lost")

    report = session.check(session.current())

    assert not report.valid
    assert report.verdict == "Session not valid: marked invalid: phone lost"
    assert StateManager(actor="script").is_session_valid() is False


def test_the_rule_follows_the_kinds_traits_not_its_name(no_folder, settings, monkeypatch):
    use_kind(settings, "waha")
    monkeypatch.setattr(
        whatsapp.waha, "TRAITS", whatsapp.Traits(has_webhooks=True, needs_session_folder=True)
    )

    rule = folder_rule(session.check(session.current()))

    assert (rule.passed, rule.applicable) == (False, True)


def test_check_session_prints_the_rule_as_not_applicable(no_folder, settings, capsys, monkeypatch):
    use_kind(settings, "waha")
    # Only the printing is looked at here: check_session's gateway call answers "no answer".
    monkeypatch.setattr(whatsapp, "gateway", _unreachable_gateway)

    with pytest.raises(SystemExit):
        call_command("check_session")

    out = capsys.readouterr().out
    assert "[pass] session folder: not applicable: the waha gateway keeps its login itself" in out


def test_the_page_says_not_applicable_and_ticks_nothing(no_folder, settings, django_user_model):
    use_kind(settings, "evolution")
    client = Client()
    client.force_login(django_user_model.objects.create_user("rita"))

    page = _text(client.get("/session/"))

    assert (
        "N/A Session folder: not applicable: the evolution gateway keeps its login itself" in page
    )
    assert "Pass Session folder" not in page
    assert "Session valid" in page


def test_the_page_ticks_the_folder_for_wwebjs(no_folder, django_user_model):
    no_folder.mkdir()
    client = Client()
    client.force_login(django_user_model.objects.create_user("rita"))

    page = _text(client.get("/session/"))

    assert f"Pass Session folder: {no_folder} exists" in page
    assert "N/A" not in page


class _unreachable_gateway:
    address = "http://127.0.0.1:9 (session default)"

    def __init__(self, **_timeouts: float) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def status(self):
        raise whatsapp.GatewayUnavailable("nothing answers at 127.0.0.1:9")


def _text(response) -> str:
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))
    return unescape(re.sub(r" ([:.,;])", r"\1", text))
