"""The `registry-monitor` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import yaml

from monitor import __version__, cli_cleanup, cli_ingest
from monitor.errors import ConfigError, MonitorError
from monitor.observability.logs import configure_logging
from monitor.settings import Settings, load_settings, to_document
from monitor.tables import table

Command = Callable[[argparse.Namespace, Settings], int]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="registry-monitor",
        description="Audit, alerting and safe tag cleanup beside a Docker registry.",
    )
    parser.add_argument("--version", action="version", version=f"registry-monitor {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML settings file (default: $REGISTRY_MONITOR_CONFIG, else none)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", parents=[common], help="run the service")
    serve.add_argument(
        "--insecure-no-token",
        action="store_true",
        help="accept notifications without a token (trusted networks only)",
    )
    serve.add_argument("--no-migrate", action="store_true", help="do not upgrade the schema")

    db = sub.add_parser("db", help="schema migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", parents=[common], help="upgrade the schema to the newest")
    db_sub.add_parser("current", parents=[common], help="print the schema revision")

    sub.add_parser("check-config", parents=[common], help="validate and print the settings")

    events = sub.add_parser("events", parents=[common], help="query recorded events")
    for name in ("action", "repository", "tag", "actor", "remote-ip", "source"):
        events.add_argument(f"--{name}")
    events.add_argument("--since", help="RFC 3339 time, e.g. 2026-11-27T00:00:00Z")
    events.add_argument("--until", help="RFC 3339 time (exclusive)")
    events.add_argument("--limit", type=int, default=50)
    events.add_argument("--cursor", help="continue after the page that printed this cursor")
    events.add_argument("--json", action="store_true", help="one JSON document")

    tags = sub.add_parser("tags", parents=[common], help="per-tag state")
    tags.add_argument("--repository")
    tags.add_argument("--live", action="store_true", help="hide deleted tags")
    tags.add_argument("--json", action="store_true")

    alerts = sub.add_parser("alerts", parents=[common], help="stored alerts")
    alerts.add_argument("--rule")
    alerts.add_argument("--state", choices=("firing", "resolved"))
    alerts.add_argument("--limit", type=int, default=50)
    alerts.add_argument("--json", action="store_true", help="one JSON document")

    detect = sub.add_parser("detect", help="detection rules")
    detect_sub = detect.add_subparsers(dest="detect_command", required=True, metavar="ACTION")
    replay = detect_sub.add_parser(
        "replay",
        parents=[common],
        help="run the rules over stored events from an empty state; sends nothing",
    )
    replay.add_argument("--since", required=True, help="RFC 3339 time")
    replay.add_argument("--until", required=True, help="RFC 3339 time (exclusive)")
    replay.add_argument("--json", action="store_true", help="one JSON document")

    cli_ingest.add_parser(sub, common)

    quarantine = sub.add_parser("quarantine", parents=[common], help="quarantined inputs")
    quarantine.add_argument("--limit", type=int, default=20)
    quarantine.add_argument("--json", action="store_true")

    cleanup = sub.add_parser("cleanup", help="plan, apply and restore tag cleanup")
    cleanup_sub = cleanup.add_subparsers(dest="cleanup_command", required=True, metavar="ACTION")
    plan = cleanup_sub.add_parser("plan", parents=[common], help="plan now, store and show it")
    plan.add_argument("--json", action="store_true")
    apply = cleanup_sub.add_parser("apply", parents=[common], help="apply a stored plan")
    apply.add_argument("plan_id")
    apply.add_argument("--json", action="store_true")
    restore = cleanup_sub.add_parser("restore", parents=[common], help="undo a plan's deletes")
    restore.add_argument("plan_id")
    restore.add_argument("--tag", action="append", metavar="REPO:TAG", help="only these tags")
    restore.add_argument("--json", action="store_true")
    plans = cleanup_sub.add_parser("plans", parents=[common], help="list stored plans")
    plans.add_argument("--limit", type=int, default=20)
    plans.add_argument("--json", action="store_true")
    cleanup_sub.add_parser("reconcile", parents=[common], help="sync with the registry's tags")
    return parser


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = dict(os.environ if environ is None else environ)
    config = args.config or (
        Path(env["REGISTRY_MONITOR_CONFIG"]) if env.get("REGISTRY_MONITOR_CONFIG") else None
    )
    try:
        settings = load_settings(env, config)
    except ConfigError as exc:
        print(f"registry-monitor: invalid setting {exc.key}: {exc.reason}", file=sys.stderr)
        return 2
    configure_logging(settings.logging)
    name = args.command
    if name in ("db", "detect", "cleanup"):
        name = f"{name} {getattr(args, name + '_command')}"
    command = _COMMANDS[name]
    try:
        return command(args, settings)
    except MonitorError as exc:
        print(f"registry-monitor: {exc.message}", file=sys.stderr)
        return 1


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.main import serve

    if not settings.notifications.tokens and not (
        args.insecure_no_token or settings.notifications.insecure_no_token
    ):
        print(
            "registry-monitor: refusing to start without a notification token: set "
            "notifications.tokens (REGISTRY_MONITOR_NOTIFICATIONS_TOKENS) or pass "
            "--insecure-no-token",
            file=sys.stderr,
        )
        return 2
    if args.no_migrate:
        from dataclasses import replace

        settings = replace(settings, database=replace(settings.database, migrate_on_start=False))
    serve(settings)
    return 0


def _db_upgrade(_args: argparse.Namespace, settings: Settings) -> int:
    from monitor.store.engine import make_engine
    from monitor.store.migrate import current_revision, upgrade

    engine = make_engine(settings.database)
    upgrade(engine)
    print(f"schema at revision {current_revision(engine)}")
    engine.dispose()
    return 0


def _db_current(_args: argparse.Namespace, settings: Settings) -> int:
    from monitor.store.engine import make_engine
    from monitor.store.migrate import current_revision, head_revision

    engine = make_engine(settings.database)
    print(f"current {current_revision(engine)}  head {head_revision()}")
    engine.dispose()
    return 0


def _check_config(_args: argparse.Namespace, settings: Settings) -> int:
    sys.stdout.write(yaml.safe_dump(to_document(settings), sort_keys=False))
    return 0


def _short(digest: str | None) -> str | None:
    return digest[:19] if digest else None


def _events(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.api.read import parse_event_filter
    from monitor.store.engine import make_engine, make_session_factory
    from monitor.store.events import query_events

    params = {
        k: v
        for k, v in {
            "action": args.action,
            "repository": args.repository,
            "tag": args.tag,
            "actor": args.actor,
            "remote_ip": args.remote_ip,
            "source": args.source,
            "since": args.since,
            "until": args.until,
        }.items()
        if v is not None
    }
    where = parse_event_filter(params)
    engine = make_engine(settings.database)
    with make_session_factory(engine)() as session:
        page, cursor = query_events(session, where=where, limit=args.limit, cursor=args.cursor)
    engine.dispose()
    if args.json:
        doc = {"items": [e.to_dict() for e in page], "next_cursor": cursor}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    rows = [
        (
            e.event.occurred_at.strftime("%Y-%m-%d %H:%M:%S"),
            e.event.action.value,
            e.event.target_kind.value if e.event.target_kind else None,
            e.event.repository,
            e.event.tag,
            _short(e.event.digest),
            e.event.http_method,
            e.event.actor,
            e.event.remote_ip,
            e.event.client.value,
        )
        for e in page
    ]
    headers = ("time (UTC)", "action", "kind", "repository", "tag", "digest", "method", "actor")
    print(table(rows, (*headers, "address", "client")))
    if cursor:
        print(f"more: --cursor {cursor}")
    return 0


def _tags(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.store.engine import make_engine, make_session_factory
    from monitor.store.tags import list_tags

    engine = make_engine(settings.database)
    with make_session_factory(engine)() as session:
        items = list_tags(session, repository=args.repository, include_deleted=not args.live)
    engine.dispose()
    if args.json:
        doc = {"items": [t.to_dict() for t in items]}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0

    def when(value: Any) -> str | None:
        return value.strftime("%Y-%m-%d %H:%M") if value else None

    rows = [
        (
            t.repository,
            t.tag,
            _short(t.digest),
            when(t.last_pushed_at),
            when(t.last_pulled_at),
            t.pull_count,
            "deleted " + (when(t.deleted_at) or "") if t.deleted_at else "live",
        )
        for t in items
    ]
    headers = ("repository", "tag", "digest", "last push", "last pull", "pulls", "state")
    print(table(rows, headers))
    return 0


def _quarantine(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.store.engine import make_engine, make_session_factory
    from monitor.store.quarantine import list_quarantined

    engine = make_engine(settings.database)
    with make_session_factory(engine)() as session:
        items = list_quarantined(session, limit=args.limit)
    engine.dispose()
    if args.json:
        doc = {"items": [q.to_dict() for q in items]}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    rows = [
        (
            q.id,
            q.received_at.strftime("%Y-%m-%d %H:%M:%S"),
            q.item.source,
            q.item.reason,
            len(q.item.body),
            q.item.message[:60],
        )
        for q in items
    ]
    print(table(rows, ("id", "received (UTC)", "source", "reason", "bytes", "message")))
    return 0


def _alerts(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.store.alerts import AlertFilter, query_alerts
    from monitor.store.engine import make_engine, make_session_factory

    engine = make_engine(settings.database)
    with make_session_factory(engine)() as session:
        where = AlertFilter(rule=args.rule, state=args.state)
        items, cursor = query_alerts(session, where=where, limit=args.limit)
    engine.dispose()
    if args.json:
        doc = {"items": [a.to_dict() for a in items], "next_cursor": cursor}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    rows = [
        (
            a.last_seen_at.strftime("%Y-%m-%d %H:%M:%S"),
            a.rule,
            a.severity,
            a.mode,
            a.state,
            a.count,
            " ".join(f"{k}={v}" for k, v in a.subject.items()),
        )
        for a in items
    ]
    print(table(rows, ("last seen (UTC)", "rule", "severity", "mode", "state", "count", "subject")))
    return 0


def _detect_replay(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.api.read import parse_event_filter
    from monitor.detect.engine import replay
    from monitor.events import Event
    from monitor.main import build_detector
    from monitor.store.engine import make_engine, make_session_factory
    from monitor.store.events import query_events

    where = parse_event_filter({"since": args.since, "until": args.until})
    detector = build_detector(settings.detect)
    engine = make_engine(settings.database)
    events: list[Event] = []
    with make_session_factory(engine)() as session:
        cursor: str | None = None
        while True:
            page, cursor = query_events(
                session, where=where, limit=1000, cursor=cursor, ascending=True
            )
            events.extend(e.event for e in page)
            if cursor is None:
                break
    engine.dispose()
    findings = replay(detector, events, now=where.until)
    if args.json:
        doc = {"events": len(events), "findings": [f.to_dict() for f in findings]}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    rows = [
        (
            f.last_seen_at.strftime("%Y-%m-%d %H:%M:%S"),
            f.rule,
            f.severity.value,
            f.mode.value,
            f.count,
            " ".join(f"{k}={v}" for k, v in f.subject.items()),
        )
        for f in findings
    ]
    print(table(rows, ("last seen (UTC)", "rule", "severity", "mode", "count", "subject")))
    print(f"{len(findings)} findings over {len(events)} events; nothing was sent")
    return 0


_COMMANDS: dict[str, Command] = {
    "serve": _serve,
    "db upgrade": _db_upgrade,
    "db current": _db_current,
    "check-config": _check_config,
    "events": _events,
    "tags": _tags,
    "quarantine": _quarantine,
    "alerts": _alerts,
    "detect replay": _detect_replay,
    "ingest-log": cli_ingest.run,
    "cleanup plan": cli_cleanup.plan,
    "cleanup apply": cli_cleanup.apply,
    "cleanup restore": cli_cleanup.restore,
    "cleanup plans": cli_cleanup.plans,
    "cleanup reconcile": cli_cleanup.reconcile,
}
