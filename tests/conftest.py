"""Servers shared by the whole test session: each starts once, on first use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.firebase_emulator import AuthEmulator, start_auth_emulator


@pytest.fixture(scope="session")
def auth_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthEmulator]:
    emulator = start_auth_emulator(tmp_path_factory.mktemp("firebase"))
    try:
        yield emulator
    finally:
        emulator.stop()
