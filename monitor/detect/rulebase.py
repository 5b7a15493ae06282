"""What every rule shares: its calling convention, event predicates and group keys.

A rule is a pure function `(event, state, at, context) -> list[Hit]`: `at` is the event's
time (never later than the detector's `now`), `state` is the detector state the rule may
update, `context` carries the rule's configuration, the roles and the business hours.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta

from monitor.detect.config import BusinessHours, RuleConfig
from monitor.detect.findings import Group, Hit
from monitor.detect.roles import Roles
from monitor.detect.state import DetectorState
from monitor.events import Action, Event, Source, TargetKind

WINDOW_CAP = 256
"""Most occurrences (or distinct values) a window keeps per group, above any threshold."""

WRITE_ACTIONS = frozenset({Action.PUSH, Action.DELETE, Action.MOUNT})
SUCCESS_ACTIONS = frozenset({Action.PUSH, Action.PULL, Action.MOUNT, Action.DELETE})
MISSING = "-"


@dataclasses.dataclass(frozen=True)
class RuleContext:
    config: RuleConfig
    roles: Roles
    hours: BusinessHours

    @property
    def cap(self) -> int:
        return max(self.config.threshold, WINDOW_CAP)


RuleFunction = Callable[[Event, DetectorState, datetime, RuleContext], list[Hit]]


ALL_ACTIONS = frozenset(Action)


@dataclasses.dataclass(frozen=True)
class RuleSpec:
    """A rule and how the engine calls it.

    `actions`: the actions of the events the rule looks at; it returns no hit and leaves the
    state untouched for any other, so the engine does not call it for them.
    `sees_allowed`: the rule also sees allow-listed events (to keep its state true) and
    the engine drops its hits for them.
    """

    name: str
    evaluate: RuleFunction
    actions: frozenset[Action] = ALL_ACTIONS
    sees_allowed: bool = False


EVENT_FIELDS = (
    "event_id",
    "source",
    "action",
    "occurred_at",
    "target_kind",
    "repository",
    "tag",
    "digest",
    "size",
    "actor",
    "remote_ip",
    "http_method",
    "http_status",
    "request_uri",
    "client",
    "route",
)
"""The event fields that rules, allow-lists, roles and groups read: detection loads only these
from the store (the others keep their defaults)."""


def group_of(event: Event, fields: tuple[str, ...], *, required: bool) -> Group | None:
    """(field, value) pairs of `event`; None when a field is empty and `required`."""
    pairs: list[tuple[str, str]] = []
    for field in fields:
        value = getattr(event, field)
        if value is None or value == "":
            if required:
                return None
            value = MISSING
        pairs.append((field, str(value)))
    return tuple(pairs)


def describe(group: Group) -> str:
    return ", ".join(f"{field} {value}" for field, value in group)


def is_notification_success(event: Event) -> bool:
    return event.source is Source.NOTIFICATION and event.action in SUCCESS_ACTIONS


def is_manifest(event: Event) -> bool:
    return event.target_kind is TargetKind.MANIFEST


def human_span(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
