"""`registry-monitor serve | check-config`."""

from __future__ import annotations

import argparse
import dataclasses
import sys

import yaml

from monitor.cli.errors import CommandError
from monitor.cli.session import prepare_directory
from monitor.settings import Settings, to_document


def require_token(settings: Settings, *, insecure_no_token: bool = False) -> None:
    """`serve` does not start, and `check-config` does not pass, without a notification token
    (unless notifications are explicitly accepted without one)."""
    if not settings.notifications.tokens and not (
        insecure_no_token or settings.notifications.insecure_no_token
    ):
        raise CommandError(
            "refusing to start without a notification token: set notifications.tokens "
            "(REGISTRY_MONITOR_NOTIFICATIONS_TOKENS) or pass --insecure-no-token"
        )


def serve(args: argparse.Namespace, settings: Settings) -> int:
    # deliberately lazy: check-config shares this module and needs no web server (start-up)
    from monitor.server import ListenError, open_listener
    from monitor.server import serve as run_service

    require_token(settings, insecure_no_token=args.insecure_no_token)
    if args.no_migrate:
        database = dataclasses.replace(settings.database, migrate_on_start=False)
        settings = dataclasses.replace(settings, database=database)
    try:
        listener = open_listener(settings.http)  # first: a busy port is one line, nothing started
    except ListenError as exc:
        raise CommandError(exc.message) from exc
    try:
        prepare_directory(settings.database)
    except BaseException:
        listener.close()
        raise
    run_service(settings, listener)
    return 0


def check_config(_args: argparse.Namespace, settings: Settings) -> int:
    require_token(settings)
    sys.stdout.write(yaml.safe_dump(to_document(settings), sort_keys=False))
    return 0
