"""statecore/middleware.py: bodies held to a size before anyone reads them; signed-in
pages never cached."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.test import Client

from statecore import middleware
from statecore.lifecycle import MAX_REPLY_LENGTH
from statecore.models import Message
from tests.factories import make_reply
from tests.users import PASSWORD, make_user

SIZE = "statecore.middleware.RequestSizeLimit"
NO_STORE = "statecore.middleware.NoStore"
KIB = 1024


def with_ours(stack: list[str]) -> list[str]:
    """The project's MIDDLEWARE with ours where the README puts them: the size limit
    first, no-store right after the sign-in is known (so after WhiteNoise)."""
    rest = [name for name in stack if name not in (SIZE, NO_STORE)]
    after_auth = rest.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1
    return [SIZE, *rest[:after_auth], NO_STORE, *rest[after_auth:]]


@pytest.fixture(autouse=True)
def our_middleware(settings):
    settings.MIDDLEWARE = with_ours(settings.MIDDLEWARE)


@pytest.fixture
def staff_client(db) -> Client:
    from django.contrib.auth.models import Permission

    user = make_user("sam", reviewer=True, staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["export_state", "import_state"])
    )
    client = Client()
    client.force_login(user)
    return client


class Unreadable:
    """A request body that fails the test if anything reads it."""

    def read(self, *args):
        raise AssertionError("the body was read")

    readline = read


def post_declaring(client: Client, path: str, length: int | str, **extra):
    """A POST that says it carries `length` bytes, whose body cannot be read (the test
    client sets no length and no type for a body it has not got: given here)."""
    wsgi = {
        "CONTENT_LENGTH": str(length),
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "wsgi.input": Unreadable(),
    }
    return client.generic("POST", path, **(wsgi | extra))


# --- Request size ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "cap"),
    [
        ("/accounts/login/", middleware.DEFAULT_MAX_BYTES),
        ("/queue/bulk/", middleware.DEFAULT_MAX_BYTES),
        ("/no/such/page/", middleware.DEFAULT_MAX_BYTES),
        ("/gateway/events", middleware.DEFAULT_GATEWAY_MAX_BYTES),
        ("/state/upload/", middleware.DEFAULT_UPLOAD_MAX_BYTES),
        ("/queue/1/edit/", middleware.EDIT_MAX_BYTES),
    ],
)
def test_a_body_over_the_paths_cap_gets_413_before_it_is_read(client, db, path, cap):
    response = post_declaring(client, path, cap + 1)

    assert response.status_code == 413
    assert f"over {cap:,} bytes" in response.content.decode()


def test_the_caps_are_what_the_pages_need():
    # 64 KiB holds every form but the edit (a reason, a note: 1,000 characters) and the
    # upload: its own form limit (256 MiB) plus the multipart framing.
    assert middleware.DEFAULT_MAX_BYTES == 64 * KIB
    assert middleware.DEFAULT_GATEWAY_MAX_BYTES == 16 * KIB
    from approvals.statefile_forms import MAX_UPLOAD_BYTES

    assert MAX_UPLOAD_BYTES < middleware.DEFAULT_UPLOAD_MAX_BYTES <= MAX_UPLOAD_BYTES + 1024 * KIB


@pytest.mark.parametrize(
    ("path", "size", "expected"),
    [
        # Up to the cap the view answers as it always did (a wrong sign-in: the form again).
        ("/accounts/login/", 64 * KIB, 200),
        # The gateway's own parser still refuses what is not an event.
        ("/gateway/events", 16 * KIB, 400),
        # An upload far over the pages' cap reaches the upload view (which signs in first).
        ("/state/upload/", 1024 * KIB, 302),
    ],
)
def test_a_body_at_the_cap_reaches_the_view(client, db, settings, path, size, expected):
    settings.GATEWAY_TOKEN = "t"
    body = b"username=u&password=" + b"p" * (size - len(b"username=u&password="))
    response = client.generic(
        "POST",
        path,
        body,
        content_type="application/x-www-form-urlencoded",
        headers={"Authorization": "Bearer t"},
    )
    assert len(body) == size
    assert response.status_code == expected


def test_a_reply_edited_to_its_longest_in_4_byte_characters_is_not_too_large(db):
    client = Client()
    client.force_login(make_user("dana", reviewer=True))
    draft = make_reply()
    text = "\U0001f600" * MAX_REPLY_LENGTH

    response = client.post(f"/queue/{draft.pk}/edit/", {"text": text})

    assert response.status_code == 302
    assert Message.objects.get(pk=draft.pk).body == text


def test_the_gateway_gets_its_413_as_json(client, db):
    response = post_declaring(
        client, "/gateway/events", 16 * KIB + 1, CONTENT_TYPE="application/json"
    )
    assert response.status_code == 413
    assert response.json() == {
        "ok": False,
        "error": "the body is over 16,384 bytes, the most accepted here",
    }


def test_the_caps_come_from_the_settings(client, db, settings):
    settings.MAX_REQUEST_BYTES = 100
    settings.GATEWAY_EVENT_MAX_REQUEST_BYTES = 10
    settings.STATE_UPLOAD_MAX_REQUEST_BYTES = 1000

    assert post_declaring(client, "/accounts/login/", 101).status_code == 413
    assert post_declaring(client, "/gateway/events", 11).status_code == 413
    assert post_declaring(client, "/state/upload/", 1001).status_code == 413
    assert client.post("/accounts/login/", {"username": "u"}).status_code == 200


@pytest.mark.parametrize("path", ["/accounts/login/", "/gateway/events", "/queue/bulk/"])
def test_a_chunked_body_is_refused_outside_the_upload(client, db, path):
    response = post_declaring(client, path, "", HTTP_TRANSFER_ENCODING="chunked")

    assert response.status_code == 413
    assert "Content-Length" in response.content.decode()


def test_the_upload_may_come_chunked(staff_client):
    response = staff_client.post("/state/upload/", {}, HTTP_TRANSFER_ENCODING="chunked")
    assert response.status_code == 200  # the view's answer: the form, asking for a file


def test_a_length_of_more_digits_than_int_reads_is_over_the_cap(client, db):
    assert post_declaring(client, "/accounts/login/", "9" * 5000).status_code == 413
    # Leading zeros are still the number they write.
    assert post_declaring(client, "/accounts/login/", "0" * 30 + "65537").status_code == 413
    short = client.generic(
        "POST",
        "/accounts/login/",
        b"username=u",
        content_type="application/x-www-form-urlencoded",
        CONTENT_LENGTH="0" * 30 + "10",
    )
    assert short.status_code == 200


@pytest.mark.parametrize("length", ["-1", "12abc", "1e9", "١٢"])
def test_a_content_length_that_is_no_number_gets_400(client, db, length):
    assert post_declaring(client, "/accounts/login/", length).status_code == 400


def test_a_request_without_a_body_passes(client, db):
    assert client.get("/accounts/login/").status_code == 200


@pytest.fixture
def wsgi_server() -> Iterator[tuple[str, int]]:
    """The project on a plain WSGI server on 127.0.0.1, as gunicorn runs it: no body limit
    of its own (the middleware stack is read now, with ours in it)."""

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, WSGIHandler(), WSGIServer, Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address
    finally:
        server.shutdown()
        server.server_close()


def test_a_client_declaring_300_mb_is_answered_413_before_it_sends_them(wsgi_server):
    host, port = wsgi_server
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(
            b"POST /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 314572800\r\n\r\nusername=a&password="
        )
        answer = conn.recv(4096)

    assert answer.startswith(b"HTTP/1.0 413") or answer.startswith(b"HTTP/1.1 413"), answer
    assert time.monotonic() - started < 5


# --- Caching --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/", "/queue/", "/queue/poll/", "/history/", "/session/", "/state/download/"]
)
def test_every_signed_in_response_says_no_store_private(staff_client, path):
    response = staff_client.get(path)

    assert response.status_code == 200
    directives = {d.strip() for d in response["Cache-Control"].split(",")}
    assert {"no-store", "private"} <= directives
    assert "public" not in directives


def test_a_signed_in_redirect_is_not_stored_either(staff_client):
    response = staff_client.post("/queue/bulk/", {"ids": "1", "action": "approve"})
    assert response.status_code == 302
    assert "no-store" in response["Cache-Control"]


def test_static_files_keep_their_caching(staff_client):
    response = staff_client.get("/static/css/app.css")

    assert response.status_code == 200
    assert "no-store" not in response.get("Cache-Control", "")


def test_an_anonymous_answer_is_left_as_the_view_made_it(client, db):
    # The sign-in page marks itself uncacheable; a 404 to a stranger carries no one's data.
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    assert "no-store" not in response.get("Cache-Control", "")


def test_signing_in_through_the_form_is_not_stored(client, db):
    make_user("dana", reviewer=True)
    response = client.post("/accounts/login/", {"username": "dana", "password": PASSWORD})
    assert response.status_code == 302
    assert "no-store" in response["Cache-Control"]


@pytest.mark.parametrize("selected", ["²", "99999999999999999999", "", "0"])
def test_an_admin_action_on_a_selection_that_is_no_id_gets_400_and_changes_nothing(db, selected):
    from django.contrib.auth.models import User

    reply = make_reply()
    client = Client()
    client.force_login(User.objects.create_superuser("root", password=PASSWORD))
    response = client.post(
        "/admin/statecore/message/",
        {"action": "reject", "_selected_action": [str(reply.pk), selected]},
    )
    assert response.status_code == 400
    assert Message.objects.get(pk=reply.pk).status == reply.status


def test_an_admin_action_on_real_ids_passes(db):
    from django.contrib.auth.models import User

    reply = make_reply()
    client = Client()
    client.force_login(User.objects.create_superuser("root", password=PASSWORD))
    response = client.post(
        "/admin/statecore/message/", {"action": "reject", "_selected_action": [str(reply.pk)]}
    )
    assert response.status_code == 302
    assert Message.objects.get(pk=reply.pk).status == "rejected"
