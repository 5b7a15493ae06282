"""The per-rule hourly Slack budget; pure.

Within one clock hour (UTC) a rule may put at most `budget` messages into Slack. Beyond that,
alerts are suppressed into a digest; once the hour has ended, one digest per rule lists them.
Updating an existing message (a resolve through `chat.update`) costs nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from monitor.alerts import Alert, Digest
from monitor.events import utc

HOUR = timedelta(hours=1)


@dataclasses.dataclass(frozen=True, slots=True)
class Budget:
    """Messages per rule per hour: `per_hour` unless `per_rule` names the rule."""

    per_hour: int = 20
    per_rule: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.per_hour < 0 or any(v < 0 for v in self.per_rule.values()):
            raise ValueError("a budget cannot be negative")

    def for_rule(self, rule: str) -> int:
        return self.per_rule.get(rule, self.per_hour)


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """Whether to send now; when not, the hour whose digest will carry the alert."""

    send: bool
    window_start: datetime
    window_end: datetime
    remaining: int


@dataclasses.dataclass(frozen=True, slots=True)
class Suppressed:
    """An alert held back in the hour starting at `window_start`."""

    alert: Alert
    window_start: datetime


def hour_window(now: datetime) -> tuple[datetime, datetime]:
    """The clock hour [start, end) in UTC that contains `now`."""
    start = utc(now).replace(minute=0, second=0, microsecond=0)
    return start, start + HOUR


def decide(sent_at: Iterable[datetime], now: datetime, budget: int) -> Decision:
    """Send or suppress, given when this rule's messages were sent (any hour) and `now`."""
    start, end = hour_window(now)
    used = sum(1 for at in sent_at if start <= utc(at) < end)
    remaining = max(budget - used, 0)
    return Decision(send=remaining > 0, window_start=start, window_end=end, remaining=remaining)


def plan_digests(suppressed: Sequence[Suppressed], now: datetime) -> list[Digest]:
    """One digest per (rule, hour) whose hour has ended by `now`, oldest first.

    Alerts of an hour still running are left for a later call; the caller marks the alerts
    of each returned digest as digested so they are not listed twice.
    """
    groups: dict[tuple[str, datetime], list[Alert]] = {}
    for item in suppressed:
        start, end = hour_window(item.window_start)
        if end <= utc(now):
            groups.setdefault((item.alert.rule, start), []).append(item.alert)
    return [
        Digest(rule=rule, window_start=start, window_end=start + HOUR, alerts=tuple(alerts))
        for (rule, start), alerts in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]
