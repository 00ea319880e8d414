"""The ``fake_gateway`` fixture: a real HTTP gateway on 127.0.0.1 that tests steer.

Register it once in ``tests/conftest.py`` with
``pytest_plugins = ["tests.fake_gateway"]``. The server and all its knobs are
``statecore.standin_gateway.StandinGateway`` (the same stand-in ``make run``
uses), so a test reads like::

    def test_something(fake_gateway):
        fake_gateway.queue_send_modes("refuse", "ok")
        ...  # point api_endpoint at fake_gateway.url
        assert fake_gateway.send_counts()["key-1"] == 2

Knobs: ``set_send_mode(mode)`` with ``mode`` in ``SEND_MODES`` ("ok", "refuse",
"error500", "hang", "garbage", "drop", "down"), ``queue_send_modes(*modes)``,
``refuse_error``, ``set_status(True | False | failure)``,
``set_info(dict | failure)``, ``hang_seconds``. Records: ``sends`` (number,
message, idempotency_key, mode) and ``send_counts()``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from statecore.standin_gateway import FAILURE_MODES, SEND_MODES, SendCall, StandinGateway

__all__ = ["FAILURE_MODES", "SEND_MODES", "FakeGateway", "SendCall", "fake_gateway"]

# The name tests annotate with; the stand-in is the fake.
FakeGateway = StandinGateway


@pytest.fixture
def fake_gateway() -> Iterator[FakeGateway]:
    """A healthy gateway on a free loopback port, stopped (hangs released) after the test."""
    gateway = FakeGateway(port=0).start()
    try:
        yield gateway
    finally:
        gateway.stop()
