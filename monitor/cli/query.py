"""`registry-monitor events | tags | alerts | registry-starts | quarantine`: read the store,
print a table or JSON."""

from __future__ import annotations

import argparse

from monitor.alerts import LISTED_FIELDS
from monitor.cli.errors import CommandError
from monitor.cli.output import short, show, when
from monitor.cli.session import store_session
from monitor.settings import Settings
from monitor.store.alerts import AlertFilter, query_alerts
from monitor.store.events import EventFilter, query_events
from monitor.store.quarantine import list_quarantined
from monitor.store.requestlog import list_registry_starts
from monitor.store.tags import list_tags


def events(args: argparse.Namespace, settings: Settings) -> int:
    if args.since is not None and args.until is not None and args.since > args.until:
        raise CommandError("--since is after --until")
    where = EventFilter(
        action=args.action,
        repository=args.repository,
        tag=args.tag,
        actor=args.actor,
        remote_ip=args.remote_ip,
        source=args.source,
        since=args.since,
        until=args.until,
        reconstructed=True if args.reconstructed else None,
    )
    with store_session(settings.database) as session:
        page, cursor = query_events(session, where=where, limit=args.limit, cursor=args.cursor)
    rows = [
        (
            when(e.event.occurred_at),
            e.event.action.value,
            e.event.target_kind.value if e.event.target_kind else None,
            e.event.repository,
            e.event.tag,
            short(e.event.digest),
            e.event.http_method,
            e.event.actor,
            e.event.remote_ip,
            e.event.client.value,
        )
        for e in page
    ]
    headers = ("time (UTC)", "action", "kind", "repository", "tag", "digest", "method", "actor")
    show(
        args.json,
        {"items": [e.to_dict() for e in page], "next_cursor": cursor},
        rows,
        (*headers, "address", "client"),
        [f"more: --cursor {cursor}"] if cursor else [],
    )
    return 0


def tags(args: argparse.Namespace, settings: Settings) -> int:
    with store_session(settings.database) as session:
        items = list_tags(session, repository=args.repository, include_deleted=not args.live)
    minute = "%Y-%m-%d %H:%M"
    rows = [
        (
            t.repository,
            t.tag,
            short(t.digest),
            when(t.last_pushed_at, minute),
            when(t.last_pulled_at, minute),
            t.pull_count,
            f"deleted {when(t.deleted_at, minute)}" if t.deleted_at else "live",
        )
        for t in items
    ]
    headers = ("repository", "tag", "digest", "last push", "last pull", "pulls", "state")
    show(args.json, {"items": [t.to_dict() for t in items]}, rows, headers)
    return 0


def alerts(args: argparse.Namespace, settings: Settings) -> int:
    with store_session(settings.database) as session:
        where = AlertFilter(rule=args.rule, state=args.state)
        items, cursor = query_alerts(session, where=where, limit=args.limit)
    rows = [
        (
            when(a.last_seen_at),
            a.rule,
            a.severity.value,
            a.mode.value,
            a.state.value,
            a.count,
            " ".join(f"{k}={v}" for k, v in a.subject.items()),
        )
        for a in items
    ]
    headers = ("last seen (UTC)", "rule", "severity", "mode", "state", "count", "subject")
    document = {"items": [a.to_dict(LISTED_FIELDS) for a in items], "next_cursor": cursor}
    show(args.json, document, rows, headers)
    return 0


def registry_starts(args: argparse.Namespace, settings: Settings) -> int:
    with store_session(settings.database) as session:
        items, cursor = list_registry_starts(session, limit=args.limit, cursor=args.cursor)
    rows = [(when(s.started_at), s.instance, s.version) for s in items]
    show(
        args.json,
        {"items": [s.to_dict() for s in items], "next_cursor": cursor},
        rows,
        ("started (UTC)", "instance", "version"),
        [f"more: --cursor {cursor}"] if cursor else [],
    )
    return 0


def quarantine(args: argparse.Namespace, settings: Settings) -> int:
    with store_session(settings.database) as session:
        items = list_quarantined(session, limit=args.limit)
    rows = [
        (
            q.id,
            when(q.received_at),
            q.item.source,
            q.item.reason,
            len(q.item.body),
            q.item.message[:60],
        )
        for q in items
    ]
    headers = ("id", "received (UTC)", "source", "reason", "bytes", "message")
    show(args.json, {"items": [q.to_dict() for q in items]}, rows, headers)
    return 0
