"""`registry-monitor reconcile-events`: rebuild lost notifications from stored log requests."""

from __future__ import annotations

import argparse

from sqlalchemy.exc import SQLAlchemyError

from monitor.cli.errors import CommandError
from monitor.cli.output import short, show, when
from monitor.cli.session import problem
from monitor.main import build_services
from monitor.pipeline.reconcile import reconcile_events, registry_tag_digest
from monitor.settings import Settings


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.since > args.until:
        raise CommandError("--since is after --until")
    try:
        services = build_services(settings)
    except SQLAlchemyError as exc:
        raise problem(exc, settings.database) from exc
    services.writer.start()
    try:
        outcome = reconcile_events(
            services.session_factory,
            services.writer,
            now=services.clock(),
            settle_seconds=settings.reconcile.settle_seconds,
            since=args.since,
            until=args.until,
            dry_run=args.dry_run,
            pending_only=False,
            metrics=services.metrics,
            open_lookup=registry_tag_digest(settings.cleanup),
        )
    except SQLAlchemyError as exc:
        raise problem(exc, settings.database) from exc
    finally:
        services.writer.stop()
        services.engine.dispose()
    rows = [
        (
            when(e.occurred_at),
            e.action.value,
            e.target_kind.value if e.target_kind else None,
            e.repository,
            e.tag,
            short(e.digest),
            e.actor,
            e.request_id,
        )
        for e in outcome.events
    ]
    verb = "would rebuild" if args.dry_run else "rebuilt"
    show(
        args.json,
        {
            **outcome.to_dict(),
            "dry_run": args.dry_run,
            "items": [e.to_dict() for e in outcome.events],
        },
        rows,
        ("time (UTC)", "action", "kind", "repository", "tag", "digest", "actor", "request id"),
        [
            f"{outcome.examined} logged requests, {outcome.matched} newly matched; "
            f"{verb} {len(outcome.events)} events of {outcome.requests_reconstructed} requests"
        ],
    )
    return 0
