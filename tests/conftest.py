from __future__ import annotations

from pathlib import Path

import pytest

from statecore import statefile
from statecore.models import Source

pytest_plugins = [
    "tests.fake_gateway",
    "tests.fake_waha",
    "tests.fake_evolution",
    "tests.fake_cloud",
]

SAMPLE = (
    Path(__file__).resolve().parent.parent / "statecore" / "fixtures" / "whatsapp_state.sample.json"
)
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def sample_bytes() -> bytes:
    return SAMPLE.read_bytes()


@pytest.fixture
def sample_state(db, sample_bytes):
    """The real sample file, imported."""
    statefile.import_bytes(sample_bytes, actor="test", source=Source.COMMAND)
    return sample_bytes
