"""`registry-monitor serve | check-config`."""

from __future__ import annotations

import argparse
import dataclasses
import sys

import yaml

from monitor.cli.errors import CommandError
from monitor.cli.session import prepare_directory
from monitor.main import serve as run_service
from monitor.settings import Settings, to_document


def serve(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.notifications.tokens and not (
        args.insecure_no_token or settings.notifications.insecure_no_token
    ):
        raise CommandError(
            "refusing to start without a notification token: set notifications.tokens "
            "(REGISTRY_MONITOR_NOTIFICATIONS_TOKENS) or pass --insecure-no-token"
        )
    if args.no_migrate:
        database = dataclasses.replace(settings.database, migrate_on_start=False)
        settings = dataclasses.replace(settings, database=database)
    prepare_directory(settings.database)
    run_service(settings)
    return 0


def check_config(_args: argparse.Namespace, settings: Settings) -> int:
    sys.stdout.write(yaml.safe_dump(to_document(settings), sort_keys=False))
    return 0
