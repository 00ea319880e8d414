"""`make run`'s last step: with no gateway, a stand-in; an approved reply goes out; Ctrl-C stops all."""

from __future__ import annotations

import signal
import socket
import subprocess
import time

import httpx
import pytest

from statecore import rootstate, session
from statecore.models import Message, Source, Status
from tests.factories import make_reply
from tests.session_helpers import REPO, child_env, manage, set_session, use_gateway


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


@pytest.mark.django_db(transaction=True)
def test_run_dashboard_stands_in_for_a_missing_gateway_sends_and_stops_cleanly(tmp_path, settings):
    gateway_port, web_port = free_port(), free_port()
    use_gateway(f"http://127.0.0.1:{gateway_port}/api/whatsapp")
    rootstate.update_part(
        "watcher_config",
        lambda old: {**old, "poll_interval_seconds": 1},
        actor="t",
        source=Source.API,
        action="set",
    )
    # The sample's session: logged in, but stale and without its folder on this machine.
    set_session(
        authenticated=True,
        session_valid=True,
        requires_qr=False,
        session_path=".wwebjs_auth",
        last_validation="2020-01-01T00:00:00",
    )
    settings.WHATSAPP_SESSION_BASE = tmp_path
    log = (tmp_path / "out.log").open("w+")
    child = subprocess.Popen(
        manage("run_dashboard", "--addr", f"127.0.0.1:{web_port}"),
        cwd=REPO,
        env=child_env(tmp_path, APPROVAL_GRACE_SECONDS="0", DEBUG="1"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: listening(web_port), "the dashboard to listen")
        reply = make_reply(Status.APPROVED)
        wait_for(
            lambda: Message.objects.get(pk=reply.pk).status == Status.SENT, "the reply to be sent"
        )
        assert session.check(session.current()).valid
        assert (tmp_path / ".wwebjs_auth").is_dir()
        assert httpx.get(f"http://127.0.0.1:{web_port}/accounts/login/").status_code == 200
    finally:
        child.send_signal(signal.SIGINT)
        child.wait(timeout=60)
    log.seek(0)
    out = log.read()

    assert child.returncode == 0, out
    assert "STAND-IN gateway" in out
    assert f"nothing sent to WhatsApp: to {reply.recipient}" in out
    assert "Sender stopped." in out
    assert "All stopped." in out
    assert not listening(web_port)
    assert not listening(gateway_port)
