"""`make run`'s last step, as a new user meets it; Ctrl-C stops all.

With no gateway at `api_endpoint` (a free loopback port), `run_dashboard`
starts the STAND-IN gateway (`statecore.whatsapp.standin_wwebjs`, logged out,
showing a QR, as a fresh install) and, unless ASSISTANT is set, the STAND-IN
assistant for its children; then the receiver (`receive_messages --loop`),
the sender (`send_approved --loop`) and the web server. With something
listening there it uses that; with a gateway elsewhere it says a stand-in
cannot replace it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from statecore import rootstate, session, session_events
from statecore.models import AuditEvent, Message, Source, Status
from statecore.standin_assistant import REPLY as STANDIN_REPLY
from tests.factories import make_reply
from tests.session_helpers import REPO, child_env, manage, set_session, use_gateway

OWN_REPLY = "OWN assistant: "


def own_draft_reply(message: dict) -> str | None:
    """An ASSISTANT of the user's own (imported by the receiver child by its dotted path)."""
    return OWN_REPLY + str(message.get("body"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@dataclass
class Run:
    child: subprocess.Popen
    web_port: int
    log_path: Path
    out: str = ""

    def so_far(self) -> str:
        return self.log_path.read_text()


@pytest.fixture
def demo_state(settings, tmp_path: Path) -> None:
    """The sample's session: logged in, but stale and without its folder on this machine."""
    rootstate.update_part(
        "watcher_config",
        lambda old: {**old, "poll_interval_seconds": 1},
        actor="t",
        source=Source.API,
        action="set",
    )
    set_session(
        authenticated=True,
        session_valid=True,
        requires_qr=False,
        session_path=".wwebjs_auth",
        last_validation="2020-01-01T00:00:00",
    )
    settings.WHATSAPP_SESSION_BASE = tmp_path


@contextlib.contextmanager
def dashboard(tmp_path: Path, **env: str) -> Iterator[Run]:
    """run_dashboard as `make run` starts it; Ctrl-C (SIGINT) when the block ends.

    ASSISTANT is only what `env` gives, never what this shell happens to have."""
    web_port = free_port()
    environment = child_env(tmp_path, APPROVAL_GRACE_SECONDS="0", DEBUG="1", **env)
    if "ASSISTANT" not in env:
        environment.pop("ASSISTANT", None)
    log_path = tmp_path / f"run-{web_port}.log"
    log = log_path.open("w+")
    child = subprocess.Popen(
        manage("run_dashboard", "--addr", f"127.0.0.1:{web_port}"),
        cwd=REPO,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    run = Run(child, web_port, log_path)
    try:
        wait_for(lambda: listening(web_port) or child.poll() is not None, "the dashboard")
        assert child.poll() is None, _read(log)
        yield run
    except BaseException:
        print(_read(log))  # shown with the failure
        raise
    finally:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=60)
        finally:
            if child.poll() is None:  # never leave it behind, whatever failed
                child.kill()
                child.wait()
        run.out = _read(log)
        log.close()


def _read(log) -> str:
    log.seek(0)
    return log.read()


def assert_stopped_cleanly(run: Run, *ports: int) -> None:
    assert run.child.returncode == 0, run.out
    assert "Receiver stopped." in run.out
    assert "Sender stopped." in run.out
    assert "All stopped." in run.out
    for port in (run.web_port, *ports):
        assert not listening(port), port


def new_incoming_ids(before: set[str]) -> list[str]:
    return [
        m
        for m in Message.objects.filter(status=Status.INCOMING).values_list("message_id", flat=True)
        if m not in before
    ]


@pytest.mark.django_db(transaction=True)
def test_the_whole_loop_with_the_stand_ins_from_qr_to_a_sent_reply(tmp_path, demo_state):
    gateway_port = free_port()
    api = f"http://127.0.0.1:{gateway_port}/api/whatsapp"
    use_gateway(api)
    control = f"http://127.0.0.1:{gateway_port}/_standin"
    http = httpx.Client(timeout=5, trust_env=False)

    with dashboard(tmp_path) as run:
        # A fresh install: the stand-in shows a QR, the receiver records it for /session/.
        qr = http.get(f"{api}/status").json()["qrCode"]
        assert qr
        wait_for(
            lambda: (shown := session_events.latest_qr()) is not None and shown.text == qr,
            "the stand-in's QR to be recorded",
        )
        assert session.current()["requires_qr"] is True
        # An approved reply waits while WhatsApp is not linked: never "outcome unknown".
        reply = make_reply(Status.APPROVED)
        wait_for(lambda: "Not sending: Session not valid" in run.so_far(), "the sender to wait")
        time.sleep(2)  # a round or two of the sender
        assert Message.objects.get(pk=reply.pk).status == Status.APPROVED
        assert "nothing sent to WhatsApp" not in run.so_far()

        # "Scan" it on the stand-in's control page: the session turns valid, the reply goes.
        assert http.post(f"{control}/scan").status_code == 303
        wait_for(
            lambda: Message.objects.get(pk=reply.pk).status == Status.SENT, "the reply to be sent"
        )
        assert session.check(session.current()).valid
        assert session_events.latest_qr() is None

        # A customer writes; the STAND-IN assistant drafts its canned reply.
        before = set(Message.objects.values_list("message_id", flat=True))
        response = http.post(
            f"{control}/customer-message",
            data={"body": "Where is my order?", "sender": "923001234567@c.us", "name": "Ayesha"},
        )
        assert response.status_code == 303
        wait_for(lambda: new_incoming_ids(before), "the customer's message to arrive")
        [incoming_id] = new_incoming_ids(before)
        wait_for(
            lambda: Message.objects.filter(reply_to=incoming_id).exists(), "the stand-in's draft"
        )
        draft = Message.objects.get(reply_to=incoming_id)
        assert draft.body == STANDIN_REPLY
        assert httpx.get(f"http://127.0.0.1:{run.web_port}/accounts/login/").status_code == 200
    http.close()

    assert_stopped_cleanly(run, gateway_port)
    assert "STAND-IN gateway at" in run.out
    assert "STAND-IN assistant (statecore.standin_assistant.draft_reply)" in run.out
    assert "drafts by statecore.standin_assistant.draft_reply" in run.out
    assert (tmp_path / ".wwebjs_auth").is_dir()
    # Sent once: the stand-in printed it once.
    assert run.out.count(f"nothing sent to WhatsApp: to {reply.recipient}@c.us") == 1, run.out


@pytest.mark.django_db(transaction=True)
def test_an_assistant_of_ones_own_is_kept_beside_the_stand_in_gateway(tmp_path, demo_state):
    gateway_port = free_port()
    api = f"http://127.0.0.1:{gateway_port}/api/whatsapp"
    use_gateway(api)
    own = f"{__name__}.own_draft_reply"

    with dashboard(tmp_path, ASSISTANT=own) as run:
        before = set(Message.objects.values_list("message_id", flat=True))
        with httpx.Client(timeout=5, trust_env=False) as http:
            response = http.post(
                f"http://127.0.0.1:{gateway_port}/_standin/customer-message",
                data={"body": "Open today?"},
            )
        assert response.status_code == 303
        wait_for(lambda: new_incoming_ids(before), "the customer's message to arrive")
        [incoming_id] = new_incoming_ids(before)
        wait_for(lambda: Message.objects.filter(reply_to=incoming_id).exists(), "the own draft")
        assert Message.objects.get(reply_to=incoming_id).body == OWN_REPLY + "Open today?"

    assert_stopped_cleanly(run, gateway_port)
    assert "STAND-IN gateway at" in run.out
    assert "STAND-IN assistant" not in run.out
    assert f"drafts by {own}" in run.out


@pytest.mark.django_db(transaction=True)
def test_a_listening_gateway_is_used_and_no_stand_in_is_started(tmp_path, demo_state, fake_gateway):
    use_gateway(fake_gateway.url)
    # A real deployment has its session folder; run_dashboard creates one only for the stand-in.
    (tmp_path / ".wwebjs_auth").mkdir()

    with dashboard(tmp_path) as run:
        reply = make_reply(Status.APPROVED)
        wait_for(
            lambda: Message.objects.get(pk=reply.pk).status == Status.SENT, "the reply to be sent"
        )

    assert_stopped_cleanly(run)
    assert f"A gateway listens at {fake_gateway.url}: using it." in run.out
    assert "STAND-IN" not in run.out  # neither gateway nor assistant
    assert "no ASSISTANT" in run.out
    # It went through the gateway that was there, once, and that gateway still runs.
    assert [call.chat_id for call in fake_gateway.delivered()] == [f"{reply.recipient}@c.us"]
    assert fake_gateway.calls()["status"] >= 1
    with httpx.Client(timeout=5, trust_env=False) as http:
        assert http.get(f"{fake_gateway.url}/status").status_code == 200


@pytest.mark.parametrize(
    "api",
    [
        # Not this machine: a stand-in cannot take its place.
        "http://gateway.invalid:3000/api/whatsapp",
        # Loopback, but not plain http: the stand-in speaks only that.
        "https://127.0.0.1:{port}/api/whatsapp",
    ],
)
@pytest.mark.django_db(transaction=True)
def test_no_stand_in_for_a_gateway_it_cannot_replace(tmp_path, demo_state, api):
    port = free_port()
    use_gateway(api.format(port=port))

    with dashboard(tmp_path) as run:
        pass

    assert_stopped_cleanly(run, port)
    assert "a stand-in can only replace a local one" in run.out
    assert "STAND-IN" not in run.out
    assert not (tmp_path / ".wwebjs_auth").exists()


# --- `GATEWAY_KIND=<kind> make run`: the demo settings ------------------------------------

GATEWAY_VARIABLES = (
    "GATEWAY_KIND",
    "GATEWAY_URL",
    "GATEWAY_API_KEY",
    "GATEWAY_SESSION",
    "GATEWAY_PHONE_NUMBER_ID",
    "GATEWAY_WEBHOOK_SECRET",
    "GATEWAY_VERIFY_TOKEN",
)
# Stands in for the venv's python: writes down each command and the GATEWAY_* it was given.
RECORDING_PYTHON = """#!/bin/sh
{ printf '%s' "$*"; for name in VARIABLES; do
    eval "value=\\${$name-UNSET}"; printf ' %s=%s' "$name" "$value"; done; echo; } >> "$RECORD"
"""


def make_run(tmp_path: Path, **environment: str) -> list[dict[str, str]]:
    """`make run` with the venv's python recording instead of running; one dict a command."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(RECORDING_PYTHON.replace("VARIABLES", " ".join(GATEWAY_VARIABLES)))
    python.chmod(0o755)
    (venv / ".installed").touch()  # newer than requirements.txt: nothing is installed
    record = tmp_path / "record.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(RECORD=str(record), **environment)
    subprocess.run(["make", "-s", "run", f"VENV={venv}"], cwd=REPO, env=env, check=True, timeout=60)
    commands = []
    for line in record.read_text().splitlines():
        command, *pairs = line.split(" GATEWAY_")
        values = dict(("GATEWAY_" + pair).split("=", 1) for pair in pairs)
        commands.append({"command": command, **values})
    return commands


def test_make_run_with_a_kind_fills_in_the_demo_settings_for_every_command(tmp_path):
    commands = make_run(tmp_path, GATEWAY_KIND="waha", GATEWAY_URL="")

    assert [c["command"] for c in commands] == [
        "manage.py migrate --no-input",
        "manage.py bootstrap_demo",
        "manage.py run_dashboard",
    ]
    for command in commands:
        assert command["GATEWAY_KIND"] == "waha"
        assert command["GATEWAY_URL"] == "http://127.0.0.1:3001"
        assert command["GATEWAY_API_KEY"] == "demo"
        assert command["GATEWAY_WEBHOOK_SECRET"] == "demo-secret"
        assert command["GATEWAY_PHONE_NUMBER_ID"] == "UNSET"


def test_make_run_keeps_what_is_set_and_gives_cloud_its_own(tmp_path):
    [*_, run] = make_run(
        tmp_path,
        GATEWAY_KIND="cloud",
        GATEWAY_API_KEY="my-token",
        GATEWAY_WEBHOOK_SECRET="my-app-secret",
    )
    assert run["GATEWAY_URL"] == "http://127.0.0.1:3001"
    assert run["GATEWAY_API_KEY"] == "my-token"
    assert run["GATEWAY_WEBHOOK_SECRET"] == "my-app-secret"
    assert run["GATEWAY_PHONE_NUMBER_ID"].isdigit()
    assert run["GATEWAY_VERIFY_TOKEN"] == "demo-verify-token"


def test_make_run_without_a_kind_adds_no_gateway_settings(tmp_path):
    for command in make_run(tmp_path):
        assert all(command[name] == "UNSET" for name in GATEWAY_VARIABLES), command


# --- A gateway that pushes: its stand-in, pointed at the dashboard -------------------------

DEMO_KEY = "demo-key-5f3a9c"
DEMO_SECRET = "demo-secret-8e1d47"


def pushing_env(kind: str, port: int, settings=None, **extra: str) -> dict[str, str]:
    """The children's GATEWAY_* for `kind`; with `settings`, this process's follow them
    (the session rules a test checks differ by kind)."""
    if settings is not None:
        settings.GATEWAY_KIND = kind
    env = {
        "GATEWAY_KIND": kind,
        "GATEWAY_URL": f"http://127.0.0.1:{port}",
        "GATEWAY_API_KEY": DEMO_KEY,
        "GATEWAY_WEBHOOK_SECRET": DEMO_SECRET,
        **extra,
    }
    if kind == "cloud":
        env.update(GATEWAY_PHONE_NUMBER_ID="106540352242922", GATEWAY_VERIFY_TOKEN="demo-verify")
    return env


def assert_no_secret_shown(run: Run) -> None:
    assert DEMO_KEY not in run.out and DEMO_SECRET not in run.out


def wait_for_the_draft_of(body: str) -> Message:
    wait_for(
        lambda: Message.objects.filter(status=Status.INCOMING, body=body).exists(),
        "the customer's message to come by webhook",
    )
    incoming = Message.objects.get(status=Status.INCOMING, body=body)
    wait_for(lambda: Message.objects.filter(reply_to=incoming.message_id).exists(), "the draft")
    return incoming


@pytest.mark.django_db(transaction=True)
def test_cloud_runs_its_stand_in_posting_signed_webhooks_to_the_dashboard(tmp_path, demo_state):
    port = free_port()

    with dashboard(tmp_path, **pushing_env("cloud", port)) as run:
        wait_for(lambda: listening(port), "the Cloud stand-in")
        with httpx.Client(timeout=5, trust_env=False) as http:
            response = http.post(
                f"http://127.0.0.1:{port}/_standin/customer-message",
                data={"text": "Is the blue one in stock?", "sender": "923001234567"},
            )
        assert response.status_code == 303
        incoming = wait_for_the_draft_of("Is the blue one in stock?")
        assert Message.objects.get(reply_to=incoming.message_id).body == STANDIN_REPLY

    assert_stopped_cleanly(run, port)
    assert f"STAND-IN gateway at http://127.0.0.1:{port} (cloud)" in run.out
    assert "Write as a customer, make it fail" in run.out  # no QR to scan
    assert "STAND-IN assistant" in run.out
    assert not (tmp_path / ".wwebjs_auth").exists()
    assert_no_secret_shown(run)


@pytest.mark.django_db(transaction=True)
def test_waha_runs_its_stand_in_pointed_at_the_dashboard_from_qr_to_a_sent_reply(
    tmp_path, demo_state, settings
):
    port = free_port()
    control = f"http://127.0.0.1:{port}/_standin"
    http = httpx.Client(timeout=5, trust_env=False)

    with dashboard(tmp_path, **pushing_env("waha", port, settings)) as run:
        # A fresh install: the stand-in shows a QR, and /session/ gets it.
        wait_for(lambda: session_events.latest_qr() is not None, "the stand-in's QR")
        assert session.current()["requires_qr"] is True
        reply = make_reply(Status.APPROVED)

        # Scanned: its session.status webhook (or the receiver's watch) makes it valid.
        assert http.post(f"{control}/scan").status_code == 303
        wait_for(lambda: session.check(session.current()).valid, "the session to be valid")
        wait_for(
            lambda: Message.objects.get(pk=reply.pk).status == Status.SENT, "the reply to be sent"
        )

        # A customer writes: the signed webhook stores it, the loop drafts it.
        response = http.post(
            f"{control}/customer-message",
            data={"text": "Do you deliver to Lahore?", "sender": "923001234567"},
        )
        assert response.status_code == 303
        incoming = wait_for_the_draft_of("Do you deliver to Lahore?")
        assert Message.objects.get(reply_to=incoming.message_id).body == STANDIN_REPLY
        add = AuditEvent.objects.get(action="add", message_id=incoming.message_id)
        assert add.actor == "gateway"  # by the webhook, in the request
    http.close()

    assert_stopped_cleanly(run, port)
    assert f"STAND-IN gateway at http://127.0.0.1:{port} (waha)" in run.out
    assert "Scan its QR, write as a customer" in run.out
    assert "drafts by statecore.standin_assistant.draft_reply" in run.out
    assert run.out.count(f"to {reply.recipient}@c.us") == 1, run.out
    assert not (tmp_path / ".wwebjs_auth").exists()
    assert_no_secret_shown(run)


@pytest.mark.django_db(transaction=True)
def test_evolution_runs_its_stand_in_under_the_configured_instance(tmp_path, demo_state, settings):
    port = free_port()

    with dashboard(
        tmp_path, **pushing_env("evolution", port, settings, GATEWAY_SESSION="shop-1")
    ) as run:
        wait_for(lambda: session_events.latest_qr() is not None, "the stand-in's QR")
        with httpx.Client(timeout=5, trust_env=False) as http:
            assert http.post(f"http://127.0.0.1:{port}/_standin/scan").status_code == 303
            wait_for(lambda: session.check(session.current()).valid, "the session to be valid")
            response = http.post(
                f"http://127.0.0.1:{port}/_standin/customer-message",
                data={"text": "Still open?", "sender": "5511999999999"},
            )
        assert response.status_code == 303
        wait_for_the_draft_of("Still open?")

    assert_stopped_cleanly(run, port)
    assert "(instance shop-1)" in run.out
    assert_no_secret_shown(run)


@pytest.mark.parametrize("kind", ["waha", "evolution", "cloud"])
def test_a_pushing_stand_in_gets_its_secrets_in_its_environment_not_on_its_command_line(
    settings, kind: str
) -> None:
    from statecore.management.commands import run_dashboard

    settings.GATEWAY_API_KEY = DEMO_KEY
    settings.GATEWAY_WEBHOOK_SECRET = DEMO_SECRET
    settings.GATEWAY_VERIFY_TOKEN = "demo-verify"
    settings.GATEWAY_PHONE_NUMBER_ID = "106540352242922"

    options = run_dashboard._pushing_options(kind, "127.0.0.1:8000")

    assert not {DEMO_KEY, DEMO_SECRET, "demo-verify"} & set(options)  # `ps` shows these
    assert run_dashboard._pushing_secrets() == {
        "GATEWAY_API_KEY": DEMO_KEY,
        "GATEWAY_WEBHOOK_SECRET": DEMO_SECRET,
        "GATEWAY_VERIFY_TOKEN": "demo-verify",
    }
