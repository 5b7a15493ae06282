"""`registry-monitor audit`: the registry's security posture, one row per check.

Exit status 1 when any check fails (accepted ones warn instead), 0 otherwise; 2 when it cannot
run (a file given that cannot be read, nothing to audit, an unknown check to accept).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import datetime

from monitor.audit.checks import evaluate
from monitor.audit.facts import Activity
from monitor.audit.gather import ActivityReader, Sources, gather
from monitor.audit.model import accept, check_ids, failed
from monitor.audit.probe import LiveProbe
from monitor.cli.errors import CommandError
from monitor.cli.output import show, when
from monitor.cli.session import store_session
from monitor.clock import utc_now
from monitor.events import format_timestamp
from monitor.settings import DatabaseSettings, Settings
from monitor.store.accounts import last_successes, listening_since


def _activity(database: DatabaseSettings) -> ActivityReader:
    """Account activity from the store; a store that cannot be read skips credentials_stale
    with the reason (CommandError is a MonitorError)."""

    def read(users: Sequence[str], now: datetime) -> Activity:
        with store_session(database) as session:
            return Activity(last_successes(session, users), listening_since(session))

    return read


def sources(args: argparse.Namespace, settings: Settings) -> Sources:
    """The flags, else the `audit` settings (and `logs.paths` for the registry's logs)."""
    audit = settings.audit
    found = Sources(
        registry_config=args.registry_config or audit.registry_config,
        htpasswd=args.htpasswd or audit.htpasswd,
        url=args.url or audit.url,
        registry_logs=tuple(args.registry_log or settings.logs.paths),
        stale_days=audit.stale_days,
        cleanup_configured=settings.cleanup.policies_file is not None,
    )
    if found.registry_config is None and found.url is None and found.htpasswd is None:
        raise CommandError(
            "nothing to audit: give --registry-config FILE and/or --url URL "
            "(or set audit.registry_config, audit.url)"
        )
    return found


def run(args: argparse.Namespace, settings: Settings) -> int:
    accepted = check_ids(args.accept or settings.audit.accept, key="audit.accept")
    now = utc_now()
    facts = gather(
        sources(args, settings),
        probe=LiveProbe(timeout=settings.audit.timeout_seconds),
        now=now,
        activity=_activity(settings.database),
    )
    results = accept(evaluate(facts, now), accepted)
    failing = failed(results)
    document = {
        "checked_at": format_timestamp(now),
        "failed": failing,
        "checks": [r.to_dict() for r in results],
    }
    rows = [(r.id, r.status.value, r.detail, r.remedy or None) for r in results]
    note = f"{len(failing)} failing: {', '.join(failing)}" if failing else "no check fails"
    show(
        args.json,
        document,
        rows,
        ("check", "status", "detail", "change"),
        [f"audited {when(now)} UTC; {note}"],
    )
    return 1 if failing else 0
