"""`registry-monitor detect replay`: the rules over stored events, from an empty state."""

from __future__ import annotations

import argparse

from monitor.alerts import FOUND_FIELDS
from monitor.cli.errors import CommandError
from monitor.cli.output import show, when
from monitor.cli.session import store_session
from monitor.detect.engine import replay_in_order
from monitor.pipeline.detection import build_detector
from monitor.settings import Settings
from monitor.store.judged import judged_events_between


def replay(args: argparse.Namespace, settings: Settings) -> int:
    if args.since > args.until:
        raise CommandError("--since is after --until")
    detector = build_detector(settings.detect)
    with store_session(settings.database) as session:
        batches = judged_events_between(session, since=args.since, until=args.until)
        findings, judged = replay_in_order(detector, batches, now=args.until)
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
        {"events": judged, "findings": [f.to_dict(FOUND_FIELDS) for f in findings]},
        rows,
        ("last seen (UTC)", "rule", "severity", "mode", "count", "subject"),
        [f"{len(findings)} findings over {judged} events; nothing was sent"],
    )
    return 0
