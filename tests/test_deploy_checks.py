"""The gateway's settings at start-up (statecore/whatsapp/config.py) and `check --deploy`.

A missing or malformed GATEWAY_* value stops start-up naming the variable, and never
repeating a secret; an empty webhook secret is allowed at start-up (a first run may not
have one yet) but fails `check --deploy` for a gateway whose webhooks must be signed.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured

from statecore.checks import webhook_secret_for_a_pushing_gateway
from statecore.whatsapp import config
from tests.session_helpers import REPO

KEY = "k3y-Very-Secret-0123456789"

# What each kind needs to start: every variable it requires, well-formed.
GOOD = {
    "waha": {
        "GATEWAY_KIND": "waha",
        "GATEWAY_URL": "http://127.0.0.1:3001",
        "GATEWAY_API_KEY": KEY,
    },
    "evolution": {
        "GATEWAY_KIND": "evolution",
        "GATEWAY_URL": "https://evolution.example.com",
        "GATEWAY_API_KEY": KEY,
        "GATEWAY_SESSION": "shop-1",
    },
    "cloud": {
        "GATEWAY_KIND": "cloud",
        "GATEWAY_API_KEY": KEY,
        "GATEWAY_PHONE_NUMBER_ID": "106540352242922",
        "GATEWAY_VERIFY_TOKEN": "verify-me",
    },
}


def _with(kind: str, **changes: str | None) -> dict[str, str]:
    environ = dict(GOOD[kind])
    for name, value in changes.items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    return environ


# --- config.read: each variable, per kind ---------------------------------------------


@pytest.mark.parametrize("kind", ["waha", "evolution", "cloud"])
def test_each_kind_starts_with_what_it_needs(kind):
    found = config.read(GOOD[kind])
    assert found.kind == kind
    assert found.api_key == KEY


def test_the_defaults_wwebjs_the_default_session_and_the_pinned_graph_url():
    assert config.read({}).kind == "wwebjs"
    assert config.read({"GATEWAY_KIND": ""}).kind == "wwebjs"
    assert config.read(GOOD["waha"]).session == "default"
    cloud = config.read(GOOD["cloud"])
    assert cloud.url == config.GRAPH_URL
    assert cloud.url.startswith("https://graph.facebook.com/v")
    # A trailing slash is dropped, so paths join as the adapters expect.
    assert config.read(_with("waha", GATEWAY_URL="http://127.0.0.1:3001/")).url == (
        "http://127.0.0.1:3001"
    )


def test_wwebjs_needs_none_of_the_other_variables():
    found = config.read({"GATEWAY_KIND": "wwebjs", "GATEWAY_URL": "not checked"})
    assert found.kind == "wwebjs"


def test_an_unknown_kind_is_named():
    with pytest.raises(ImproperlyConfigured, match="^GATEWAY_KIND: expected one of"):
        config.read({"GATEWAY_KIND": "twilio"})


CASES = [
    # (kind, variable, value or None for missing)
    ("waha", "GATEWAY_URL", None),
    ("evolution", "GATEWAY_URL", None),
    ("waha", "GATEWAY_URL", "127.0.0.1:3001"),
    ("waha", "GATEWAY_URL", "ftp://127.0.0.1:3001"),
    ("evolution", "GATEWAY_URL", "http://"),
    ("evolution", "GATEWAY_URL", "http://host:port"),
    ("cloud", "GATEWAY_URL", "https://graph.facebook.com/v23.0 x"),
    ("waha", "GATEWAY_API_KEY", None),
    ("evolution", "GATEWAY_API_KEY", None),
    ("cloud", "GATEWAY_API_KEY", None),
    ("waha", "GATEWAY_API_KEY", "   "),
    ("waha", "GATEWAY_API_KEY", KEY + " x"),
    ("evolution", "GATEWAY_API_KEY", KEY + "\x01"),
    ("waha", "GATEWAY_SESSION", "my session"),
    ("evolution", "GATEWAY_SESSION", "shop/1"),
    ("evolution", "GATEWAY_SESSION", "x" * 101),
    ("cloud", "GATEWAY_PHONE_NUMBER_ID", None),
    ("cloud", "GATEWAY_PHONE_NUMBER_ID", "+1 555 0100"),
    ("cloud", "GATEWAY_PHONE_NUMBER_ID", "1234"),
    ("cloud", "GATEWAY_VERIFY_TOKEN", None),
]


@pytest.mark.parametrize(("kind", "variable", "value"), CASES)
def test_a_missing_or_malformed_value_is_named_and_no_secret_is_repeated(kind, variable, value):
    with pytest.raises(ImproperlyConfigured) as caught:
        config.read(_with(kind, **{variable: value}))
    message = str(caught.value)
    assert message.startswith(f"{variable}: ")
    assert KEY not in message


def test_a_session_name_is_not_checked_for_cloud_which_has_none():
    assert config.read(_with("cloud", GATEWAY_SESSION="any thing")).kind == "cloud"


def test_an_empty_webhook_secret_does_not_stop_start_up():
    # `check --deploy` catches it (below); a first local run may not have one yet.
    assert config.read(_with("waha", GATEWAY_WEBHOOK_SECRET="")).webhook_secret == ""


def _start(**environ: str) -> subprocess.CompletedProcess:
    """Django set up in a fresh process with exactly these GATEWAY_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(DJANGO_SETTINGS_MODULE="statecore.settings", **environ)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_start_up_stops_naming_the_variable_and_never_prints_the_key():
    missing = _start(**_with("waha", GATEWAY_URL=None))
    assert missing.returncode != 0
    assert "ImproperlyConfigured: GATEWAY_URL: required" in missing.stderr

    spaced = _start(**_with("evolution", GATEWAY_API_KEY=KEY + " tail"))
    assert spaced.returncode != 0
    assert "GATEWAY_API_KEY: must not contain spaces" in spaced.stderr
    assert KEY not in spaced.stderr + spaced.stdout

    started = _start(**GOOD["cloud"])
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "started"


# --- check --deploy: the webhook secret ------------------------------------------------


@pytest.mark.parametrize("kind", ["waha", "evolution", "cloud"])
def test_deploy_check_fails_without_a_webhook_secret_for_a_signed_kind(settings, kind):
    settings.GATEWAY_KIND = kind
    settings.GATEWAY_WEBHOOK_SECRET = ""

    [error] = webhook_secret_for_a_pushing_gateway(None)

    assert error.id == "statecore.E002"
    assert "GATEWAY_WEBHOOK_SECRET" in error.msg and kind in error.msg
    assert "GATEWAY_WEBHOOK_SECRET" in error.hint
    # The deploy checks run it; plain `check` (every start of runserver) does not.
    assert "statecore.E002" in {e.id for e in run_checks(include_deployment_checks=True)}
    assert "statecore.E002" not in {e.id for e in run_checks()}


@pytest.mark.parametrize("kind", ["waha", "evolution", "cloud"])
def test_deploy_check_passes_with_a_webhook_secret(settings, kind):
    settings.GATEWAY_KIND = kind
    settings.GATEWAY_WEBHOOK_SECRET = "s3cret"
    assert webhook_secret_for_a_pushing_gateway(None) == []


def test_deploy_check_asks_no_webhook_secret_of_the_scripts_service(settings):
    # It posts no webhooks: its events endpoint has GATEWAY_TOKEN instead.
    settings.GATEWAY_KIND = "wwebjs"
    settings.GATEWAY_WEBHOOK_SECRET = ""
    assert webhook_secret_for_a_pushing_gateway(None) == []


def test_check_deploy_command_fails_on_it_and_names_the_variable():
    # As a deployment starts: none of the test run's own switches (tests/settings.py sets
    # PLAIN_HTTP; the browser tests set DJANGO_ALLOW_ASYNC_UNSAFE).
    test_only = {"PLAIN_HTTP", "DJANGO_ALLOW_ASYNC_UNSAFE", "WHITENOISE_USE_FINDERS", "DEBUG"}
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_") and k not in test_only
    }
    env.update(
        DJANGO_SETTINGS_MODULE="statecore.settings",
        SECRET_KEY="a-long-random-enough-secret-key-for-this-one-test-0123456789",
        DEBUG="0",
        ALLOWED_HOSTS="dashboard.example.com",
        **GOOD["waha"],
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "statecore.E002" in result.stderr
    assert "GATEWAY_WEBHOOK_SECRET is empty while GATEWAY_KIND is waha" in result.stderr
    assert KEY not in result.stderr + result.stdout

    env["GATEWAY_WEBHOOK_SECRET"] = "s3cret-s3cret"
    passed = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert passed.returncode == 0, passed.stderr
    assert "statecore.E002" not in passed.stderr + passed.stdout


@pytest.mark.parametrize(
    "kind, url, shown",
    [
        ("waha", "http://admin:pw@127.0.0.1:3000", "http://127.0.0.1:3000 (session shop)"),
        ("evolution", "https://u:p@evo.example.com", "https://evo.example.com (instance shop)"),
        ("cloud", "https://graph.facebook.com/v23.0", "https://graph.facebook.com/v23.0/1065"),
    ],
)
def test_the_address_shown_names_the_gateway_and_never_a_password(kind, url, shown):
    from statecore.whatsapp import config as gateway_config

    assert gateway_config.shown_address(kind, url, "shop", "1065") == shown
