"""Running one rule over events, for the table-driven rule tests."""

from __future__ import annotations

from typing import Any

from monitor.detect.config import parse_detect_config
from monitor.detect.engine import Detector, replay
from monitor.detect.roles import Roles
from monitor.events import Event


def run_rule(
    rule: str,
    events: list[Event],
    options: dict[str, Any] | None = None,
    roles: Roles | None = None,
) -> list[tuple[str, tuple[tuple[str, str], ...], int]]:
    """(severity, subject, count) of `rule`'s findings over `events` replayed from scratch."""
    config = parse_detect_config({"rules": {rule: options or {}}})
    findings = replay(Detector(config, roles or Roles()), events)
    return [
        (f.severity.value, tuple(f.subject.items()), f.count) for f in findings if f.rule == rule
    ]


def run_findings(
    rule: str, events: list[Event], options: dict[str, Any] | None = None
) -> list[Any]:
    """`rule`'s findings (the alerts as the detector makes them) over `events`."""
    config = parse_detect_config({"rules": {rule: options or {}}})
    return [f for f in replay(Detector(config, Roles()), events) if f.rule == rule]
