"""Sign-in and accounts (statecore/accounts.py): throttled sign-in on the pair (username,
address) and on the address, never on the username alone; the lock-out page; unlocking
in the admin; the client's address behind a proxy; the password reset, off by default."""

from __future__ import annotations

import email
import logging
import re
import runpy
import socketserver
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db.models import F
from django.test import Client, override_settings
from django.utils import timezone

from tests.users import PASSWORD, make_user

SETTINGS = Path(__file__).resolve().parent.parent / "statecore" / "settings.py"
HOME, STRANGER, ELSEWHERE = "198.51.100.7", "203.0.113.9", "192.0.2.44"
WRONG = "not-the-password-at-all"
SMTP = "django.core.mail.backends.smtp.EmailBackend"
RESET_URLS = [
    "/accounts/password_reset/",
    "/accounts/password_reset/done/",
    "/accounts/reset/MQ/set-password/",
    "/accounts/reset/done/",
]


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()  # the reset counts live there
    yield
    cache.clear()


@pytest.fixture
def dana(db):
    user = make_user("dana", reviewer=True)
    user.email = "dana@example.com"
    user.save()
    return user


@pytest.fixture
def root(db):
    user = make_user("root", staff=True)
    user.is_superuser = True
    user.save()
    return user


def sign_in(client, username, password, address, path="/accounts/login/", **headers):
    return client.post(
        path, {"username": username, "password": password}, REMOTE_ADDR=address, **headers
    )


def signed_in_ok(response) -> bool:
    return response.status_code == 302 and "_auth_user_id" in response.client.session


# --- Throttled sign-in ----------------------------------------------------------------


def test_five_wrong_passwords_lock_that_username_from_that_address(dana):
    client = Client()
    for _ in range(4):
        assert sign_in(client, "dana", WRONG, HOME).status_code == 200  # the form again
    assert sign_in(client, "dana", WRONG, HOME).status_code == 429
    locked = sign_in(client, "dana", PASSWORD, HOME)
    assert locked.status_code == 429 and not signed_in_ok(locked)


def test_four_wrong_passwords_still_let_the_right_one_in(dana):
    client = Client()
    for _ in range(4):
        sign_in(client, "dana", WRONG, HOME)
    assert signed_in_ok(sign_in(client, "dana", PASSWORD, HOME))


def test_failures_from_another_address_leave_the_user_able_to_sign_in(dana):
    stranger = Client()
    for _ in range(30):  # locks the pair (stranger, dana) and the stranger's address
        sign_in(stranger, "dana", WRONG, STRANGER)
    assert sign_in(stranger, "dana", PASSWORD, STRANGER).status_code == 429
    assert signed_in_ok(sign_in(Client(), "dana", PASSWORD, HOME))


def test_a_stranger_cannot_lock_the_admin_out_of_the_admin(root):
    stranger = Client()
    for _ in range(30):
        sign_in(stranger, "root", WRONG, STRANGER, path="/admin/login/")
    assert sign_in(stranger, "root", PASSWORD, STRANGER, path="/admin/login/").status_code == 429
    assert signed_in_ok(sign_in(Client(), "root", PASSWORD, HOME, path="/admin/login/"))


def test_the_admin_sign_in_is_throttled_too(root):
    client = Client()
    for _ in range(5):
        last = sign_in(client, "root", WRONG, STRANGER, path="/admin/login/")
    assert last.status_code == 429
    assert sign_in(client, "root", PASSWORD, STRANGER, path="/admin/login/").status_code == 429


def test_twenty_failures_from_one_address_lock_every_username_there(dana):
    client = Client()
    for n in range(19):
        assert sign_in(client, f"guess{n}", WRONG, STRANGER).status_code == 200
    assert sign_in(client, "guess19", WRONG, STRANGER).status_code == 429
    assert sign_in(client, "dana", PASSWORD, STRANGER).status_code == 429
    assert signed_in_ok(sign_in(Client(), "dana", PASSWORD, HOME))


@override_settings(LOGIN_FAILURE_LIMIT=3, AXES_FAILURE_LIMIT=3, LOGIN_ADDRESS_FAILURE_LIMIT=6)
def test_the_limits_are_settings(dana):
    client = Client()
    for _ in range(3):
        last = sign_in(client, "dana", WRONG, HOME)
    assert last.status_code == 429
    for n in range(3):
        last = sign_in(client, f"guess{n}", WRONG, STRANGER)
    assert last.status_code == 200
    for n in range(3, 6):
        last = sign_in(client, f"guess{n}", WRONG, STRANGER)
    assert last.status_code == 429


def test_the_lock_out_page_says_when_to_try_again(dana):
    client = Client()
    for _ in range(5):
        page = sign_in(client, "dana", WRONG, HOME)
    last = AccessAttempt.objects.get(username="dana").attempt_time
    until = timezone.localtime(last + timedelta(minutes=15))
    text = page.content.decode()
    assert page.status_code == 429
    assert f'Try again after <time datetime="{until.isoformat()}">{until:%H:%M}</time>' in text
    assert "(in 15 minutes)" in text
    # Ten minutes later the same time stands (a try while locked out does not extend it).
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=10))
    until -= timedelta(minutes=10)
    again = sign_in(client, "dana", PASSWORD, HOME).content.decode()
    assert f"{until:%H:%M}</time>" in again and "(in 5 minutes)" in again


def test_the_lock_ends_after_the_cool_off(dana):
    client = Client()
    for _ in range(5):
        sign_in(client, "dana", WRONG, HOME)
    assert sign_in(client, "dana", PASSWORD, HOME).status_code == 429
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=16))
    assert signed_in_ok(sign_in(client, "dana", PASSWORD, HOME))


def test_each_failed_sign_in_is_logged_with_username_and_address_never_the_password(dana, caplog):
    with caplog.at_level(logging.WARNING, logger="statecore.accounts"):
        for _ in range(6):
            sign_in(Client(), "dana", WRONG, STRANGER)
    lines = [r.getMessage() for r in caplog.records if r.name == "statecore.accounts"]
    assert lines[:4] == [f"failed sign-in for username 'dana' from {STRANGER}"] * 4
    assert lines[4:] == [f"failed sign-in for username 'dana' from {STRANGER}: locked out"] * 2
    assert all(
        r.levelno == logging.WARNING for r in caplog.records if r.name == "statecore.accounts"
    )
    assert not any(WRONG in r.getMessage() or WRONG in str(r.args) for r in caplog.records)


def test_an_admin_unlocks_in_the_admin(dana, root):
    for _ in range(5):
        sign_in(Client(), "dana", WRONG, HOME)
    assert sign_in(Client(), "dana", PASSWORD, HOME).status_code == 429
    admin = Client()
    admin.force_login(root)
    listing = admin.get("/admin/axes/accessattempt/?username=dana")
    assert listing.status_code == 200 and "Locked Out" in listing.content.decode()
    attempt = AccessAttempt.objects.get(username="dana")
    done = admin.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"},
    )
    assert done.status_code == 302
    assert signed_in_ok(sign_in(Client(), "dana", PASSWORD, HOME))


# --- The client's address -------------------------------------------------------------


def test_without_the_proxy_setting_a_forwarded_header_is_ignored(dana):
    for n in range(5):  # a client rotating the header it writes gains nothing
        last = sign_in(Client(), "dana", WRONG, HOME, HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
    assert last.status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {HOME}


@override_settings(BEHIND_HTTPS_PROXY=True)
def test_behind_the_proxy_the_address_is_the_last_one_the_proxy_added(dana):
    for n in range(5):  # the client writes the left part; the proxy appends what it saw
        last = sign_in(
            Client(), "dana", WRONG, "127.0.0.1", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}, {STRANGER}"
        )
    assert last.status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {STRANGER}
    # Everyone else comes through the same proxy (127.0.0.1) and is not locked out.
    fine = sign_in(Client(), "dana", PASSWORD, "127.0.0.1", HTTP_X_FORWARDED_FOR=HOME)
    assert signed_in_ok(fine)


@override_settings(BEHIND_HTTPS_PROXY=True)
def test_behind_the_proxy_without_a_forwarded_address_the_peer_counts(dana):
    sign_in(Client(), "dana", WRONG, "127.0.0.1", HTTP_X_FORWARDED_FOR="not an address")
    assert AccessAttempt.objects.get().ip_address == "127.0.0.1"


# --- Password reset -------------------------------------------------------------------


@pytest.mark.parametrize("url", RESET_URLS)
def test_password_reset_answers_404_by_default(dana, url, mailoutbox):
    assert Client().get(url).status_code == 404
    assert Client().post(url, {"email": dana.email}).status_code == 404
    assert mailoutbox == []


def test_the_sign_in_page_offers_no_reset_by_default(db):
    text = Client().get("/accounts/login/").content.decode()
    assert "/accounts/password_reset/" not in text
    assert "An administrator sets a new one." in text


@pytest.mark.parametrize(
    "backend",
    [
        None,  # the default: console, which would print every reset link in the log
        "django.core.mail.backends.console.EmailBackend",
        "django.core.mail.backends.locmem.EmailBackend",
        "django.core.mail.backends.dummy.EmailBackend",
        "django.core.mail.backends.filebased.EmailBackend",
    ],
)
def test_reset_with_a_backend_that_does_not_deliver_refuses_to_start(monkeypatch, backend):
    monkeypatch.setenv("PASSWORD_RESET_ENABLED", "1")
    if backend is None:
        monkeypatch.delenv("EMAIL_BACKEND", raising=False)
    else:
        monkeypatch.setenv("EMAIL_BACKEND", backend)
    with pytest.raises(ImproperlyConfigured, match=r"PASSWORD_RESET_ENABLED.*EMAIL_BACKEND"):
        runpy.run_path(str(SETTINGS))


def test_reset_with_a_delivering_backend_starts(monkeypatch):
    monkeypatch.setenv("PASSWORD_RESET_ENABLED", "1")
    monkeypatch.setenv("EMAIL_BACKEND", SMTP)
    assert runpy.run_path(str(SETTINGS))["PASSWORD_RESET_ENABLED"] is True


@override_settings(PASSWORD_RESET_ENABLED=True)  # with the tests' locmem backend
def test_reset_on_with_locmem_still_answers_404(dana, mailoutbox):
    assert Client().post("/accounts/password_reset/", {"email": dana.email}).status_code == 404
    assert mailoutbox == []


class _SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for Django's backend: every message kept, every command OK."""

    def handle(self):
        self.wfile.write(b"220 fake\r\n")
        body: list[bytes] | None = None
        for line in self.rfile:
            if body is not None:
                if line.rstrip(b"\r\n") == b".":
                    self.server.messages.append(email.message_from_bytes(b"".join(body)))
                    body = None
                    self.wfile.write(b"250 kept\r\n")
                else:
                    body.append(line[1:] if line.startswith(b"..") else line)
                continue
            command = line[:4].upper()
            if command == b"DATA":
                body = []
                self.wfile.write(b"354 go on\r\n")
            elif command == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def smtp():
    """A real SMTP server on loopback, and the settings that turn the reset on with it."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SMTPHandler)
    server.daemon_threads = True
    server.messages = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with override_settings(
            PASSWORD_RESET_ENABLED=True,
            EMAIL_BACKEND=SMTP,
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=server.server_address[1],
            EMAIL_HOST_USER="",
            EMAIL_HOST_PASSWORD="",
            EMAIL_USE_TLS=False,
        ):
            yield server
    finally:
        server.shutdown()
        server.server_close()


def ask_reset(address: str, mail: str):
    return Client().post("/accounts/password_reset/", {"email": mail}, REMOTE_ADDR=address)


def test_reset_with_smtp_mails_a_link_that_sets_a_new_password(dana, smtp):
    assert "/accounts/password_reset/" in Client().get("/accounts/login/").content.decode()
    asked = ask_reset(HOME, dana.email)
    assert asked.status_code == 302 and asked["Location"] == "/accounts/password_reset/done/"
    [message] = smtp.messages
    assert message["To"] == dana.email
    text = message.get_payload(decode=True).decode()
    link = re.search(r"http://testserver(/accounts/reset/[^/\s]+/[^/\s]+/)", text).group(1)
    client = Client()
    form = client.get(link, follow=True)
    assert form.status_code == 200
    done = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "a-new-long-password-2", "new_password2": "a-new-long-password-2"},
    )
    assert done.status_code == 302 and done["Location"] == "/accounts/reset/done/"
    assert signed_in_ok(sign_in(Client(), "dana", "a-new-long-password-2", HOME))


def test_reset_is_limited_per_address(dana, smtp):
    for n in range(5):
        assert ask_reset(STRANGER, f"someone{n}@example.com").status_code == 302
    refused = ask_reset(STRANGER, dana.email)
    assert refused.status_code == 429 and "Too many reset requests" in refused.content.decode()
    assert smtp.messages == []  # nobody of those five has an account; dana's was refused
    assert ask_reset(HOME, dana.email).status_code == 302
    assert len(smtp.messages) == 1


def test_reset_is_limited_per_email(dana, smtp):
    for n in range(5):
        assert ask_reset(f"192.0.2.{n + 1}", dana.email).status_code == 302
    assert ask_reset(ELSEWHERE, " Dana@Example.com ").status_code == 429
    assert len(smtp.messages) == 5


@pytest.mark.parametrize("username", ["da\x00na", "x" * 300])
def test_a_malformed_username_is_refused_without_a_5xx(dana, username):
    client = Client(raise_request_exception=False)
    for path in ("/accounts/login/", "/admin/login/"):
        assert sign_in(client, username, WRONG, STRANGER, path=path).status_code == 200
    # Counted under the longest username there can be (SQLite would store any length).
    assert all(
        len(name) <= 150 for name in AccessAttempt.objects.values_list("username", flat=True)
    )
