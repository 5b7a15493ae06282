"""`registry-monitor db upgrade | current`: the store's schema (the only commands using alembic)."""

from __future__ import annotations

import argparse

from monitor.cli.session import store_engine
from monitor.settings import Settings
from monitor.store.migrate import current_revision, head_revision
from monitor.store.migrate import upgrade as upgrade_schema


def upgrade(_args: argparse.Namespace, settings: Settings) -> int:
    with store_engine(settings.database, create=True) as engine:
        upgrade_schema(engine)
        print(f"schema at revision {current_revision(engine)}")
    return 0


def current(_args: argparse.Namespace, settings: Settings) -> int:
    with store_engine(settings.database) as engine:
        print(f"current {current_revision(engine)}  head {head_revision()}")
    return 0
