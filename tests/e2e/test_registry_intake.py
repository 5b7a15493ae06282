"""End to end with the real registry and skopeo: what the registry sent is what is stored.

The registry gets two endpoints: registry-monitor, and a capture server that records every
body it is sent. The capture is the truth the monitor's store is compared with.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.ingest.notification import parse_envelope
from tests.conftest import PostgresDatabases, SqliteWriteLock
from tests.harness import (
    NOTIFIED_FIELDS,
    TOKEN,
    USERS,
    Capture,
    Images,
    MonitorProcess,
    build_images,
    capture_server,
    end_marker,
    endpoint,
    notifying_registry_config,
    pull,
    push,
    running_monitor,
    wait_until,
)
from tests.registry_harness import RegistryHandle as Registry
from tests.registry_harness import registry_binary, running_registry

COMPARED = (*NOTIFIED_FIELDS, "references")


def expected_events(capture: Capture) -> dict[str, dict[str, Any]]:
    """The registry's events, normalized, keyed by id (the registry may send one twice)."""
    out: dict[str, dict[str, Any]] = {}
    for body in list(capture.bodies):
        for event in parse_envelope(body, "application/json").events:
            data = event.to_dict()
            out[event.event_id] = {k: data[k] for k in COMPARED}
    return out


def stored_events(monitor: MonitorProcess) -> list[dict[str, Any]]:
    return [{k: e[k] for k in COMPARED} for e in monitor.all_events()]


def assert_same(
    capture: Capture, monitor: MonitorProcess, registry: Registry, reference: str
) -> list[dict[str, Any]]:
    """Every event the registry sent, up to a HEAD of `reference` made now, is stored once,
    field for field."""
    repository, tag = reference.split(":")
    marker = end_marker(registry.url, repository, tag)
    wait_until(
        lambda: any(e["user_agent"] == marker for e in expected_events(capture).values()),
        timeout=60,
        what="the marker's event at the capture",
    )

    def settled() -> bool:
        return set(expected_events(capture)) == {e["event_id"] for e in monitor.all_events()}

    wait_until(settled, timeout=60, what="the monitor to store every event the registry sent")
    stored = stored_events(monitor)
    ids = Counter(e["event_id"] for e in stored)
    assert [] == [i for i, n in ids.items() if n > 1]
    assert expected_events(capture) == {e["event_id"]: e for e in stored}
    return stored


@pytest.fixture
def layout(tmp_path: Path) -> Images:
    return build_images(tmp_path / "oci", salt=tmp_path.name)


@pytest.fixture
def stack(
    tmp_path: Path, db_url: str, registry_version: str
) -> Iterator[tuple[Registry, MonitorProcess, Capture]]:
    with (
        running_monitor(
            tmp_path, db_url, REGISTRY_MONITOR_DATABASE_SQLITE_BUSY_TIMEOUT_SECONDS="0.5"
        ) as monitor,
        capture_server() as capture,
    ):
        config = notifying_registry_config(
            tmp_path / "registry",
            endpoints=[
                endpoint("monitor", f"{monitor.url}/v1/notifications", token=TOKEN),
                endpoint("capture", capture.url),
            ],
        )
        with running_registry(
            directory=tmp_path / "registry",
            config=config,
            binary=registry_binary(registry_version),
        ) as registry:
            yield registry, monitor, capture


def delete_manifest(registry: Registry, repository: str, digest: str) -> None:
    response = httpx.delete(
        f"{registry.url}/v2/{repository}/manifests/{digest}", auth=("alice", USERS["alice"])
    )
    assert 202 == response.status_code, response.text


class TestRealRegistry:
    def test_pushes_pulls_index_and_delete_are_stored_as_sent(
        self, stack: tuple[Registry, MonitorProcess, Capture], layout: Images, tmp_path: Path
    ) -> None:
        """Pushes, a two-tag digest, an OCI index, pulls by tag and digest, a delete: all stored."""
        registry, monitor, capture = stack
        host = registry.host
        push(layout, "hello", f"{host}/library/hello:1.0")
        push(layout, "hello", f"{host}/library/hello:latest")
        push(layout, "app", f"{host}/team/app:v1", extra=("--format", "v2s2"))
        push(layout, "multi", f"{host}/team/app:multi", extra=("--all",))
        pull(f"{host}/library/hello:1.0", tmp_path / "pull-tag")
        digest = httpx.head(
            f"{registry.url}/v2/team/app/manifests/v1",
            auth=("bob", USERS["bob"]),
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        ).headers["docker-content-digest"]
        pull(f"{host}/team/app@{digest}", tmp_path / "pull-digest")
        delete_manifest(registry, "library/hello", layout.digests["hello"])

        stored = assert_same(capture, monitor, registry, "team/app:v1")
        kinds = Counter((e["action"], e["target_kind"]) for e in stored)
        assert kinds[("delete", "tag")] == 2
        assert kinds[("delete", "manifest")] == 1
        assert any(
            e["tag"] is None and e["digest"] == digest for e in stored if e["action"] == "pull"
        )

        tags = {(t["repository"], t["tag"]): t for t in monitor.get("/v1/tags").json()["items"]}
        assert {
            ("library/hello", "1.0"),
            ("library/hello", "latest"),
            ("team/app", "v1"),
            ("team/app", "multi"),
        } == set(tags)
        assert tags[("library/hello", "1.0")]["deleted_at"] is not None
        assert tags[("library/hello", "latest")]["deleted_at"] is not None
        assert tags[("team/app", "multi")]["digest"] == layout.digests["multi"]
        assert tags[("team/app", "v1")]["pull_count"] >= 2  # the HEAD above and the pull by digest


class TestFaults:
    def test_events_sent_while_the_monitor_is_down_arrive_once(
        self, stack: tuple[Registry, MonitorProcess, Capture], layout: Images
    ) -> None:
        """Stopped while images are pushed, started again: the registry's retries deliver all."""
        registry, monitor, capture = stack
        push(layout, "hello", f"{registry.host}/library/hello:1.0")
        assert_same(capture, monitor, registry, "library/hello:1.0")
        monitor.stop()
        push(layout, "app", f"{registry.host}/team/app:v1", extra=("--format", "v2s2"))
        push(layout, "multi", f"{registry.host}/team/app:multi", extra=("--all",))
        wait_until(
            lambda: len(expected_events(capture)) >= 3 + 4 + 7,
            timeout=30,
            what="the pushes' events",
        )
        monitor.start()
        stored = assert_same(capture, monitor, registry, "team/app:multi")
        assert len(stored) >= 14

    def test_events_sent_while_the_store_is_down_are_kept_and_stored_once(
        self,
        stack: tuple[Registry, MonitorProcess, Capture],
        layout: Images,
        db_url: str,
        request: pytest.FixtureRequest,
    ) -> None:
        """While the store cannot commit, intake answers 503; afterwards everything is stored."""
        registry, monitor, capture = stack
        push(layout, "hello", f"{registry.host}/library/hello:1.0")
        assert_same(capture, monitor, registry, "library/hello:1.0")
        outage = StoreOutage(db_url, request)
        outage.start()
        try:
            push(layout, "app", f"{registry.host}/team/app:v1", extra=("--format", "v2s2"))
            wait_until(
                lambda: (
                    'registry_monitor_intake_requests_total{code="503"}'
                    in monitor.get("/metrics").text
                ),
                timeout=30,
                what="intake to answer 503",
            )
        finally:
            outage.end()
        assert_same(capture, monitor, registry, "team/app:v1")


class StoreOutage:
    """SQLite: another process holds the write lock. PostgreSQL: the server refuses us."""

    def __init__(self, db_url: str, request: pytest.FixtureRequest) -> None:
        self.db_url = db_url
        self.request = request
        self.lock: SqliteWriteLock | None = None

    def start(self) -> None:
        if self.db_url.startswith("sqlite"):
            self.lock = SqliteWriteLock(self.db_url)
        else:
            postgres: PostgresDatabases = self.request.getfixturevalue("postgres")
            postgres.set_allow_connections(self.db_url, False)

    def end(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        else:
            postgres: PostgresDatabases = self.request.getfixturevalue("postgres")
            postgres.set_allow_connections(self.db_url, True)
