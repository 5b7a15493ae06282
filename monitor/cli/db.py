"""`registry-monitor db upgrade | downgrade | current`: the store's schema (the only commands
using alembic)."""

from __future__ import annotations

import argparse

from monitor.cli.errors import CommandError
from monitor.cli.session import store_engine
from monitor.settings import Settings
from monitor.store.migrate import current_revision, head_revision, known_revisions
from monitor.store.migrate import downgrade as downgrade_schema
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


def downgrade(args: argparse.Namespace, settings: Settings) -> int:
    """Back to `args.revision`, older than the store's, before an older version is installed:
    each migration undone puts back what that version reads."""
    revision: str = args.revision
    chain = known_revisions()
    with store_engine(settings.database) as engine:
        current = current_revision(engine)
        if revision not in chain:
            raise CommandError(f"no revision {revision!r}; the revisions are {', '.join(chain)}")
        if current not in chain or chain.index(revision) >= chain.index(current):
            raise CommandError(
                f"the store is at revision {current}; downgrade goes to an older one"
            )
        downgrade_schema(engine, revision)
        print(f"schema at revision {current_revision(engine)}")
    return 0
