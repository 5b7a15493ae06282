"""Schema migrations with alembic, run against an engine the caller built.

alembic (about 12 MiB of modules) is imported only when a migration runs: a store already at
the newest revision, what `serve` finds at every start but the first, is told by reading
`alembic_version` and the revision lines of migrations/versions/.
"""

from __future__ import annotations

import logging
import pickle
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, event, inspect, text

from monitor.errors import StoreUnavailable
from monitor.settings import DatabaseSettings
from monitor.store.engine import make_engine

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

BATCH_COPY_PREFIX = "_alembic_tmp_"

MIGRATIONS = Path(__file__).parent / "migrations"
_REVISION = re.compile(r'^revision(?:: str)? = "([^"]+)"', re.MULTILINE)
_DOWN_REVISION = re.compile(r'^down_revision(?:: [^=]+)? = "([^"]+)"', re.MULTILINE)


def alembic_config(engine: Engine | None = None) -> Config:
    from alembic.config import Config  # deliberately lazy: only when a migration runs

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        config.set_main_option(
            "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
        )
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (default: the newest)."""
    if revision == "head" and current_revision(engine) == head_revision():
        return
    from alembic import command  # deliberately lazy: only when a migration runs

    config = alembic_config()
    with _migration_transaction(engine) as connection:
        _drop_unfinished_batch_copies(connection)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def upgrade_apart(settings: DatabaseSettings, engine: Engine) -> None:
    """`upgrade(engine)` to the newest revision for a long-running process: the migration runs
    in a child process (`python -m monitor.store.migrate`), so this one never loads alembic,
    whose modules would stay in its memory for its life. When the child fails, the upgrade is
    run here once more, to raise what stops it as this process's own error."""
    before = current_revision(engine)
    head = head_revision()
    if before == head:
        return
    child = subprocess.run(
        [sys.executable, "-m", "monitor.store.migrate"],
        input=pickle.dumps(settings),
        capture_output=True,
        check=False,
    )
    if child.returncode != 0:
        upgrade(engine)
    log.info("store schema upgraded from %s to %s", before, head)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command  # deliberately lazy: only when a migration runs

    config = alembic_config()
    with _migration_transaction(engine) as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


@contextmanager
def _migration_transaction(engine: Engine) -> Iterator[Connection]:
    """One real transaction around the whole migration, DDL included.

    pysqlite opens transactions only before INSERT/UPDATE/DELETE, so on SQLite a batch migration's
    CREATE/DROP/ALTER ran outside any transaction and an interrupted upgrade left half-rebuilt
    tables. SQLAlchemy's documented pysqlite recipe fixes that: the driver's own transaction
    handling is switched off (`isolation_level = None`) and the "begin" event emits the BEGIN.
    It is applied to this one connection only and undone before the connection goes back to the
    pool, so the service's connections keep their usual behaviour.
    """
    with engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            with connection.begin():
                yield connection
            return
        driver = connection.connection.driver_connection
        assert driver is not None
        previous = driver.isolation_level
        driver.isolation_level = None

        def begin_immediate(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        event.listen(connection, "begin", begin_immediate)
        try:
            with connection.begin():
                yield connection
        finally:
            event.remove(connection, "begin", begin_immediate)
            driver.isolation_level = previous


def _drop_unfinished_batch_copies(connection: Connection) -> None:
    """Drop the copies an interrupted SQLite batch migration of an earlier version left behind.

    A batch migration creates `_alembic_tmp_<table>`, fills it, drops `<table>`, then renames the
    copy. While `<table>` exists the copy is never the data and is dropped. Without `<table>` the
    copy holds the only rows: nothing is touched and the upgrade stops with an error naming it.
    """
    tables = set(inspect(connection).get_table_names())
    for name in sorted(t for t in tables if t.startswith(BATCH_COPY_PREFIX)):
        original = name.removeprefix(BATCH_COPY_PREFIX)
        if original not in tables:
            raise StoreUnavailable(
                f"table {name} holds the only copy of table {original} (an earlier upgrade was "
                f"interrupted between dropping {original} and renaming the copy); back up the "
                f"store, then rename it by hand: ALTER TABLE {name} RENAME TO {original}"
            )
        log.warning(
            "dropping %s, a partial copy of %s left by an interrupted earlier upgrade",
            name,
            original,
        )
        connection.exec_driver_sql(f'DROP TABLE "{name}"')


def current_revision(engine: Engine) -> str | None:
    """The store's revision (None before the first migration)."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        revision: str | None = connection.execute(
            text("SELECT version_num FROM alembic_version")
        ).scalar()
        return revision


def known_revisions() -> list[str]:
    """Every revision of migrations/versions/, oldest first (each revises the one before)."""
    down: dict[str, str | None] = {}
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        parent = _DOWN_REVISION.findall(source)
        for revision in _REVISION.findall(source):
            down[revision] = parent[0] if parent else None
    chain: list[str] = []
    revision = head_revision()
    while revision is not None:
        chain.append(revision)
        revision = down.get(revision)
    return chain[::-1]


def head_revision() -> str | None:
    """The newest revision of migrations/versions/: the one no other revises."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        revisions.update(_REVISION.findall(source))
        revised.update(_DOWN_REVISION.findall(source))
    heads = sorted(revisions - revised)
    if len(heads) > 1:
        raise StoreUnavailable(f"the migrations have more than one newest revision: {heads}")
    return heads[0] if heads else None


if __name__ == "__main__":  # `upgrade_apart`'s child: the database settings pickled on stdin
    engine = make_engine(pickle.loads(sys.stdin.buffer.read()))  # noqa: S301 - from our parent
    try:
        upgrade(engine)
    finally:
        engine.dispose()
