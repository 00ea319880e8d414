"""The ``fake_gateway`` fixture: the scripts' whatsapp-web.js service on 127.0.0.1, steered by tests.

Register it once in ``tests/conftest.py`` with
``pytest_plugins = ["tests.fake_gateway"]``. The server and all its knobs are
``statecore.whatsapp.standin_wwebjs.WwebjsStandin`` (the same stand-in a person
runs without the real service), started logged in and ready, so a test reads
like::

    def test_something(fake_gateway):
        fake_gateway.queue_send_modes("not_ready", "ok")
        ...  # point api_endpoint at fake_gateway.url
        assert [call.delivered for call in fake_gateway.sends] == [False, True]

Knobs. Session: ``show_qr(text=None)``, ``renew_qr()``, ``scan()``,
``go_not_ready()``, ``set_account(number, name, platform)``; read ``ready``
and ``qr``. Failures (``FAILURE_MODES``: "error500", "hang", "garbage", "drop",
or None to answer again): ``set_status_failure``, ``set_info_failure``,
``set_messages_failure``. Sends: ``set_send_mode(mode)`` with ``mode`` in
``SEND_MODES`` ("ok", "not_ready", "send_failed", "error500", "hang",
"garbage", "drop", "down"), ``queue_send_modes(*modes)``,
``send_failure_reason``, ``hang_seconds``. Inbound:
``add_customer_message(body, sender=..., name=..., ...)``. Records: ``sends``
(``SendCall``: number, message, chat_id, mode, message_id, delivered),
``delivered()``, ``calls()``, ``messages()``, ``processed_ids()``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from statecore.whatsapp.standin_wwebjs import FAILURE_MODES, SEND_MODES, SendCall, WwebjsStandin

__all__ = ["FAILURE_MODES", "SEND_MODES", "FakeGateway", "SendCall", "fake_gateway"]

# The name tests annotate with; the stand-in is the fake.
FakeGateway = WwebjsStandin


@pytest.fixture
def fake_gateway() -> Iterator[FakeGateway]:
    """A ready service on a free loopback port, stopped (hangs released) after the test."""
    gateway = FakeGateway(port=0).start()
    try:
        yield gateway
    finally:
        gateway.stop()
