"""The alert model: what detection produces, the store keeps and delivery renders; no I/O.

An `Alert` is identified by its `fingerprint` (rule + group key). Detection fills the incident
fields (`repeat` says the occurrence was counted onto an incident that already fired inside
the cooldown); the store adds its row `id`, the `state` and `resolved_at`; the outbox attaches
a few sample event rows to the `evidence` before delivery. Every timestamp is aware UTC.
`Digest` gathers the alerts of one rule that the hourly budget kept out of Slack.

`to_dict` gives every field as JSON (times in RFC 3339); `from_dict` is its inverse. The
public answers pick their fields from it: `LISTED_FIELDS` (`GET /v1/alerts`, `alerts --json`)
and `FOUND_FIELDS` (`detect replay --json`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from monitor.errors import ParseError
from monitor.events import format_timestamp, parse_timestamp, utc


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class Mode(StrEnum):
    """How a rule's alerts are handled: sent, stored only (shadow), or the rule does not run."""

    ALERT = "alert"
    SHADOW = "shadow"
    OFF = "off"


class AlertState(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


LISTED_FIELDS = (
    "id",
    "fingerprint",
    "rule",
    "severity",
    "mode",
    "subject",
    "summary",
    "evidence",
    "first_seen_at",
    "last_seen_at",
    "count",
    "state",
    "resolved_at",
)
"""The fields of a stored alert in `GET /v1/alerts` and `registry-monitor alerts --json`."""

FOUND_FIELDS = (
    "rule",
    "severity",
    "mode",
    "fingerprint",
    "subject",
    "summary",
    "evidence",
    "first_seen_at",
    "last_seen_at",
    "count",
    "repeat",
)
"""The fields of an alert found by `registry-monitor detect replay --json`."""


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
    """One incident of a rule, grouped by `fingerprint`, as it stands at `last_seen_at`."""

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
    mode: Mode = Mode.ALERT
    repeat: bool = False
    id: int | None = None
    resolved_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "subject", _frozen(self.subject))
        object.__setattr__(self, "first_seen_at", utc(self.first_seen_at))
        object.__setattr__(self, "last_seen_at", utc(self.last_seen_at))
        if self.resolved_at is not None:
            object.__setattr__(self, "resolved_at", utc(self.resolved_at))
        if self.count < 1:
            raise ValueError(f"count must be at least 1, got {self.count}")
        if self.last_seen_at < self.first_seen_at:
            raise ValueError("last_seen_at is before first_seen_at")

    @property
    def shadow(self) -> bool:
        """Stored but not sent."""
        return self.mode is Mode.SHADOW

    def with_rows(self, rows: Sequence[Mapping[str, str]]) -> Alert:
        """This alert with `rows` as the sample rows of its evidence."""
        evidence = Evidence(event_ids=self.evidence.event_ids, rows=tuple(rows))
        return dataclasses.replace(self, evidence=evidence)

    def to_dict(self, fields: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-ready fields (enums as values, times as RFC 3339): all, or `fields` in order."""
        data: dict[str, Any] = {
            "id": self.id,
            "fingerprint": self.fingerprint,
            "rule": self.rule,
            "severity": self.severity.value,
            "mode": self.mode.value,
            "subject": dict(self.subject),
            "summary": self.summary,
            "evidence": list(self.evidence.event_ids),
            "evidence_rows": [dict(row) for row in self.evidence.rows],
            "first_seen_at": format_timestamp(self.first_seen_at),
            "last_seen_at": format_timestamp(self.last_seen_at),
            "count": self.count,
            "state": self.state.value,
            "resolved_at": format_timestamp(self.resolved_at)
            if self.resolved_at is not None
            else None,
            "repeat": self.repeat,
        }
        if fields is None:
            return data
        return {name: data[name] for name in fields}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        """The inverse of `to_dict()`; raises ParseError on anything malformed.

        Also reads the older outbox form, where `evidence` was `{"event_ids", "rows"}` and
        `mode`, `repeat`, `id` and `resolved_at` were absent.
        """
        try:
            evidence = data.get("evidence") or ()
            if isinstance(evidence, Mapping):
                event_ids, rows = evidence.get("event_ids", ()), evidence.get("rows", ())
            else:
                event_ids, rows = evidence, data.get("evidence_rows") or ()
            resolved_at = data.get("resolved_at")
            row_id = data.get("id")
            return cls(
                rule=_text(data["rule"]),
                severity=Severity(data["severity"]),
                fingerprint=_text(data["fingerprint"]),
                subject={_text(k): _text(v) for k, v in dict(data.get("subject") or {}).items()},
                summary=_text(data.get("summary", "")),
                evidence=Evidence(
                    event_ids=tuple(_text(i) for i in event_ids),
                    rows=tuple({_text(k): _text(v) for k, v in dict(row).items()} for row in rows),
                ),
                first_seen_at=parse_timestamp(_text(data["first_seen_at"])),
                last_seen_at=parse_timestamp(_text(data["last_seen_at"])),
                count=int(data.get("count", 1)),
                state=AlertState(data.get("state", AlertState.FIRING.value)),
                mode=Mode(data.get("mode", Mode.ALERT.value)),
                repeat=_flag(data.get("repeat", False)),
                id=None if row_id is None else _integer(row_id),
                resolved_at=None if resolved_at is None else parse_timestamp(_text(resolved_at)),
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
        return f"digest:{self.rule}:{format_timestamp(self.window_start)}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, for storage."""
        return {
            "rule": self.rule,
            "window_start": format_timestamp(self.window_start),
            "window_end": format_timestamp(self.window_end),
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


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected a boolean, got {type(value).__name__}")
    return value


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value
