"""manage.py setup_gateway_webhook: points the gateway's webhook at the dashboard.

WAHA and Evolution: their current configuration read, ours merged (by the
adapter's `webhook_plan`), the difference printed with the secret masked, applied
only with --yes. Cloud: what to paste into Meta's app settings. The scripts'
service posts no webhooks. Here the gateway is a small fake client of the Gateway
protocol; the section at the end runs against the WAHA and Evolution stand-ins.
"""

from __future__ import annotations

import copy
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from statecore import whatsapp
from statecore.management.commands.setup_gateway_webhook import MASK, differences, webhook_url
from statecore.models import AuditEvent, Source
from statecore.whatsapp import GatewayUnavailable, Traits
from tests.fake_cloud import API_KEY as CLOUD_KEY
from tests.fake_cloud import WEBHOOK_SECRET as CLOUD_SECRET
from tests.fake_evolution import API_KEY as EVOLUTION_KEY
from tests.fake_evolution import WEBHOOK_SECRET as EVOLUTION_SECRET
from tests.fake_waha import API_KEY as WAHA_KEY
from tests.fake_waha import WEBHOOK_SECRET as WAHA_SECRET

SECRET = "hook-secret-9d41-DO-NOT-PRINT"
API_KEY = "api-key-55aa-DO-NOT-PRINT"
URL = "https://dashboard.example.com/gateway/webhook"
EVENTS = ["message.any", "session.status", "message.ack"]


class FakeGateway:
    """A WAHA-shaped session config: webhooks among other settings we must keep."""

    address = "http://127.0.0.1:9 (session default)"

    def __init__(self) -> None:
        self.config = {
            "name": "default",
            "config": {
                "proxy": None,
                "debug": False,
                "webhooks": [],
                "metadata": {"shop": "north"},
            },
        }
        self.applied: list[dict] = []
        self.failure: Exception | None = None

    def __call__(self, **timeouts: float) -> FakeGateway:
        return self

    def __enter__(self) -> FakeGateway:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def webhook_config(self) -> dict:
        if self.failure is not None:
            raise self.failure
        return copy.deepcopy(self.config)

    def webhook_plan(self, current: dict, *, url: str, secret: str) -> dict:
        plan = copy.deepcopy(current)
        ours = {"url": url, "events": EVENTS, "hmac": {"key": secret}, "retries": None}
        plan["config"]["webhooks"] = [ours]
        return plan

    def apply_webhook(self, plan: dict) -> None:
        self.applied.append(plan)
        self.config = copy.deepcopy(plan)


@pytest.fixture
def gateway(db, settings, monkeypatch):
    use_kind(settings, monkeypatch, "waha", "command")
    fake = FakeGateway()
    monkeypatch.setattr(whatsapp, "gateway", fake)
    return fake


def use_kind(settings, monkeypatch, kind: str, setup: str) -> None:
    settings.GATEWAY_KIND = kind
    settings.GATEWAY_URL = "http://127.0.0.1:9"
    settings.GATEWAY_API_KEY = API_KEY
    settings.GATEWAY_WEBHOOK_SECRET = SECRET
    settings.GATEWAY_PHONE_NUMBER_ID = "1234567890"
    traits = Traits(has_webhooks=True, webhook_setup=setup)
    monkeypatch.setattr(whatsapp, "traits", lambda: traits)


def run(capsys, *args: str) -> str:
    call_command("setup_gateway_webhook", *args)
    captured = capsys.readouterr()
    for secret in (
        SECRET,
        API_KEY,
        WAHA_SECRET,
        WAHA_KEY,
        EVOLUTION_KEY,
        EVOLUTION_SECRET,
        CLOUD_KEY,
        CLOUD_SECRET,
    ):
        assert secret not in captured.out + captured.err
    return captured.out


def test_without_yes_it_prints_the_change_and_changes_nothing(gateway, capsys):
    out = run(capsys, "--url", URL)

    assert "The waha gateway at http://127.0.0.1:9 (session default):" in out
    assert f'config.webhooks: [] -> [{{"url": "{URL}", "events": {json.dumps(EVENTS)}' in out
    assert f'"hmac": {{"key": "{MASK}"}}' in out
    assert "Nothing was changed. Run again with --yes to apply it." in out
    assert gateway.applied == []
    assert not AuditEvent.objects.filter(action="gateway_webhook").exists()


def test_with_yes_it_applies_the_merged_configuration_keeping_the_rest(gateway, capsys):
    out = run(capsys, "--url", URL, "--yes")

    [applied] = gateway.applied
    assert applied["config"]["webhooks"] == [
        {"url": URL, "events": EVENTS, "hmac": {"key": SECRET}, "retries": None}
    ]
    assert applied["config"]["metadata"] == {"shop": "north"}
    assert (applied["config"]["proxy"], applied["config"]["debug"]) == (None, False)
    assert f"Applied: the gateway posts its events to {URL}." in out
    [row] = AuditEvent.objects.filter(action="gateway_webhook")
    assert (row.actor, row.source, row.message_id) == ("setup_gateway_webhook", Source.COMMAND, "")
    assert SECRET not in row.note + json.dumps(row.detail)


def test_waha_is_said_to_restart_a_running_session(gateway, capsys):
    out = run(capsys, "--url", URL)

    assert "WAHA restarts a running session when its configuration changes" in out


def test_evolution_gets_no_restart_warning(gateway, settings, monkeypatch, capsys):
    use_kind(settings, monkeypatch, "evolution", "command")

    out = run(capsys, "--url", URL)

    assert "The evolution gateway at http://127.0.0.1:9 (instance default):" in out
    assert "restarts" not in out


def test_a_gateway_already_pointing_here_is_left_alone(gateway, capsys):
    run(capsys, "--url", URL, "--yes")

    out = run(capsys, "--url", URL, "--yes")

    assert f"Its webhook already points at {URL}." in out
    assert len(gateway.applied) == 1


def test_a_bare_address_gets_the_webhook_path(gateway, capsys):
    run(capsys, "--url", "https://dashboard.example.com", "--yes")

    assert gateway.applied[0]["config"]["webhooks"][0]["url"] == URL


@pytest.mark.parametrize(
    "url", ["dashboard.example.com", "ftp://dashboard.example.com/x", "https:///x", f"{URL}?a=1"]
)
def test_a_url_that_is_not_one_is_refused_before_asking(gateway, url):
    gateway.failure = AssertionError("the gateway must not be asked")

    with pytest.raises(CommandError, match="--url"):
        call_command("setup_gateway_webhook", "--url", url)


def test_without_a_webhook_secret_it_names_the_setting(gateway, settings):
    settings.GATEWAY_WEBHOOK_SECRET = ""
    gateway.failure = AssertionError("the gateway must not be asked")

    with pytest.raises(CommandError, match="GATEWAY_WEBHOOK_SECRET is not set"):
        call_command("setup_gateway_webhook", "--url", URL, "--yes")


def test_a_gateway_that_does_not_answer_is_a_command_error(gateway):
    gateway.failure = GatewayUnavailable("connection refused at 127.0.0.1:9")

    with pytest.raises(CommandError, match="The gateway did not answer: connection refused"):
        call_command("setup_gateway_webhook", "--url", URL, "--yes")


def test_the_scripts_service_posts_no_webhooks(db, settings):
    assert whatsapp.kind() == "wwebjs"

    with pytest.raises(CommandError, match="The wwebjs gateway posts no webhooks"):
        call_command("setup_gateway_webhook", "--url", URL, "--yes")


def test_cloud_prints_what_to_paste_into_meta(db, settings, monkeypatch, capsys):
    use_kind(settings, monkeypatch, "cloud", "manual")
    monkeypatch.setattr(whatsapp, "traits", lambda: whatsapp.cloud.TRAITS)
    gateway = FakeGateway()
    gateway.failure = GatewayUnavailable("HTTP 400 (#100) Unknown field")
    monkeypatch.setattr(whatsapp, "gateway", gateway)

    out = run(capsys, "--url", "https://dashboard.example.com", "--yes")

    assert f"Callback URL: {URL} ." in out
    assert "Verify token: the value of the setting GATEWAY_VERIFY_TOKEN" in out
    assert "Meta's current webhook settings could not be read: HTTP 400" in out
    assert gateway.applied == []


# --- The difference, masked -------------------------------------------------------------


def test_differences_mask_secret_keys_and_the_secret_wherever_it_is():
    current = {
        "webhook": {"enabled": False, "url": "http://old", "headers": {"jwt_key": "old-jwt"}},
        "apikey": "instance-token",
        "note": "kept",
    }
    planned = {
        "webhook": {
            "enabled": True,
            "url": URL,
            "headers": {"jwt_key": SECRET, "X-Extra": f"Bearer {SECRET}"},
            "events": ["MESSAGES_UPSERT"],
        },
        "apikey": "new-token",
        "note": "kept",
    }

    lines = differences(current, planned, secret=SECRET)

    assert lines == [
        "webhook.enabled: false -> true",
        f'webhook.url: "http://old" -> "{URL}"',
        f"webhook.headers.jwt_key: {MASK} -> {MASK}",
        f'webhook.headers.X-Extra: (not set) -> "Bearer {MASK}"',
        'webhook.events: (not set) -> ["MESSAGES_UPSERT"]',
        f"apikey: {MASK} -> {MASK}",
    ]


def test_differences_of_equal_configurations_are_none():
    config = {"a": [1, {"b": None}], "c": "d"}
    assert differences(config, copy.deepcopy(config), secret=SECRET) == []


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("https://dashboard.example.com", URL),
        ("https://dashboard.example.com/", URL),
        ("http://10.0.0.5:8000/gateway/webhook", "http://10.0.0.5:8000/gateway/webhook"),
        ("https://example.com/shop/gateway/webhook", "https://example.com/shop/gateway/webhook"),
    ],
)
def test_webhook_url(given, url):
    assert webhook_url(given) == url


def test_a_secret_with_quotes_and_backslashes_is_masked_too():
    secret = 'a"b\\c-DO-NOT-PRINT'

    lines = differences({}, {"headers": {"X-Extra": f"Bearer {secret}"}}, secret=secret)

    assert lines == [f'headers: (not set) -> {{"X-Extra": "Bearer {MASK}"}}']


# --- Against the stand-ins: WAHA -----------------------------------------------------------


def test_waha_plan_is_printed_and_only_applied_with_yes(db, fake_waha, capsys):
    out = run(capsys, "--url", URL)

    assert "The waha gateway at " in out and f"{fake_waha.url} (session default)" in out
    assert f'webhooks: (not set) -> [{{"url": "{URL}", "events": ["message.any"' in out
    assert f'"hmac": {{"key": "{MASK}"}}' in out
    assert "WAHA restarts a running session" in out
    assert fake_waha.calls()["update"] == 0
    assert fake_waha.config is None

    out = run(capsys, "--url", URL, "--yes")

    assert fake_waha.calls()["update"] == 1
    [hook] = fake_waha.config["webhooks"]
    assert hook["url"] == URL
    assert set(hook["events"]) == {"message.any", "session.status", "message.ack"}
    assert hook["hmac"] == {"key": WAHA_SECRET}
    assert f"Applied: the gateway posts its events to {URL}." in out
    assert WAHA_SECRET not in out and WAHA_KEY not in out
    # WAHA restarted the running session for it, and kept the login.
    assert fake_waha.status == "WORKING" and fake_waha.me is not None


def test_waha_keeps_its_other_settings_and_webhooks(db, fake_waha, capsys):
    other = {
        "url": "https://crm.example.com/hook",
        "events": ["message"],
        "hmac": {"key": "crm-key"},
    }
    with whatsapp.gateway() as gateway:
        gateway.apply_webhook({"debug": True, "metadata": {"shop": "north"}, "webhooks": [other]})

    out = run(capsys, "--url", URL, "--yes")

    config = fake_waha.config
    assert config["debug"] is True and config["metadata"] == {"shop": "north"}
    assert config["webhooks"][0] == other
    assert config["webhooks"][1]["url"] == URL
    assert "crm-key" not in out
    assert "debug" not in out and "metadata" not in out  # unchanged: not listed


def test_waha_already_set_up_is_not_restarted_again(db, fake_waha, capsys):
    run(capsys, "--url", URL, "--yes")

    out = run(capsys, "--url", URL, "--yes")

    assert f"Its webhook already points at {URL}." in out
    assert fake_waha.calls()["update"] == 1


def test_waha_not_answering_is_a_command_error(db, fake_waha):
    fake_waha.set_failure("session", "error500")

    with pytest.raises(CommandError, match="The gateway did not answer: .*HTTP 500"):
        call_command("setup_gateway_webhook", "--url", URL, "--yes")
    assert fake_waha.calls()["update"] == 0


# --- Against the stand-ins: Evolution and Cloud ----------------------------------------------


def test_evolution_plan_is_printed_and_only_applied_with_yes(db, fake_evolution, capsys):
    out = run(capsys, "--url", URL)

    assert f"The evolution gateway at {fake_evolution.url} (instance default):" in out
    assert f'url: (not set) -> "{URL}"' in out
    assert f'headers: (not set) -> {{"jwt_key": "{MASK}"}}' in out
    assert "byEvents: (not set) -> false" in out
    assert "restarts" not in out and "stops getting events" not in out
    assert fake_evolution.webhook is None

    run(capsys, "--url", URL, "--yes")

    hook = fake_evolution.webhook
    assert (hook["url"], hook["enabled"], hook["webhookByEvents"]) == (URL, True, False)
    assert {"MESSAGES_UPSERT", "CONNECTION_UPDATE", "QRCODE_UPDATED", "SEND_MESSAGE"} <= set(
        hook["events"]
    )
    assert hook["headers"]["jwt_key"] == EVOLUTION_SECRET


def test_evolution_keeps_its_other_headers_and_events(db, fake_evolution, capsys):
    with whatsapp.gateway() as gateway:
        gateway.apply_webhook(
            {
                "enabled": False,
                "url": "https://old.example.com/hook",
                "events": ["MESSAGES_UPDATE"],
                "headers": {"X-Shop": "north"},
                "byEvents": False,
                "base64": False,
            }
        )

    out = run(capsys, "--url", URL, "--yes")

    assert 'url: "https://old.example.com/hook" -> ' in out
    assert "https://old.example.com/hook (another tool's, perhaps n8n or Chatwoot) stops" in out
    assert "enabled: false -> true" in out
    hook = fake_evolution.webhook
    assert hook["headers"]["X-Shop"] == "north"
    assert "MESSAGES_UPDATE" in hook["events"]
    assert hook["url"] == URL


def test_cloud_prints_what_to_paste_and_where_meta_sends_now(db, fake_cloud, capsys):
    fake_cloud.webhook_url = "https://old.example.com/hook"

    out = run(capsys, "--url", "https://dashboard.example.com", "--yes")

    assert f"Callback URL: {URL} ." in out
    assert f'application: "https://old.example.com/hook" -> "{URL}"' in out
    assert fake_cloud.webhook_url == "https://old.example.com/hook"  # nothing set from here
