"""The intake applier in a child process (the default): what it stores is counted in the
serving process's `/metrics`, and a child that dies is replaced without losing a body."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text

from monitor.main import build_services
from monitor.pipeline.applier_process import ApplierProcess
from monitor.runtime import Services
from tests.conftest import make_settings
from tests.ingest.test_notification import push_event

V1 = "application/vnd.docker.distribution.events.v1+json"


@pytest.fixture
def services(db_url: str, tmp_path: Path) -> Iterator[Services]:
    settings = make_settings(db_url, tmp_path, REGISTRY_MONITOR_NOTIFICATIONS_APPLIER="process")
    built = build_services(settings, registry=CollectorRegistry(), migrate=True)
    built.start()
    try:
        yield built
    finally:
        built.stop()
        built.engine.dispose()


def append(services: Services, *ids: str) -> None:
    async def run() -> None:
        for id_ in ids:
            body = json.dumps({"events": [push_event(id=id_, timestamp=_now())]}).encode()
            await services.inbox.append(body, V1, "127.0.0.1", datetime.now(UTC))

    asyncio.run(run())


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def stored(services: Services) -> list[str]:
    with services.engine.connect() as connection:
        rows = connection.execute(text("SELECT event_id FROM events ORDER BY event_id"))
        return [row[0] for row in rows]


def sample(services: Services, name: str, **labels: str) -> float:
    return services.metrics.registry.get_sample_value(name, labels) or 0.0


class TestChildProcess:
    def test_what_the_child_stores_is_counted_in_this_process(self, services: Services) -> None:
        """The events the child stored appear in this process's counters and histograms, as
        they would had this process stored them."""
        assert isinstance(services.applier, ApplierProcess)
        append(services, "child-1", "child-2", "child-3")
        assert services.applier.drain(30)
        assert 3 == len(stored(services))
        assert 3 == sample(
            services,
            "registry_monitor_events_total",
            source="notification",
            action="push",
            target_kind="manifest",
        )
        assert 3 == sample(services, "registry_monitor_intake_apply_delay_seconds_count")
        assert sample(services, "registry_monitor_store_commit_seconds_count") >= 1
        assert 0 == services.inbox.backlog()

    def test_a_child_that_dies_is_replaced_and_applies_what_waits(self, services: Services) -> None:
        """Killed, the child is started again; bodies appended meanwhile are applied once, and
        the death is counted as a store error of the applier."""
        assert isinstance(services.applier, ApplierProcess)
        append(services, "before-1")
        assert services.applier.drain(30)
        first = services.applier.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        append(services, "after-1", "after-2")
        assert services.applier.drain(60)
        assert ["after-1", "after-2", "before-1"] == stored(services)
        assert services.applier.pid not in (None, first)
        assert 1 == sample(services, "registry_monitor_store_errors_total", operation="apply")
