"""Every command and option of `registry-monitor`, and the module:function that runs each.

Only the standard library and leaf modules are imported here, so `--help` stays fast; the
command's module is imported when the command runs (`monitor.cli.app`).
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime
from pathlib import Path
from typing import NoReturn

from monitor import __version__
from monitor.events import Action, Source, parse_timestamp

MAX_LIMIT = 1000


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors that point to --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def limit(text: str) -> int:
    """`--limit`: a whole number from 1 to MAX_LIMIT."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to {MAX_LIMIT}, got {text!r}"
        )
    return int(text)


MAX_PLAN_PROCESSES = 16
DEFAULT_PLAN_PROCESSES = 2
"""`cleanup plan`'s default processes, when this process may use as many cores: each one more
adds about 40-50 MiB (on the 10M-event store, the processes' peak PSS together was 220 MiB
with 2, 247 with 3, 290 with 4)."""


def processes(text: str) -> int:
    """`--processes`: a whole number from 1 to MAX_PLAN_PROCESSES."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_PLAN_PROCESSES:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to {MAX_PLAN_PROCESSES}, got {text!r}"
        )
    return int(text)


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - platforms without affinity
        return os.cpu_count() or 1


def timestamp(text: str) -> datetime:
    """`--since`/`--until`: an RFC 3339 time."""
    try:
        return parse_timestamp(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an RFC 3339 time such as 2026-11-27T04:52:00Z, got {text!r}"
        ) from None


def _config(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=default,
        metavar="FILE",
        help="YAML settings file; before or after the command "
        "(default: $REGISTRY_MONITOR_CONFIG, else none)",
    )


def _command(
    group: argparse._SubParsersAction[Parser], name: str, handler: str, text: str
) -> Parser:
    """A command `name` run by `handler`; it takes --config like the top level."""
    parser = group.add_parser(name, help=text, description=text)
    # SUPPRESS: a --config given before the command is not reset by the command's default
    _config(parser, argparse.SUPPRESS)
    # the handler is "module:function" under monitor.cli; the function takes (args, settings)
    parser.set_defaults(command=parser.prog.removeprefix("registry-monitor "), handler=handler)
    return parser


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document instead of a table"
    )


def _limit(parser: argparse.ArgumentParser, default: int, what: str) -> None:
    parser.add_argument(
        "--limit",
        type=limit,
        default=default,
        metavar="N",
        help=f"at most N {what}, 1 to {MAX_LIMIT} (default: %(default)s)",
    )


def _groups(
    sub: argparse._SubParsersAction[Parser], name: str, text: str
) -> argparse._SubParsersAction[Parser]:
    parser = sub.add_parser(name, help=text, description=text)
    _config(parser, argparse.SUPPRESS)
    return parser.add_subparsers(dest=f"{name}_action", required=True, metavar="ACTION")


def _events(sub: argparse._SubParsersAction[Parser]) -> None:
    events = _command(sub, "events", "query:events", "query recorded events, newest first")
    events.add_argument("--action", choices=[a.value for a in Action], help="only this action")
    events.add_argument("--repository", metavar="NAME", help="only this repository (exact)")
    events.add_argument("--tag", metavar="TAG", help="only this tag (exact)")
    events.add_argument("--actor", metavar="USER", help="only this user (exact)")
    events.add_argument("--remote-ip", metavar="ADDRESS", help="only this client address")
    events.add_argument(
        "--source", choices=[s.value for s in Source], help="only events from this source"
    )
    events.add_argument(
        "--since", type=timestamp, metavar="TIME", help="RFC 3339 time, e.g. 2026-11-27T00:00:00Z"
    )
    events.add_argument("--until", type=timestamp, metavar="TIME", help="RFC 3339 time (exclusive)")
    events.add_argument(
        "--reconstructed",
        action="store_true",
        help="only events rebuilt from the registry's log (their notification never came)",
    )
    _limit(events, 50, "events")
    events.add_argument(
        "--cursor", metavar="CURSOR", help="continue after the page that printed this cursor"
    )
    _json(events)


def _reconcile(sub: argparse._SubParsersAction[Parser]) -> None:
    reconcile = _command(
        sub,
        "reconcile-events",
        "reconcile:run",
        "rebuild the events of logged requests whose notifications never came",
    )
    reconcile.add_argument(
        "--since", type=timestamp, required=True, metavar="TIME", help="RFC 3339 time"
    )
    reconcile.add_argument(
        "--until", type=timestamp, required=True, metavar="TIME", help="RFC 3339 time (exclusive)"
    )
    reconcile.add_argument(
        "--dry-run", action="store_true", help="show what would be rebuilt; store nothing"
    )
    _json(reconcile)


def _reads(sub: argparse._SubParsersAction[Parser]) -> None:
    _events(sub)
    _reconcile(sub)
    tags = _command(sub, "tags", "query:tags", "per-tag state: last push, last pull, pulls")
    tags.add_argument("--repository", metavar="NAME", help="only this repository (exact)")
    tags.add_argument("--live", action="store_true", help="hide deleted tags")
    _json(tags)

    alerts = _command(sub, "alerts", "query:alerts", "stored alerts, most recently seen first")
    alerts.add_argument(
        "--rule",
        metavar="RULE",
        help="only this rule, e.g. brute_force_account (see detect.rules_file)",
    )
    alerts.add_argument("--state", choices=("firing", "resolved"), help="only alerts in this state")
    _limit(alerts, 50, "alerts")
    _json(alerts)

    starts = _command(
        sub,
        "registry-starts",
        "query:registry_starts",
        "registry processes seen starting in its log, newest first",
    )
    _limit(starts, 20, "starts")
    starts.add_argument(
        "--cursor", metavar="CURSOR", help="continue after the page that printed this cursor"
    )
    _json(starts)

    quarantine = _command(
        sub, "quarantine", "query:quarantine", "inputs that were kept aside, newest first"
    )
    _limit(quarantine, 20, "items")
    _json(quarantine)


def _service(sub: argparse._SubParsersAction[Parser]) -> None:
    serve = _command(sub, "serve", "service:serve", "run the service")
    serve.add_argument(
        "--insecure-no-token",
        action="store_true",
        help="accept notifications without a token (trusted networks only)",
    )
    serve.add_argument(
        "--no-migrate", action="store_true", help="do not upgrade the schema before listening"
    )
    _command(sub, "check-config", "service:check_config", "validate and print the settings")

    db = _groups(sub, "db", "schema migrations")
    _command(db, "upgrade", "db:upgrade", "create the store or upgrade its schema to the newest")
    back = _command(
        db, "downgrade", "db:downgrade", "undo migrations down to a revision (before a rollback)"
    )
    back.add_argument("revision", metavar="REVISION", help="the revision to go back to, e.g. 0014")
    _command(db, "current", "db:current", "print the schema revision and the newest one")


def _detect(sub: argparse._SubParsersAction[Parser]) -> None:
    detect = _groups(sub, "detect", "detection rules")
    replay = _command(
        detect,
        "replay",
        "detect:replay",
        "run the rules over stored events from an empty state; sends nothing",
    )
    replay.add_argument(
        "--since", type=timestamp, required=True, metavar="TIME", help="RFC 3339 time"
    )
    replay.add_argument(
        "--until", type=timestamp, required=True, metavar="TIME", help="RFC 3339 time (exclusive)"
    )
    _json(replay)


def _ingest(sub: argparse._SubParsersAction[Parser]) -> None:
    ingest = _command(
        sub, "ingest-log", "ingest:run", "read registry logs: files, - for stdin, or --follow GLOB…"
    )
    ingest.add_argument("paths", nargs="+", metavar="PATH", help="log files, or - for stdin")
    ingest.add_argument(
        "--follow",
        action="store_true",
        help="treat PATHs as globs and follow them across rotation until interrupted",
    )
    ingest.add_argument("--quiet", action="store_true", help="no progress line")


def _cleanup(sub: argparse._SubParsersAction[Parser]) -> None:
    cleanup = _groups(sub, "cleanup", "plan, apply and restore tag cleanup")
    plan = _command(cleanup, "plan", "cleanup:plan", "plan now, store the plan and show it")
    plan.add_argument(
        "--processes",
        type=processes,
        default=min(usable_cores(), DEFAULT_PLAN_PROCESSES),
        metavar="N",
        help="plan a large store in up to N processes side by side, 1 to "
        f"{MAX_PLAN_PROCESSES} (default: the cores usable, at most {DEFAULT_PLAN_PROCESSES}; "
        "here %(default)s)",
    )
    _json(plan)
    apply = _command(cleanup, "apply", "cleanup:apply", "apply a stored plan: delete its tags")
    apply.add_argument("plan_id", metavar="PLAN", help="the plan's id, as `cleanup plan` printed")
    _json(apply)
    restore = _command(cleanup, "restore", "cleanup:restore", "put back what a plan deleted")
    restore.add_argument("plan_id", metavar="PLAN", help="the applied plan's id")
    restore.add_argument(
        "--tag",
        action="append",
        metavar="REPO:TAG",
        help="only this tag; repeat for more (default: every tag the plan deleted)",
    )
    _json(restore)
    plans = _command(cleanup, "plans", "cleanup:plans", "list stored plans, newest first")
    _limit(plans, 20, "plans")
    _json(plans)
    one = plans.add_subparsers(dest="plans_action", required=False, metavar="[show PLAN]")
    show = _command(
        one, "show", "cleanup:show_plan", "one stored plan: its decisions and its journal"
    )
    show.add_argument("plan_id", metavar="PLAN", help="the plan's id, as `cleanup plans` lists")
    _json(show)
    _command(
        cleanup, "reconcile", "cleanup:reconcile", "sync tag state with the registry's own tags"
    )


def _audit(sub: argparse._SubParsersAction[Parser]) -> None:
    audit = _command(
        sub,
        "audit",
        "audit:run",
        "check the registry's security posture: config, htpasswd, TLS and anonymous access",
    )
    audit.add_argument(
        "--registry-config",
        type=Path,
        metavar="FILE",
        help="the registry's config.yml (default: audit.registry_config)",
    )
    audit.add_argument(
        "--htpasswd",
        type=Path,
        metavar="FILE",
        help="the registry's htpasswd (default: audit.htpasswd, else auth.htpasswd.path)",
    )
    audit.add_argument(
        "--url", metavar="URL", help="the registry's URL, probed anonymously (default: audit.url)"
    )
    audit.add_argument(
        "--registry-log",
        action="append",
        metavar="GLOB",
        help="a registry log file (glob); repeat for more (default: logs.paths)",
    )
    audit.add_argument(
        "--accept",
        action="append",
        metavar="CHECK",
        help="a check whose failure is an accepted risk (warn, not fail); repeat for more "
        "(default: audit.accept)",
    )
    _json(audit)


def build_parser() -> Parser:
    parser = Parser(
        prog="registry-monitor",
        description="Audit, alerting and safe tag cleanup beside a Docker registry.",
    )
    parser.add_argument("--version", action="version", version=f"registry-monitor {__version__}")
    _config(parser, None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _service(sub)
    _reads(sub)
    _detect(sub)
    _ingest(sub)
    _cleanup(sub)
    _audit(sub)
    return parser


def commands(parser: argparse.ArgumentParser | None = None) -> dict[str, str]:
    """Every command's full name ("cleanup plan") and its handler ("cleanup:plan")."""
    found: dict[str, str] = {}
    for action in (parser or build_parser())._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if child.get_default("handler"):
                    found[child.get_default("command")] = child.get_default("handler")
                found.update(commands(child))
    return found
