"""Fixtures of the pipeline tests: a hand-moved clock and running services on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.runtime import Services
from tests.pipeline.support import Clock, start_services, stop_services


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def live(db_url: str, tmp_path: Path, clock: Clock) -> Iterator[Services]:
    services = start_services(db_url, tmp_path, clock)
    try:
        yield services
    finally:
        stop_services(services)
