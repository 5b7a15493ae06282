"""`registry-monitor detect replay`: the rules over stored events, from an empty state."""

from __future__ import annotations

import argparse

from monitor.alerts import FOUND_FIELDS
from monitor.cli.errors import CommandError
from monitor.cli.output import show, when
from monitor.cli.session import store_session
from monitor.detect.engine import replay as replay_events
from monitor.events import Event
from monitor.main import build_detector
from monitor.settings import Settings
from monitor.store.events import EventFilter, query_events

PAGE = 1000


def replay(args: argparse.Namespace, settings: Settings) -> int:
    if args.since > args.until:
        raise CommandError("--since is after --until")
    where = EventFilter(since=args.since, until=args.until)
    detector = build_detector(settings.detect)
    events: list[Event] = []
    with store_session(settings.database) as session:
        cursor: str | None = None
        while True:
            page, cursor = query_events(
                session, where=where, limit=PAGE, cursor=cursor, ascending=True
            )
            events.extend(e.event for e in page)
            if cursor is None:
                break
    findings = replay_events(detector, events, now=args.until)
    rows = [
        (
            when(f.last_seen_at),
            f.rule,
            f.severity.value,
            f.mode.value,
            f.count,
            " ".join(f"{k}={v}" for k, v in f.subject.items()),
        )
        for f in findings
    ]
    show(
        args.json,
        {"events": len(events), "findings": [f.to_dict(FOUND_FIELDS) for f in findings]},
        rows,
        ("last seen (UTC)", "rule", "severity", "mode", "count", "subject"),
        [f"{len(findings)} findings over {len(events)} events; nothing was sent"],
    )
    return 0
