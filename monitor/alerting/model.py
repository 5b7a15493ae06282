"""The alert as detection produces it and delivery consumes it; no I/O.

An `Alert` is identified by its `fingerprint` (rule + group key). Every timestamp is aware UTC.
`Digest` gathers the alerts of one rule that the hourly budget kept out of Slack.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from monitor.errors import ParseError
from monitor.events import parse_timestamp, utc


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertState(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


def _frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping))


@dataclasses.dataclass(frozen=True, slots=True)
class Evidence:
    """Which events an alert rests on: their ids and a few sample rows (field -> value)."""

    event_ids: tuple[str, ...] = ()
    rows: tuple[Mapping[str, str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "event_ids", tuple(self.event_ids))
        object.__setattr__(self, "rows", tuple(_frozen(row) for row in self.rows))


@dataclasses.dataclass(frozen=True, slots=True)
class Alert:
    """One finding of a detection rule, grouped by `fingerprint`, as it stands at `last_seen_at`."""

    rule: str
    severity: Severity
    fingerprint: str
    subject: Mapping[str, str]
    summary: str
    evidence: Evidence
    first_seen_at: datetime
    last_seen_at: datetime
    count: int = 1
    state: AlertState = AlertState.FIRING

    def __post_init__(self) -> None:
        object.__setattr__(self, "subject", _frozen(self.subject))
        object.__setattr__(self, "first_seen_at", utc(self.first_seen_at))
        object.__setattr__(self, "last_seen_at", utc(self.last_seen_at))
        if self.count < 1:
            raise ValueError(f"count must be at least 1, got {self.count}")
        if self.last_seen_at < self.first_seen_at:
            raise ValueError("last_seen_at is before first_seen_at")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (enums as values, times as RFC 3339), for storage."""
        return {
            "rule": self.rule,
            "severity": self.severity.value,
            "fingerprint": self.fingerprint,
            "subject": dict(self.subject),
            "summary": self.summary,
            "evidence": {
                "event_ids": list(self.evidence.event_ids),
                "rows": [dict(row) for row in self.evidence.rows],
            },
            "first_seen_at": _rfc3339(self.first_seen_at),
            "last_seen_at": _rfc3339(self.last_seen_at),
            "count": self.count,
            "state": self.state.value,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        """The inverse of `to_dict`; raises ParseError on anything malformed."""
        try:
            evidence = data.get("evidence") or {}
            return cls(
                rule=_text(data["rule"]),
                severity=Severity(data["severity"]),
                fingerprint=_text(data["fingerprint"]),
                subject={_text(k): _text(v) for k, v in dict(data.get("subject") or {}).items()},
                summary=_text(data.get("summary", "")),
                evidence=Evidence(
                    event_ids=tuple(_text(i) for i in evidence.get("event_ids", ())),
                    rows=tuple(
                        {_text(k): _text(v) for k, v in dict(row).items()}
                        for row in evidence.get("rows", ())
                    ),
                ),
                first_seen_at=parse_timestamp(_text(data["first_seen_at"])),
                last_seen_at=parse_timestamp(_text(data["last_seen_at"])),
                count=int(data.get("count", 1)),
                state=AlertState(data.get("state", AlertState.FIRING.value)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ParseError("invalid_alert", f"not a stored alert: {exc}") from exc


@dataclasses.dataclass(frozen=True, slots=True)
class Digest:
    """The alerts of `rule` suppressed by the budget in the hour [window_start, window_end)."""

    rule: str
    window_start: datetime
    window_end: datetime
    alerts: tuple[Alert, ...]

    @property
    def fingerprint(self) -> str:
        return f"digest:{self.rule}:{_rfc3339(self.window_start)}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, for storage."""
        return {
            "rule": self.rule,
            "window_start": _rfc3339(self.window_start),
            "window_end": _rfc3339(self.window_end),
            "alerts": [alert.to_dict() for alert in self.alerts],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Digest:
        """The inverse of `to_dict`; raises ParseError on anything malformed."""
        try:
            return cls(
                rule=_text(data["rule"]),
                window_start=parse_timestamp(_text(data["window_start"])),
                window_end=parse_timestamp(_text(data["window_end"])),
                alerts=tuple(Alert.from_dict(item) for item in data["alerts"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ParseError("invalid_digest", f"not a stored digest: {exc}") from exc


def _rfc3339(value: datetime) -> str:
    return utc(value).isoformat().replace("+00:00", "Z")


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value
