"""Download the state file; upload one, checked, confirmed, then imported."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from approvals import statefile_forms, statefile_views
from statecore import statefile
from statecore.models import AuditEvent, Status
from tests.factories import make_reply

pytestmark = pytest.mark.django_db

UPLOAD = reverse("approvals:state-upload")
CONFIRM = reverse("approvals:state-upload-confirm")
CANCEL = reverse("approvals:state-upload-cancel")
DOWNLOAD = reverse("approvals:state-download")


@pytest.fixture(autouse=True)
def private_folders(settings, tmp_path, monkeypatch):
    monkeypatch.setattr(statefile_views, "UPLOAD_DIR", tmp_path / "uploads")
    settings.STATE_BACKUP_DIR = tmp_path / "backups"
    return tmp_path


def _user(name: str, *, staff: bool, perms=()) -> User:
    user = User.objects.create_user(name, password="x", is_staff=staff)
    user.user_permissions.add(*Permission.objects.filter(codename__in=perms))
    return user


@pytest.fixture
def admin_client(client):
    client.force_login(_user("keeper", staff=True, perms=["import_state", "export_state"]))
    return client


def _canonical(state: dict) -> bytes:
    return json.dumps(state, indent=2, ensure_ascii=False).encode()


@pytest.fixture
def smaller_file(sample_bytes) -> bytes:
    """The sample with only two sent replies and no failed list, another endpoint."""
    state = json.loads(sample_bytes)
    state["messages"]["sent"] = state["messages"]["sent"][:2]
    del state["messages"]["failed"]
    state["api_endpoint"] = "http://gateway:3000/api/whatsapp"
    return _canonical(state)


def _post_file(client, data: bytes, name: str = "whatsapp_state.json", **fields):
    upload = SimpleUploadedFile(name, data, content_type="application/json")
    return client.post(UPLOAD, {"file": upload, "on_duplicate": "refuse", **fields})


def _texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def _uploads(folder) -> list:
    return list((folder / "uploads").glob("*")) if (folder / "uploads").exists() else []


# --- Download ----------------------------------------------------------------------


def test_download_is_export_state_byte_for_byte(admin_client, sample_state, tmp_path):
    response = admin_client.get(DOWNLOAD)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == 'attachment; filename="whatsapp_state.json"'
    written = statefile.export_state(tmp_path / "exported.json").read_bytes()
    assert response.content == written == sample_state


# --- Upload -----------------------------------------------------------------------------


def test_a_good_file_replaces_the_state_only_after_confirmation(
    admin_client, sample_state, smaller_file, private_folders
):
    response = _post_file(admin_client, smaller_file)
    assert response.status_code == 302 and response.url == CONFIRM
    assert statefile.export_bytes() == sample_state  # nothing changed yet
    assert len(_uploads(private_folders)) == 1

    page = admin_client.get(CONFIRM)
    html = page.content.decode()
    before = statefile.current_counts()
    assert before[Status.SENT] > 2 and before[Status.FAILED] > 0
    sent_row = (
        f'<tr data-list="sent"><th scope="row">sent</th><td>{before["sent"]}</td><td>2</td></tr>'
    )
    failed_row = f'<tr data-list="failed"><th scope="row">failed</th><td>{before["failed"]}</td><td>0</td></tr>'
    assert sent_row in html and failed_row in html
    assert statefile.export_bytes() == sample_state  # still nothing

    token = page.context["confirm_form"]["token"].value()
    response = admin_client.post(CONFIRM, {"token": token}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("approvals:overview")
    assert statefile.export_bytes() == smaller_file
    assert any(t.startswith("Imported whatsapp_state.json: ") for t in _texts(response))
    event = AuditEvent.objects.filter(action="import").latest("pk")
    assert (event.actor, event.source) == ("keeper", "web")
    assert event.detail["after"]["sent"] == 2
    backups = list((private_folders / "backups").glob("whatsapp_state_backup_*.json"))
    assert [b.read_bytes() for b in backups] == [sample_state]
    assert _uploads(private_folders) == []
    assert statefile_views.SESSION_KEY not in admin_client.session


def test_a_bad_file_shows_the_place_of_the_fault_and_changes_nothing(
    admin_client, sample_state, private_folders
):
    state = json.loads(sample_state)
    state["messages"]["sent"][3]["id"] = 5
    state["retry_config"]["max_retries"] = 0
    response = _post_file(admin_client, _canonical(state))
    assert response.status_code == 200
    html = response.content.decode()
    assert "The file was refused; nothing changed" in html
    assert "<code>messages.sent[3].id</code>: expected a string" in html
    assert "<code>retry_config.max_retries</code>: expected a positive whole number" in html
    assert statefile.export_bytes() == sample_state
    assert _uploads(private_folders) == []
    assert statefile_views.SESSION_KEY not in admin_client.session


def test_a_file_that_is_not_json_is_refused_with_its_line_and_column(admin_client, sample_state):
    response = _post_file(admin_client, b'{\n  "session": {\n    "authenticated": tru\n  }\n}')
    assert response.status_code == 200
    assert "<code>line 3, column 22</code>: Expecting value" in response.content.decode()
    assert statefile.export_bytes() == sample_state


def test_an_id_in_two_lists_is_refused_unless_a_copy_is_chosen(admin_client, sample_state):
    state = json.loads(sample_state)
    twin = state["messages"]["sent"][0]
    state["messages"]["failed"].append(dict(twin, status="failed"))
    data = _canonical(state)
    response = _post_file(admin_client, data)
    assert response.status_code == 200
    assert f"the id &#x27;{twin['id']}&#x27; appears more than once" in response.content.decode()
    response = _post_file(admin_client, data, on_duplicate="keep-first")
    assert response.status_code == 302
    page = admin_client.get(CONFIRM).content.decode()
    assert "1 id appears in more than one list: one copy of each is kept (keep-first)" in page
    token = admin_client.session[statefile_views.SESSION_KEY]["token"]
    admin_client.post(CONFIRM, {"token": token})
    exported = json.loads(statefile.export_bytes())
    assert twin["id"] in {m["id"] for m in exported["messages"]["sent"]}
    assert twin["id"] not in {m["id"] for m in exported["messages"]["failed"]}


def test_cancel_drops_the_upload_and_changes_nothing(
    admin_client, sample_state, smaller_file, private_folders
):
    _post_file(admin_client, smaller_file)
    response = admin_client.post(CANCEL, follow=True)
    assert "Upload cancelled; nothing changed." in _texts(response)
    assert _uploads(private_folders) == []
    assert admin_client.get(CONFIRM).status_code == 302
    assert statefile.export_bytes() == sample_state


def test_a_confirmation_for_another_upload_changes_nothing(
    admin_client, sample_state, smaller_file
):
    _post_file(admin_client, smaller_file)
    admin_client.get(CONFIRM)
    response = admin_client.post(CONFIRM, {"token": "x" * 43}, follow=True)
    assert any("another upload" in t for t in _texts(response))
    assert statefile.export_bytes() == sample_state


def test_a_state_changed_since_the_page_was_shown_is_shown_again(
    admin_client, sample_state, smaller_file
):
    _post_file(admin_client, smaller_file)
    token = admin_client.get(CONFIRM).context["confirm_form"]["token"].value()
    make_reply(Status.PENDING_APPROVAL)  # a new draft arrives meanwhile
    response = admin_client.post(CONFIRM, {"token": token}, follow=True)
    assert any("check the counts again" in t for t in _texts(response))
    assert response.redirect_chain[-1][0] == CONFIRM
    pending_in_file = len(json.loads(sample_state)["messages"]["pending_approval"])
    assert statefile.current_counts()[Status.PENDING_APPROVAL] == pending_in_file + 1
    admin_client.post(CONFIRM, {"token": token})  # confirmed with the counts seen now
    assert statefile.export_bytes() == smaller_file


def test_a_changed_upload_file_is_not_imported(
    admin_client, sample_state, smaller_file, private_folders
):
    _post_file(admin_client, smaller_file)
    token = admin_client.get(CONFIRM).context["confirm_form"]["token"].value()
    (private_folders / "uploads" / f"{token}.json").write_bytes(b"{}")
    response = admin_client.post(CONFIRM, {"token": token}, follow=True)
    assert any("The uploaded file is gone" in t for t in _texts(response))
    assert statefile.export_bytes() == sample_state


# --- Who may ------------------------------------------------------------------------


@pytest.mark.parametrize("url", [DOWNLOAD, UPLOAD, CONFIRM])
def test_an_anonymous_visitor_is_sent_to_the_login(client, url):
    response = client.get(url)
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")


@pytest.mark.parametrize(
    ("staff", "perms"),
    [
        (False, ["import_state", "export_state"]),  # not staff
        (True, []),  # staff without the permissions
    ],
)
def test_only_staff_with_the_permission_may(client, sample_state, smaller_file, staff, perms):
    client.force_login(_user("someone", staff=staff, perms=perms))
    assert client.get(DOWNLOAD).status_code == 403
    assert client.get(UPLOAD).status_code == 403
    assert _post_file(client, smaller_file).status_code == 403
    assert client.post(CONFIRM, {"token": "x" * 43}).status_code == 403
    assert client.post(CANCEL).status_code == 403
    assert statefile.export_bytes() == sample_state


def test_exporting_does_not_allow_importing(client, smaller_file, sample_state):
    client.force_login(_user("reader", staff=True, perms=["export_state"]))
    assert client.get(DOWNLOAD).status_code == 200
    assert _post_file(client, smaller_file).status_code == 403


def test_every_post_needs_the_csrf_token(sample_state, smaller_file):
    client = Client(enforce_csrf_checks=True)
    client.force_login(_user("keeper2", staff=True, perms=["import_state"]))
    assert _post_file(client, smaller_file).status_code == 403
    assert client.post(CANCEL).status_code == 403
    assert statefile.export_bytes() == sample_state


def test_a_file_over_the_size_limit_is_refused(admin_client, sample_state, monkeypatch):
    monkeypatch.setattr(statefile_forms, "MAX_UPLOAD_BYTES", 100)
    response = _post_file(admin_client, sample_state)
    assert response.status_code == 200
    assert "the most accepted is 100." in response.content.decode()
    assert statefile_views.SESSION_KEY not in admin_client.session
