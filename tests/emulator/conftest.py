"""Fixtures for the emulator tests: a seeded lead and a served emulator per test."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from lsq_emulator import Emulator, run_emulator
from tests.emulator.emulator_support import OTHER_LEAD_ID, config, make_lead


@pytest.fixture
def lead() -> dict[str, Any]:
    return make_lead()


@pytest.fixture
def emu(lead: dict[str, Any]) -> Iterator[Emulator]:
    """A served emulator holding two leads, no rate limit to speak of, no faults."""
    with run_emulator(config(), leads=[lead, make_lead(OTHER_LEAD_ID)]) as served:
        yield served


@pytest.fixture
def leads_unchanged(emu: Emulator) -> Iterator[None]:
    """Asserts after the test that no lead changed."""
    before = copy.deepcopy(emu.leads())
    yield
    assert emu.leads() == before
