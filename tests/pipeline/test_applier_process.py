"""The intake applier in a child process (the default): what it stores is counted in the
serving process's `/metrics`, and a child that dies is replaced without losing a body."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from monitor.pipeline.applier_process import ApplierProcess
from monitor.runtime import Services
from monitor.settings import Settings
from tests.conftest import make_settings
from tests.store.test_inbox import append, body, event_ids


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path, REGISTRY_MONITOR_NOTIFICATIONS_APPLIER="process")


def sample(services: Services, name: str, **labels: str) -> float:
    return services.metrics.registry.get_sample_value(name, labels) or 0.0


class TestChildProcess:
    def test_what_the_child_stores_is_counted_in_this_process(self, services: Services) -> None:
        """The events the child stored appear in this process's counters and histograms, as
        they would had this process stored them."""
        assert isinstance(services.applier, ApplierProcess)
        append(services, body(1), body(2), body(3))
        assert services.applier.drain(30)
        assert ["inbox-1", "inbox-2", "inbox-3"] == event_ids(services)
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
        append(services, body(1))
        assert services.applier.drain(30)
        first = services.applier.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        append(services, body(2), body(3))
        assert services.applier.drain(60)
        assert ["inbox-1", "inbox-2", "inbox-3"] == event_ids(services)
        assert services.applier.pid not in (None, first)
        assert 1 == sample(services, "registry_monitor_store_errors_total", operation="apply")
