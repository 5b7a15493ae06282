"""Rules over reads: enumeration, mass pull, a new source address for an account, access from
outside the declared networks."""

from __future__ import annotations

import ipaddress
from datetime import datetime

from monitor.alerts import Severity
from monitor.detect.findings import Hit
from monitor.detect.rulebase import (
    RuleContext,
    describe,
    group_of,
    human_span,
    is_manifest,
    is_notification_success,
)
from monitor.detect.state import (
    Baseline,
    DetectorState,
    add_distinct,
    add_volume,
    from_us,
    span_us,
    to_us,
    window_key,
)
from monitor.events import Action, Event, Source

LISTING_ROUTES = frozenset({"catalog", "tags"})


def _probe(event: Event) -> str | None:
    """What an enumeration request asked for, or None when it is not one."""
    if event.action is not Action.REQUEST:
        return None
    if event.route in LISTING_ROUTES or (event.route == "manifest" and event.http_status == 404):
        return event.request_uri or f"{event.route} {event.repository or ''}:{event.tag or ''}"
    return None


def enumeration(event: Event, state: DetectorState, at: datetime, ctx: RuleContext) -> list[Hit]:
    """`threshold` distinct catalog pages, tag listings or missing manifests in `window`.

    Blob 404s are not counted: clients check blob existence with HEAD before every upload.
    """
    config = ctx.config
    probe = _probe(event)
    if probe is None:
        return []
    group = group_of(event, config.group_by, required=True)
    if group is None:
        return []
    key = window_key(config.name, group)
    window = span_us(config.window)
    entries = add_distinct(state, key, probe, to_us(at), event.event_id, window, ctx.cap)
    if len(entries) < config.threshold:
        return []
    return [
        Hit(
            group=group,
            summary=(
                f"{len(entries)} distinct catalog, tag-list or missing-manifest requests in "
                f"{human_span(config.window)} from {describe(group)}"
            ),
            evidence=tuple(e[1] for e in entries),
            first_seen_at=from_us(entries[0][0]),
            last_seen_at=at,
        )
    ]


def mass_pull(event: Event, state: DetectorState, at: datetime, ctx: RuleContext) -> list[Hit]:
    """Manifests of `threshold` distinct repositories, or `max_bytes` bytes, pulled by one
    group in `window`. Blob HEADs (existence checks) count for neither.

    Options: `critical_threshold` (distinct repositories that make it critical, 0 = never),
    `max_bytes` (0 = no byte limit), `count_manifest_heads` (count manifest HEADs too).
    """
    config = ctx.config
    if event.source is not Source.NOTIFICATION or event.action is not Action.PULL:
        return []
    group = group_of(event, config.group_by, required=True)
    if group is None:
        return []
    window = span_us(config.window)
    moment = to_us(at)
    fetched = event.http_method != "HEAD"
    hits: list[Hit] = []
    if (
        is_manifest(event)
        and event.repository
        and (fetched or config.option("count_manifest_heads"))
    ):
        key = window_key(config.name, group)
        entries = add_distinct(
            state, key, event.repository, moment, event.event_id, window, ctx.cap
        )
        if len(entries) >= config.threshold:
            critical = config.option("critical_threshold")
            severity = None
            if critical and len(entries) >= critical:
                severity = Severity.CRITICAL
            hits.append(
                Hit(
                    group=group,
                    summary=(
                        f"{len(entries)} distinct repositories pulled in "
                        f"{human_span(config.window)} by {describe(group)}"
                    ),
                    evidence=tuple(e[1] for e in entries),
                    first_seen_at=from_us(entries[0][0]),
                    last_seen_at=at,
                    severity=severity,
                )
            )
    max_bytes = config.option("max_bytes")
    if fetched and event.size and max_bytes:
        total = add_volume(
            state, window_key(f"{config.name}/bytes", group), event.size, moment, window
        )
        if total >= max_bytes and not hits:
            hits.append(
                Hit(
                    group=group,
                    summary=(
                        f"{total} bytes pulled in {human_span(config.window)} by {describe(group)}"
                    ),
                    evidence=(event.event_id,),
                    first_seen_at=at,
                    last_seen_at=at,
                )
            )
    return hits


def new_source(event: Event, state: DetectorState, at: datetime, ctx: RuleContext) -> list[Hit]:
    """A successful request by an account from an address it was not seen from before.

    Each account learns silently for `learning_period` after it is first seen; addresses
    unseen for `forget_after` are forgotten (all of them: the account learns again); at
    most `max_addresses` are kept per account.
    """
    config = ctx.config
    if not is_notification_success(event) or not event.actor or not event.remote_ip:
        return []
    moment = to_us(at)
    cutoff = moment - span_us(config.option("forget_after"))
    baseline = state.baselines.get(event.actor)
    last_seen = None if baseline is None else baseline.addresses.get(event.remote_ip)
    known = last_seen is not None and last_seen > cutoff
    # A known address is newer than the cutoff, so the account has not forgotten everything.
    if baseline is not None and not known and baseline.newest() <= cutoff:
        baseline = None  # every address forgotten: the account learns again
    if baseline is None:
        state.baselines[event.actor] = Baseline(since=moment, addresses={event.remote_ip: moment})
        return []
    baseline.see(event.remote_ip, moment)
    _keep_newest(baseline, config.option("max_addresses"))
    learning = moment - baseline.since < span_us(config.option("learning_period"))
    if known or learning:
        return []
    group = group_of(event, config.group_by, required=False) or ()
    return [
        Hit(
            group=group,
            summary=(
                f"{event.actor} made a {event.action.value} from {event.remote_ip}, "
                "an address not seen for this account before"
            ),
            evidence=(event.event_id,),
            first_seen_at=at,
            last_seen_at=at,
        )
    ]


def _keep_newest(baseline: Baseline, limit: int) -> None:
    """Keep the `limit` addresses seen last (ties: the greater address is kept)."""
    addresses = baseline.addresses
    if len(addresses) <= limit:
        return
    if len(addresses) == limit + 1:  # one address was just added: drop the oldest
        baseline.drop_oldest()
        return
    newest = sorted(addresses.items(), key=lambda item: (item[1], item[0]))[-limit:]
    baseline.addresses, baseline.ordered = dict(newest), True


def source_not_allowed(
    event: Event, state: DetectorState, at: datetime, ctx: RuleContext
) -> list[Hit]:
    """Any request from an address outside the declared `networks` (the `detect.allow_cidrs`
    setting, or the rule's own option): the registry is reached from where it should not be.
    Silent when no network is declared."""
    networks = ctx.config.option("networks")
    if not networks or not event.remote_ip:
        return []
    try:
        address = ipaddress.ip_address(event.remote_ip)
    except ValueError:
        return []
    if any(address in network for network in networks):
        return []
    group = group_of(event, ctx.config.group_by, required=False) or ()
    who = f" by {event.actor}" if event.actor else ""
    return [
        Hit(
            group=group,
            summary=(
                f"{event.action.value}{who} from {event.remote_ip}, outside the allowed "
                f"networks ({', '.join(str(n) for n in networks)})"
            ),
            evidence=(event.event_id,),
            first_seen_at=at,
            last_seen_at=at,
        )
    ]
