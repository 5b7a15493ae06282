"""The detector: runs every enabled rule over events, applies allow-lists and cooldowns.

`Detector.process` is pure: it takes the state, returns a new one and leaves the given one
untouched. Events are handled in time order; a rule sees an event at its `occurred_at`,
never later than `now` (a clock running ahead cannot poison the windows). `mode: off` rules
do not run; `mode: shadow` alerts are returned with `mode` shadow (to store, not to send).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from monitor.alerts import Alert, Mode
from monitor.detect.config import DetectConfig
from monitor.detect.findings import coalesce, record_hit
from monitor.detect.roles import Roles
from monitor.detect.rulebase import RuleContext, RuleSpec
from monitor.detect.rules import RULES
from monitor.detect.state import DetectorState, copy_state, span_us, sweep, to_us
from monitor.events import Event, utc


class Detector:
    def __init__(self, config: DetectConfig, roles: Roles) -> None:
        self.config = config
        self.roles = roles
        self._rules: list[tuple[RuleSpec, RuleContext]] = [
            (spec, RuleContext(config.rules[spec.name], roles, config.business_hours))
            for spec in RULES
            if config.rules[spec.name].mode is not Mode.OFF
        ]
        self._windows = {spec.name: span_us(ctx.config.window) for spec, ctx in self._rules}
        self._cooldowns = {spec.name: span_us(ctx.config.cooldown) for spec, ctx in self._rules}
        source_rule = config.rules["new_source"]
        self._forget_after = span_us(source_rule.option("forget_after"))

    @property
    def enabled(self) -> tuple[str, ...]:
        return tuple(spec.name for spec, _ in self._rules)

    def process(
        self, events: Iterable[Event], state: DetectorState, now: datetime
    ) -> tuple[list[Alert], DetectorState]:
        """Alerts for `events` (one per incident touched) and the state after them."""
        current = copy_state(state)
        now = utc(now)
        alerts: list[Alert] = []
        for event in sorted(events, key=lambda e: e.occurred_at):
            at = min(utc(event.occurred_at), now)
            for spec, ctx in self._rules:
                allowed = ctx.config.allow.matches(event)
                if allowed and not spec.sees_allowed:
                    continue
                hits = spec.evaluate(event, current, at, ctx)
                if allowed:
                    continue
                alerts.extend(record_hit(current, ctx.config, hit) for hit in hits)
        sweep(current, to_us(now), self._windows, self._cooldowns, self._forget_after)
        return coalesce(alerts), current


def replay(
    detector: Detector, events: Iterable[Event], *, now: datetime | None = None
) -> list[Alert]:
    """What the detector would have found over stored `events`, from an empty state.

    Events are taken in time order; `now` defaults to the last event's time. Nothing is sent.
    """
    ordered = sorted(events, key=lambda e: e.occurred_at)
    if not ordered:
        return []
    end = now if now is not None else ordered[-1].occurred_at
    alerts, _ = detector.process(ordered, DetectorState(), end)
    return alerts
