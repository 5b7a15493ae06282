"""Opening the store for one command, and saying what is wrong with it when it cannot be used.

Commands that only read never create a store: a missing SQLite file or an empty database is
reported with the fix (`registry-monitor db upgrade`). Commands that write create the data
directory, and say so when they cannot. The engine is always disposed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from monitor.cli.errors import CommandError
from monitor.settings import DatabaseSettings
from monitor.store.engine import make_engine
from monitor.store.failures import is_conflict

UPGRADE = "run `registry-monitor db upgrade`"
MISSING_TABLE = ("no such table", "does not exist")


def store_url(settings: DatabaseSettings) -> URL:
    """The store's URL, a relative SQLite path made absolute (what the engine will open)."""
    url = make_url(settings.effective_url())
    if _sqlite_file(url) is not None:
        url = url.set(database=str(Path(url.database or "").resolve()))
    return url


def shown(settings: DatabaseSettings) -> str:
    """The store's URL for messages: absolute, password hidden."""
    return store_url(settings).render_as_string(hide_password=True)


def _sqlite_file(url: URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database or "")


def prepare_directory(settings: DatabaseSettings) -> None:
    """Create the SQLite store's directory, or say why it cannot be written."""
    path = _sqlite_file(store_url(settings))
    if path is None:
        return
    directory = path.parent
    fix = "set database.data_dir (REGISTRY_MONITOR_DATABASE_DATA_DIR) to a writable directory"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(
            f"cannot create the data directory {directory}: {exc.strerror}: {fix}"
        ) from exc
    if not os.access(directory, os.W_OK | os.X_OK):
        raise CommandError(f"the data directory {directory} is not writable: {fix}")


def problem(exc: SQLAlchemyError, settings: DatabaseSettings) -> CommandError:
    """A store failure as one line: what failed, and what to do about it."""
    where = shown(settings)
    original = exc.orig if isinstance(exc, DBAPIError) else exc
    reason = (str(original).strip().splitlines() or [type(original).__name__])[0]
    if any(marker in reason for marker in MISSING_TABLE):
        return CommandError(f"the schema in {where} is not current ({reason}): {UPGRADE}")
    url = store_url(settings)
    path = _sqlite_file(url)
    if path is not None:
        return CommandError(
            f"cannot use {where}: {reason}: check that {path.parent} is writable "
            "and the file is a registry-monitor store"
        )
    if is_conflict(exc):
        return CommandError(
            f"the store at {where} kept breaking off this command's transaction for another "
            f"writer's ({reason}): run the command again"
        )
    if url.get_backend_name() == "postgresql":
        return CommandError(
            f"cannot use the store at {where}: {reason}: check that PostgreSQL is running "
            "and database.url (REGISTRY_MONITOR_DATABASE_URL) is right"
        )
    return CommandError(f"cannot use the store at {where}: {reason}")


@contextmanager
def store_engine(settings: DatabaseSettings, *, create: bool = False) -> Iterator[Engine]:
    """The store's engine, disposed on the way out; store failures become CommandError.

    Without `create` the store must exist and carry a schema (a missing SQLite file is not
    created); with it, the SQLite data directory is made when missing.
    """
    if create:
        prepare_directory(settings)
    else:
        path = _sqlite_file(store_url(settings))
        if path is not None and not path.is_file():
            raise CommandError(f"no schema in {shown(settings)}: {UPGRADE}")
    engine = make_engine(settings)
    try:
        if not create and not inspect(engine).has_table("alembic_version"):
            raise CommandError(f"no schema in {shown(settings)}: {UPGRADE}")
        yield engine
    except SQLAlchemyError as exc:
        raise problem(exc, settings) from exc
    finally:
        engine.dispose()


@contextmanager
def store_session(settings: DatabaseSettings) -> Iterator[Session]:
    """A session on the existing store (read commands); nothing is committed for the caller."""
    with store_engine(settings) as engine, Session(engine, expire_on_commit=False) as session:
        yield session
