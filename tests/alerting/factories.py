"""Plain factories for alerting tests, and the real captures they draw values from."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monitor.alerts import Alert, AlertState, Evidence, Severity
from tests.paths import fixture_file

T0 = datetime(2026, 11, 27, 4, 52, 6, tzinfo=UTC)


def fixture_path(*parts: str) -> Path:
    """A path inside the 2.8 capture; fails loudly when it is not there."""
    return fixture_file(*parts)


def subject_of(event: dict[str, Any]) -> dict[str, str]:
    """The client-controlled values of a captured event, as an alert subject."""
    target, request = event.get("target", {}), event.get("request", {})
    subject = {
        "repository": target.get("repository"),
        "tag": target.get("tag"),
        "user": event.get("actor", {}).get("name"),
        "remote_addr": request.get("addr"),
        "user_agent": request.get("useragent"),
    }
    return {key: str(value) for key, value in subject.items() if value}


def make_alert(**overrides: Any) -> Alert:
    """An alert with sensible defaults; any field can be overridden."""
    fields: dict[str, Any] = {
        "rule": "auth_brute_force",
        "severity": Severity.WARNING,
        "fingerprint": "auth_brute_force:127.0.0.1",
        "subject": {"remote_ip": "127.0.0.1", "user": "mallory"},
        "summary": "3 failed logins for mallory from 127.0.0.1 in 10 minutes",
        "evidence": Evidence(
            event_ids=("1bbb6b22-99e8-4dda-a20c-4ef7b851e06d",),
            rows=({"user": "mallory", "user_agent": "skopeo/1.9.3"},),
        ),
        "first_seen_at": T0,
        "last_seen_at": T0,
        "count": 1,
        "state": AlertState.FIRING,
    }
    fields.update(overrides)
    return Alert(**fields)
