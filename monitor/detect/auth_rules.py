"""Rules over failed logins: brute force, password spray, success after failures.

Only `auth_failure` events count: a 401 on a request that carried credentials. The anonymous
401 challenge that starts every client session never becomes an `auth_failure` event.
"""

from __future__ import annotations

from datetime import datetime

from monitor.detect.findings import Hit
from monitor.detect.rulebase import (
    RuleContext,
    describe,
    group_of,
    human_span,
    is_notification_success,
)
from monitor.detect.state import (
    DetectorState,
    add_count,
    add_distinct,
    from_us,
    in_window,
    span_us,
    to_us,
    window_key,
)
from monitor.events import Action, Event

FAILURES = "failures"
"""Window-key prefix of the failure history kept by success-after-failures."""


def brute_force(event: Event, state: DetectorState, at: datetime, ctx: RuleContext) -> list[Hit]:
    """`threshold` failed logins in `window` for one group (an account, or an address)."""
    config = ctx.config
    if event.action is not Action.AUTH_FAILURE:
        return []
    group = group_of(event, config.group_by, required=True)
    if group is None:
        return []
    window = span_us(config.window)
    key = window_key(config.name, group)
    entries = add_count(state, key, to_us(at), event.event_id, window, ctx.cap)
    if len(entries) < config.threshold:
        return []
    return [
        Hit(
            group=group,
            summary=(
                f"{len(entries)} failed logins in {human_span(config.window)} for {describe(group)}"
            ),
            evidence=tuple(e[1] for e in entries),
            first_seen_at=from_us(entries[0][0]),
            last_seen_at=at,
        )
    ]


UNNAMED = "(not named) "
"""Prefix of the account key of a failure whose user the registry did not log."""


def password_spray(event: Event, state: DetectorState, at: datetime, ctx: RuleContext) -> list[Hit]:
    """`threshold` distinct account names failing to log in from one group in `window`.

    distribution 3.1 names no user when an unknown account fails: each such failure counts as
    an account of its own, since nothing tells whether it was one name guessed again or many.
    """
    config = ctx.config
    if event.action is not Action.AUTH_FAILURE:
        return []
    group = group_of(event, config.group_by, required=True)
    if group is None:
        return []
    window = span_us(config.window)
    key = window_key(config.name, group)
    account = event.actor or UNNAMED + event.event_id
    entries = add_distinct(state, key, account, to_us(at), event.event_id, window, ctx.cap)
    if len(entries) < config.threshold:
        return []
    unnamed = sum(
        1
        for name, entry in state.distinct[key].items()
        if name.startswith(UNNAMED) and to_us(at) - window <= entry[0] <= to_us(at)
    )
    not_named = f" ({unnamed} not named by the registry)" if unnamed else ""
    return [
        Hit(
            group=group,
            summary=(
                f"failed logins for {len(entries)} different accounts{not_named} in "
                f"{human_span(config.window)} from {describe(group)}"
            ),
            evidence=tuple(e[1] for e in entries),
            first_seen_at=from_us(entries[0][0]),
            last_seen_at=at,
        )
    ]


def success_after_failures(
    event: Event, state: DetectorState, at: datetime, ctx: RuleContext
) -> list[Hit]:
    """A successful push/pull/mount/delete by an account, or from an address, that had
    `threshold` failed logins in the `window` before it.

    `group_by` chooses the correlations: `actor` (same account), `remote_ip` (same address).
    """
    config = ctx.config
    window = span_us(config.window)
    moment = to_us(at)
    if event.action is Action.AUTH_FAILURE:
        for field in config.group_by:
            group = group_of(event, (field,), required=True)
            if group is not None:
                key = window_key(f"{config.name}/{FAILURES}", group)
                add_count(state, key, moment, event.event_id, window, ctx.cap)
        return []
    if not is_notification_success(event):
        return []
    hits: list[Hit] = []
    for field in config.group_by:
        group = group_of(event, (field,), required=True)
        if group is None:
            continue
        key = window_key(f"{config.name}/{FAILURES}", group)
        if key not in state.counts:  # no failure recorded for the group
            continue
        failures = in_window(state, key, moment, window)
        if len(failures) < config.threshold:
            continue
        hits.append(
            Hit(
                group=group,
                summary=(
                    f"{event.action.value} by {event.actor or 'anonymous'} from "
                    f"{event.remote_ip or 'unknown address'} after {len(failures)} failed "
                    f"logins for {describe(group)} in {human_span(config.window)}"
                ),
                evidence=(*(e[1] for e in failures), event.event_id),
                first_seen_at=from_us(failures[0][0]),
                last_seen_at=at,
            )
        )
    return hits
