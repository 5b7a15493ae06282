"""The detector: runs every enabled rule over events, applies allow-lists and cooldowns.

`Detector.process` is pure: it takes the state, returns a new one and leaves the given one
untouched. Events are handled in time order; a rule sees an event at its `occurred_at`,
never later than `now` (a clock running ahead cannot poison the windows). `mode: off` rules
do not run; `mode: shadow` alerts are returned with `mode` shadow (to store, not to send).

An event is shown only to the rules that look at its action (`RuleSpec.actions`), and each
distinct allow-list is matched once per event, whichever rules share it: the same alerts and
state as every rule over every event, at a fraction of the calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from monitor.alerts import Alert, Mode
from monitor.detect.config import AllowList, DetectConfig
from monitor.detect.findings import coalesce, record_hit
from monitor.detect.roles import Roles
from monitor.detect.rulebase import RuleContext, RuleSpec
from monitor.detect.rules import RULES
from monitor.detect.state import (
    MAX_WINDOWS,
    DetectorState,
    bound,
    copy_state,
    span_us,
    sweep,
    to_us,
)
from monitor.events import Action, Event, utc

Step = tuple[RuleSpec, RuleContext, int]
"""A rule, its context and the index of its allow-list in `Detector._allows`."""


class Detector:
    def __init__(
        self, config: DetectConfig, roles: Roles, *, max_windows: int = MAX_WINDOWS
    ) -> None:
        self.config = config
        self.roles = roles
        self.max_windows = max_windows
        self._rules: list[tuple[RuleSpec, RuleContext]] = [
            (spec, RuleContext(config.rules[spec.name], roles, config.business_hours))
            for spec in RULES
            if config.rules[spec.name].mode is not Mode.OFF
        ]
        self._windows = {spec.name: span_us(ctx.config.window) for spec, ctx in self._rules}
        self._cooldowns = {spec.name: span_us(ctx.config.cooldown) for spec, ctx in self._rules}
        source_rule = config.rules["new_source"]
        self._forget_after = span_us(source_rule.option("forget_after"))
        allows: dict[AllowList, int] = {}
        steps = [
            (spec, ctx, allows.setdefault(ctx.config.allow, len(allows)))
            for spec, ctx in self._rules
        ]
        self._allows = tuple(allows)
        self._steps: dict[Action, tuple[Step, ...]] = {
            action: tuple(step for step in steps if action in step[0].actions) for action in Action
        }

    @property
    def enabled(self) -> tuple[str, ...]:
        return tuple(spec.name for spec, _ in self._rules)

    def process(
        self, events: Iterable[Event], state: DetectorState, now: datetime
    ) -> tuple[list[Alert], DetectorState]:
        """Alerts for `events` (one per incident touched) and the state after them."""
        current = copy_state(state)
        alerts = self.judge(events, current, now)
        self.settle(current, now)
        return coalesce(alerts), current

    def judge(self, events: Iterable[Event], current: DetectorState, now: datetime) -> list[Alert]:
        """`process` without the copy and the sweep: runs the rules over `events` in time order
        onto `current` (changed in place) and returns an alert per hit. A caller judging a
        pass's events in consecutive slices calls it once a slice, then `settle` once: the
        same as one `process` over them when each slice's events come after the previous
        slice's."""
        now = utc(now)
        alerts: list[Alert] = []
        allows = self._allows
        for event in sorted(events, key=lambda e: e.occurred_at):
            steps = self._steps[event.action]
            if not steps:
                continue
            occurred = event.occurred_at
            if occurred.tzinfo is not UTC:
                occurred = utc(occurred)
            at = occurred if occurred <= now else now
            verdicts: list[bool | None] = [None] * len(allows)
            for spec, ctx, which in steps:
                allowed = verdicts[which]
                if allowed is None:
                    allowed = verdicts[which] = allows[which].matches(event)
                if allowed and not spec.sees_allowed:
                    continue
                hits = spec.evaluate(event, current, at, ctx)
                if allowed or not hits:
                    continue
                alerts.extend(record_hit(current, ctx.config, hit) for hit in hits)
        return alerts

    def settle(self, current: DetectorState, now: datetime) -> int:
        """Drops from `current` what can no longer matter at `now` (the end of a pass), then
        what exceeds `max_windows`; returns how many windows and incidents the latter took."""
        sweep(current, to_us(utc(now)), self._windows, self._cooldowns, self._forget_after)
        return bound(current, self.max_windows)


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


def replay_in_order(
    detector: Detector, batches: Iterable[Sequence[Event]], *, now: datetime
) -> tuple[list[Alert], int]:
    """`replay` over events already in time order, given in consecutive batches: the same
    alerts, with one batch in memory at a time. Returns the alerts and the events judged.

    Each batch is judged at its last event's time (at most `now`): what `sweep` drops there
    can no longer matter to a later event, so the state carried over decides as the whole
    history would."""
    state = DetectorState()
    alerts: list[Alert] = []
    judged = 0
    for batch in batches:
        if not batch:
            continue
        judged += len(batch)
        found, state = detector.process(batch, state, min(utc(now), batch[-1].occurred_at))
        alerts.extend(found)
    return coalesce(alerts), judged
