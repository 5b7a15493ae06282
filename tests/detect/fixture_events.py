"""Events from the real distribution-2.8 capture, for the detection tests.

The notification files through the real notification parser, and the registry log through
the real log classifier (failed logins, catalog and tag listings, manifest 404s).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.events import (
    Action,
    Client,
    Event,
    Source,
    TargetKind,
    classify_client,
)
from monitor.ingest.logclassify import LogClassifier
from tests.fixture_events import scenario_events as notification_scenario
from tests.paths import FIXTURES_31, fixture_file, fixtures


def notification_events(run: str = "notifications") -> list[Event]:
    """Every event of the capture's notification POSTs, in arrival order (the real parser)."""
    return notification_scenario(run)


def log_events() -> list[Event]:
    """Failed logins and enumeration-relevant requests from the text-run registry log, as the
    real log classifier reads them."""
    lines = (fixtures() / "registry-text.log").read_text(encoding="utf-8").splitlines()
    return LogClassifier().feed_many(lines)


def log_events_31() -> list[Event]:
    """The same from the distribution 3.1 capture: its unknown user's failures have no actor."""
    path = fixture_file("registry-text.log", capture=FIXTURES_31)
    return LogClassifier().feed_many(path.read_text(encoding="utf-8").splitlines())


def scenario_events() -> list[Event]:
    """The whole shared scenario: notifications and log-derived events, in time order."""
    return sorted(notification_events() + log_events(), key=lambda e: e.occurred_at)


BASE_TIME = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
"""A Wednesday, 10:00 UTC: inside default business hours."""

_counter = iter(range(10**9))


def make_event(**overrides: Any) -> Event:
    """A synthetic event: a docker manifest pull by alice from 127.0.0.1 unless overridden.

    `seconds` offsets `occurred_at` from BASE_TIME.
    """
    seconds = overrides.pop("seconds", 0)
    values: dict[str, Any] = {
        "event_id": f"synthetic-{next(_counter)}",
        "source": Source.NOTIFICATION,
        "action": Action.PULL,
        "occurred_at": BASE_TIME + timedelta(seconds=seconds),
        "target_kind": TargetKind.MANIFEST,
        "repository": "team/app",
        "digest": "sha256:" + "a" * 64,
        "media_type": "application/vnd.oci.image.manifest.v1+json",
        "size": 476,
        "actor": "alice",
        "remote_ip": "127.0.0.1",
        "user_agent": "docker/27.3.1 go/go1.22.7 os/linux arch/amd64",
        "http_method": "GET",
        "client": Client.DOCKER,
    }
    values.update(overrides)
    if "user_agent" in overrides and "client" not in overrides:
        values["client"] = classify_client(values["user_agent"])
    return Event(**values)


def shifted(events: list[Event], delta: timedelta) -> list[Event]:
    return [dataclasses.replace(e, occurred_at=e.occurred_at + delta) for e in events]
