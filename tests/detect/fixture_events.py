"""Events from the real distribution-2.8 capture, for the detection tests.

The notification files through the real notification parser, and the registry log through
the real log classifier (failed logins, catalog and tag listings, manifest 404s).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from monitor.events import (
    Event,
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


def shifted(events: list[Event], delta: timedelta) -> list[Event]:
    return [dataclasses.replace(e, occurred_at=e.occurred_at + delta) for e in events]
