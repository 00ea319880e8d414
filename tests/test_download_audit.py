"""A download of the whole state is audited (issue 12, "Audit"): who, when, how
many bytes, never what they held."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from statecore import clock
from statecore.models import AuditEvent, Source

DOWNLOAD = reverse("approvals:state-download")


def _login(client, name: str, perms: list[str]) -> None:
    user = User.objects.create_user(name, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=perms))
    client.force_login(user)


def test_a_download_writes_one_audit_event_with_its_size(client, sample_state):
    _login(client, "keeper", ["export_state"])
    before = clock.now()
    response = client.get(DOWNLOAD)
    assert response.status_code == 200
    event = AuditEvent.objects.get(action="state_download")
    assert (event.actor, event.source, event.message_id) == ("keeper", Source.WEB, "")
    assert event.detail == {"bytes": len(response.content)}
    assert before <= event.created_at <= clock.now()
    # Not a byte of what was downloaded: the record of who took every customer's data.
    written = event.note + json.dumps(event.detail)
    for message in json.loads(sample_state)["messages"]["incoming"]:
        assert message["from"].split("@")[0] not in written
        assert message["id"] not in written


@pytest.mark.parametrize("perms", [[], ["import_state"]])
def test_a_refused_download_writes_no_event(client, sample_state, perms):
    _login(client, "viewer", perms)
    assert client.get(DOWNLOAD).status_code == 403
    assert not AuditEvent.objects.filter(action="state_download").exists()
