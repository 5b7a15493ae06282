"""The intake applier in a child process (the default): what it stores is counted in the
serving process's `/metrics`, and a child that dies is replaced without losing a body."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import httpx
import pytest

from monitor.pipeline.applier_process import ApplierProcess
from monitor.runtime import Services
from monitor.settings import Settings
from tests.conftest import make_settings
from tests.harness import TOKEN, MonitorProcess, running_monitor, wait_until
from tests.store.test_inbox import V1, append, body, event_ids


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


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if parent_of(int(entry.name)) == pid:
                    found.append(int(entry.name))
    return found


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def post_notification(monitor: MonitorProcess, n: int) -> None:
    response = httpx.post(
        f"{monitor.url}/v1/notifications",
        content=body(n),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": V1},
        timeout=10,
    )
    assert 200 == response.status_code


class TestServe:
    def test_the_first_child_is_forked_then_fresh_interpreters_replace_it(
        self, db_url: str, tmp_path: Path
    ) -> None:
        """`serve` forks its applier's first child at start-up (it shares `serve`'s loaded
        modules: same command line, no interpreter of its own); one that replaces it after it
        died is a fresh interpreter. Bodies are applied by both. (Reads on threads here: the
        read process is `serve`'s other child, tests/api/test_read_process.py.)"""
        with running_monitor(tmp_path, db_url, REGISTRY_MONITOR_HTTP_READS="thread") as monitor:
            assert monitor.process is not None
            serve = monitor.process.pid
            (first,) = children_of(serve)
            assert (
                Path(f"/proc/{first}/cmdline").read_bytes()
                == Path(f"/proc/{serve}/cmdline").read_bytes()
            )
            post_notification(monitor, 1)
            wait_until(lambda: len(monitor.all_events()) == 1, timeout=30, what="first applied")
            os.kill(first, signal.SIGKILL)
            wait_until(
                lambda: children_of(serve) not in ([], [first]), timeout=30, what="a new child"
            )
            (second,) = children_of(serve)
            assert b"monitor.pipeline.applier_child" in Path(f"/proc/{second}/cmdline").read_bytes()
            post_notification(monitor, 2)
            wait_until(lambda: len(monitor.all_events()) == 2, timeout=30, what="second applied")
