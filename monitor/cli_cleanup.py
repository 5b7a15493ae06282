"""`registry-monitor cleanup plan|apply|restore|plans|reconcile`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from monitor.settings import Settings
from monitor.tables import table


def _json(doc: Any) -> None:
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


def plan(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime, timedelta

    from prometheus_client import CollectorRegistry

    from monitor.cleanup.report import decisions_table, diff_lines, diff_to_dict
    from monitor.cleanup.runner import load_policy_set, make_plan
    from monitor.observability.metrics import make_metrics
    from monitor.store.engine import make_engine, make_session_factory

    policies = load_policy_set(settings.cleanup)
    engine = make_engine(settings.database)
    try:
        outcome = make_plan(
            make_session_factory(engine),
            policies=policies,
            now=datetime.now(UTC),
            gap_tolerance=timedelta(seconds=settings.cleanup.coverage_gap_tolerance_seconds),
            metrics=make_metrics(CollectorRegistry()),
        )
    finally:
        engine.dispose()
    if args.json:
        doc = outcome.summary.to_dict()
        doc["decisions"] = outcome.plan.to_dict()["decisions"]
        doc["actions"] = outcome.plan.to_dict()["actions"]
        doc["diff"] = diff_to_dict(outcome.diff, outcome.previous_id)
        _json(doc)
        return 0
    print(decisions_table(outcome.plan))
    print()
    print("\n".join(diff_lines(outcome.diff, outcome.previous_id)))
    counts = ", ".join(f"{n} {k}" for k, n in outcome.plan.counts().items())
    print(
        f"plan {outcome.summary.id} stored ({counts}; {len(outcome.plan.actions)} manifest "
        f"deletes; about {outcome.plan.bytes_freed} bytes after garbage collection)"
    )
    print(f"apply with: registry-monitor cleanup apply {outcome.summary.id}")
    return 0


def apply(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from prometheus_client import CollectorRegistry

    from monitor.cleanup.apply import apply_options
    from monitor.cleanup.journal import Outcome
    from monitor.cleanup.report import entries_table, entry_to_dict
    from monitor.cleanup.runner import apply_plan, open_registry
    from monitor.observability.metrics import make_metrics
    from monitor.pipeline.cleanup_summary import outbox_sender
    from monitor.store.engine import make_engine, make_session_factory

    engine = make_engine(settings.database)
    session_factory = make_session_factory(engine)

    def clock() -> datetime:
        return datetime.now(UTC)

    try:
        with open_registry(settings.cleanup) as client:
            result = apply_plan(
                session_factory,
                client,
                args.plan_id,
                clock=clock,
                options=apply_options(settings.cleanup),
                metrics=make_metrics(CollectorRegistry()),
                # queued in the store; `serve` delivers it to Slack
                send_summary=outbox_sender(session_factory, clock),
            )
    finally:
        engine.dispose()
    failed = bool(result.outcomes(Outcome.FAILED)) or result.aborted is not None
    if args.json:
        entries = [entry_to_dict(e) for e in result.entries]
        _json({"plan_id": result.plan_id, "aborted": result.aborted, "entries": entries})
        return 1 if failed else 0
    if result.aborted:
        print(f"nothing applied: {result.aborted}", file=sys.stderr)
        return 1
    print(entries_table(result.entries))
    print(
        f"plan {result.plan_id}: {len(result.deleted_tags())} tags deleted, "
        f"{len(result.outcomes(Outcome.SKIPPED))} skipped, "
        f"{len(result.outcomes(Outcome.FAILED))} failed"
    )
    return 1 if failed else 0


def restore(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from monitor.cleanup.journal import Outcome
    from monitor.cleanup.model import TagRef
    from monitor.cleanup.report import entries_table, entry_to_dict
    from monitor.cleanup.runner import open_registry, restore_plan
    from monitor.store.engine import make_engine, make_session_factory

    only = None
    if args.tag:
        only = set()
        for text in args.tag:
            repository, sep, tag = text.rpartition(":")
            if not sep or not repository or not tag or "/" in tag:
                print(f"registry-monitor: --tag expects REPO:TAG, got {text!r}", file=sys.stderr)
                return 2
            only.add(TagRef(repository, tag))
    engine = make_engine(settings.database)
    try:
        with open_registry(settings.cleanup) as client:
            entries = restore_plan(
                make_session_factory(engine),
                client,
                args.plan_id,
                clock=lambda: datetime.now(UTC),
                only=only,
            )
    finally:
        engine.dispose()
    failed = any(e.outcome is Outcome.FAILED for e in entries)
    if args.json:
        _json({"plan_id": args.plan_id, "entries": [entry_to_dict(e) for e in entries]})
    else:
        print(entries_table(entries))
    return 1 if failed else 0


def plans(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.store.cleanup_plans import list_plans
    from monitor.store.engine import make_engine, make_session_factory

    engine = make_engine(settings.database)
    with make_session_factory(engine)() as session:
        items = list_plans(session, limit=args.limit)
    engine.dispose()
    if args.json:
        _json({"items": [p.to_dict() for p in items]})
        return 0
    rows = [
        (
            p.id,
            p.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            p.state.value,
            p.counts["delete"],
            p.counts["keep"],
            p.counts["protected"],
            p.counts["unknown"],
            p.bytes_freed,
        )
        for p in items
    ]
    headers = ("id", "created (UTC)", "state", "delete", "keep", "protected", "unknown", "bytes")
    print(table(rows, headers))
    return 0


def reconcile(_args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from monitor.cleanup.reconcile import reconcile
    from monitor.cleanup.runner import open_registry
    from monitor.store.engine import make_engine, make_session_factory

    engine = make_engine(settings.database)
    try:
        with open_registry(settings.cleanup) as client:
            result = reconcile(
                make_session_factory(engine), client, clock=lambda: datetime.now(UTC)
            )
    finally:
        engine.dispose()
    print(
        f"{result.repositories} repositories, {result.tags} tags; learned {len(result.learned)}, "
        f"moved {len(result.moved)}, gone {result.vanished}; "
        f"{result.manifests_fetched} manifests fetched"
    )
    return 0
