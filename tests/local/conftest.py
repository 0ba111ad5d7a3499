"""Fixtures of the embedded server's tests: the engine and the server around the one model of the test run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from live_stt_kernel.local.engine import Engine
from live_stt_kernel.local.server import LocalServer


@pytest.fixture(scope="module")
def engine(whisper) -> Iterator[Engine]:
    """An engine over the test run's model, for one test module (its decode slots are that module's alone)."""
    running = Engine(whisper)
    yield running
    running.close()


@pytest.fixture(scope="module")
def server(whisper) -> Iterator[LocalServer]:
    """A server over the test run's model, for one test module (its sessions and limits are that module's alone)."""
    with LocalServer(whisper) as running:
        yield running
