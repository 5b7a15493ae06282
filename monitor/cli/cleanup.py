"""`registry-monitor cleanup plan | apply | restore | plans | reconcile`."""

from __future__ import annotations

import argparse
from datetime import timedelta

from prometheus_client import CollectorRegistry

from monitor.cleanup.apply import apply_options
from monitor.cleanup.journal import Outcome
from monitor.cleanup.model import TagRef
from monitor.cleanup.reconcile import reconcile as reconcile_tags
from monitor.cleanup.report import (
    decisions_table,
    diff_lines,
    diff_to_dict,
    entries_table,
    entry_to_dict,
)
from monitor.cli.errors import CommandError
from monitor.cli.output import print_json, show, when
from monitor.cli.session import store_engine, store_session
from monitor.clock import utc_now
from monitor.observability.metrics import make_metrics
from monitor.pipeline.cleanup import (
    apply_plan,
    load_policy_set,
    make_plan,
    open_registry,
    restore_plan,
)
from monitor.pipeline.cleanup_summary import outbox_sender
from monitor.settings import Settings
from monitor.store.cleanup_plans import (
    PlanState,
    PlanSummary,
    load_decisions,
    load_plan,
    plan_summary,
    query_plans,
)
from monitor.store.engine import make_session_factory
from monitor.store.journal import list_journal
from monitor.tables import table


def plan(args: argparse.Namespace, settings: Settings) -> int:
    policies = load_policy_set(settings.cleanup)
    with store_engine(settings.database) as engine:
        session_factory = make_session_factory(engine)
        outcome = make_plan(
            session_factory,
            policies=policies,
            now=utc_now(),
            gap_tolerance=timedelta(seconds=settings.cleanup.coverage_gap_tolerance_seconds),
            metrics=make_metrics(CollectorRegistry()),
            plans_keep=settings.cleanup.plans_keep,
            processes=args.processes,
        )
        with session_factory() as session:  # printed as stored, as `cleanup plans show` does
            if args.json:
                summary, stored = load_plan(session, outcome.summary.id)
            else:
                summary, decisions = load_decisions(session, outcome.summary.id)
    if args.json:
        document = summary.to_dict()
        data = stored.to_dict()
        document["decisions"] = data["decisions"]
        document["actions"] = data["actions"]
        document["diff"] = diff_to_dict(outcome.diff, outcome.previous_id)
        print_json(document)
        return 0
    print(decisions_table(decisions))
    print()
    print("\n".join(diff_lines(outcome.diff, outcome.previous_id)))
    counts = ", ".join(f"{n} {k}" for k, n in summary.counts.items())
    print(
        f"plan {summary.id} stored ({counts}; {summary.actions} manifest "
        f"deletes; about {summary.bytes_freed} bytes after garbage collection)"
    )
    print(f"apply with: registry-monitor cleanup apply {outcome.summary.id}")
    return 0


def apply(args: argparse.Namespace, settings: Settings) -> int:
    with store_engine(settings.database) as engine:
        session_factory = make_session_factory(engine)
        with session_factory() as session:
            summary = plan_summary(session, args.plan_id)
        if summary.state is PlanState.APPLIED:
            return _applied_before(args, summary)
        with open_registry(settings.cleanup) as client:
            result = apply_plan(
                session_factory,
                client,
                args.plan_id,
                clock=utc_now,
                options=apply_options(settings.cleanup),
                metrics=make_metrics(CollectorRegistry()),
                # queued in the store; `serve` delivers it to Slack
                send_summary=outbox_sender(session_factory, utc_now),
            )
    failed = bool(result.outcomes(Outcome.FAILED)) or result.aborted is not None
    if args.json:
        entries = [entry_to_dict(e) for e in result.entries]
        mode = result.delete_mode.value if result.delete_mode is not None else None
        print_json(
            {
                "plan_id": result.plan_id,
                "aborted": result.aborted,
                "delete_mode": mode,
                "delete_mode_reason": result.delete_mode_reason or None,
                "entries": entries,
            }
        )
        return 1 if failed else 0
    if result.aborted:
        raise CommandError(f"nothing applied: {result.aborted}", status=1)
    print(entries_table(result.entries))
    print(
        f"plan {result.plan_id}: {len(result.deleted_tags())} tags deleted, "
        f"{len(result.outcomes(Outcome.SKIPPED))} skipped, "
        f"{len(result.outcomes(Outcome.FAILED))} failed"
    )
    if result.delete_mode is not None:
        print(f"deleted by {result.delete_mode.value}: {result.delete_mode_reason}")
    return 1 if failed else 0


def _applied_before(args: argparse.Namespace, summary: PlanSummary) -> int:
    """Applying an applied plan again does nothing; say so, and when it was applied."""
    if args.json:
        stored = summary.to_dict()
        print_json(
            {
                "plan_id": summary.id,
                "state": stored["state"],
                "applied_at": stored["applied_at"],
                "aborted": None,
                "entries": [],
            }
        )
        return 0
    print(
        f"plan {summary.id} was applied at {when(summary.applied_at)} UTC; nothing to do "
        f"(its journal: registry-monitor cleanup plans show {summary.id})"
    )
    return 0


def _tag_refs(texts: list[str] | None) -> set[TagRef] | None:
    if not texts:
        return None
    refs = set()
    for text in texts:
        repository, sep, tag = text.rpartition(":")
        if not sep or not repository or not tag or "/" in tag:
            raise CommandError(f"--tag expects REPO:TAG, got {text!r}")
        refs.add(TagRef(repository, tag))
    return refs


def restore(args: argparse.Namespace, settings: Settings) -> int:
    only = _tag_refs(args.tag)
    with store_engine(settings.database) as engine, open_registry(settings.cleanup) as client:
        entries = restore_plan(
            make_session_factory(engine), client, args.plan_id, clock=utc_now, only=only
        )
    failed = any(e.outcome is Outcome.FAILED for e in entries)
    document = {"plan_id": args.plan_id, "entries": [entry_to_dict(e) for e in entries]}
    if args.json:
        print_json(document)
    else:
        print(entries_table(entries))
    return 1 if failed else 0


def plans(args: argparse.Namespace, settings: Settings) -> int:
    with store_session(settings.database) as session:
        items, _ = query_plans(session, limit=args.limit)
    rows = [
        (
            p.id,
            when(p.created_at),
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
    show(args.json, {"items": [p.to_dict() for p in items]}, rows, headers)
    return 0


def show_plan(args: argparse.Namespace, settings: Settings) -> int:
    with store_session(settings.database) as session:
        if args.json:
            summary, stored = load_plan(session, args.plan_id)
        else:
            summary, decisions = load_decisions(session, args.plan_id)
        journal = list_journal(session, plan_id=args.plan_id)
    if args.json:
        data = stored.to_dict()
        document = summary.to_dict()
        document["decisions"] = data["decisions"]
        document["actions"] = data["actions"]
        document["journal"] = [row.to_dict() for row in journal]
        print_json(document)
        return 0
    applied = f" at {when(summary.applied_at)}" if summary.applied_at else ""
    counts = ", ".join(f"{n} {k}" for k, n in summary.counts.items())
    print(
        f"plan {summary.id}, created {when(summary.created_at)} UTC: {summary.state.value}{applied}"
    )
    print(
        f"{counts}; {summary.actions} manifest deletes; about {summary.bytes_freed} bytes "
        f"after garbage collection; policies {summary.policy_digest}"
    )
    print()
    print(decisions_table(decisions))
    if journal:
        rows = [
            (
                when(r.at),
                r.repository,
                r.tag,
                r.digest[:19],
                r.action,
                r.outcome,
                r.reason,
                r.detail or None,
            )
            for r in journal
        ]
        print()
        print(
            table(
                rows,
                (
                    "at (UTC)",
                    "repository",
                    "tag",
                    "digest",
                    "action",
                    "outcome",
                    "reason",
                    "detail",
                ),
            )
        )
    return 0


def reconcile(_args: argparse.Namespace, settings: Settings) -> int:
    with store_engine(settings.database) as engine, open_registry(settings.cleanup) as client:
        result = reconcile_tags(make_session_factory(engine), client, clock=utc_now)
    print(
        f"{result.repositories} repositories, {result.tags} tags; learned {len(result.learned)}, "
        f"moved {len(result.moved)}, gone {result.vanished}; "
        f"{result.manifests_fetched} manifests fetched"
    )
    return 0
