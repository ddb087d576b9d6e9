"""Fixtures for the ingest's tests: a fake coordinator (a real HTTP server on loopback that
records what it receives) and the ingest itself as a real process (Debian's nginx-rtmp)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ingest import (
    KEY,
    SECRET,
    STREAM,
    FakeCoordinator,
    IngestProcess,
    run_fake_coordinator,
    run_ingest,
)


@pytest.fixture
def fake_coordinator() -> Iterator[FakeCoordinator]:
    with run_fake_coordinator(SECRET, keys={KEY: STREAM}, streams={STREAM}) as fake:
        yield fake


@pytest.fixture
def ingest(fake_coordinator: FakeCoordinator, tmp_path) -> Iterator[IngestProcess]:
    with run_ingest(
        fake_coordinator.url, SECRET, tmp_path / "data", reconcile_interval_s=0.5
    ) as process:
        yield process
