"""Shared fixtures: a fresh store on SQLite and on a real PostgreSQL, settings, services."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import structlog
from prometheus_client import CollectorRegistry
from psycopg import sql
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from monitor.main import build_services
from monitor.runtime import Services
from monitor.settings import Settings, load_settings
from monitor.store.migrate import upgrade
from tests.registry_harness import REGISTRY_VERSIONS

POSTGRES_ADMIN_URL = os.environ.get(
    "REGISTRY_MONITOR_TEST_POSTGRES_URL",
    "postgresql+psycopg://monitor_test:monitor_test@127.0.0.1:5432/monitor_test",
)


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresDatabases:
    """Creates and drops throw-away databases on the test PostgreSQL server."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        try:
            with psycopg.connect(_libpq(admin_url), connect_timeout=5):
                pass
        except psycopg.OperationalError as exc:
            raise RuntimeError(
                f"PostgreSQL is required for these tests and is not reachable at {admin_url}: "
                f"{exc}. Run scripts/postgres-start (needs the postgresql package)."
            ) from exc

    def create(self, *, template: str | None = None) -> str:
        """A new database: empty, or a copy of the database at URL `template`."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        copy = f' TEMPLATE "{make_url(template).database}"' if template else ""
        with psycopg.connect(_libpq(self.admin_url), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{copy}')
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        with psycopg.connect(_libpq(self.admin_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def rename(self, url: str) -> str:
        """Give database `url` a new name after ending its sessions; returns its new URL."""
        name = make_url(url).database
        fresh = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(_libpq(self.admin_url), autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            deadline = time.monotonic() + 10
            while True:  # a session ended by pg_terminate_backend leaves a moment later
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,),
                )
                try:
                    conn.execute(f'ALTER DATABASE "{name}" RENAME TO "{fresh}"')
                    break
                except psycopg.errors.ObjectInUse:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            conn.execute(f'ALTER DATABASE "{fresh}" WITH ALLOW_CONNECTIONS true')
        return make_url(self.admin_url).set(database=fresh).render_as_string(hide_password=False)

    def set_allow_connections(self, url: str, allowed: bool) -> None:
        """Simulate a database outage: refuse new connections and end the open ones."""
        name = make_url(url).database
        with psycopg.connect(_libpq(self.admin_url), autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}')
            if not allowed:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,),
                )


@contextlib.contextmanager
def store_refusing(engine: Engine, column: str, value: str) -> Iterator[None]:
    """The store itself refuses events whose `column` is `value` (a trigger on SQLite, a CHECK
    constraint on PostgreSQL: a refusal of the data, not an outage); removed afterwards, since
    a PostgreSQL test database is emptied and reused."""
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.execute(
                text(
                    f"CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.{column} = '{value}' "
                    "BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
        else:
            connection.execute(
                text(
                    "ALTER TABLE events ADD CONSTRAINT refuse "
                    f"CHECK ({column} IS NULL OR {column} <> '{value}')"
                )
            )
    try:
        yield
    finally:
        with engine.begin() as connection:
            if engine.dialect.name == "sqlite":
                connection.execute(text("DROP TRIGGER refuse"))
            else:
                connection.execute(text("ALTER TABLE events DROP CONSTRAINT refuse"))


class SqliteWriteLock:
    """Another process holding SQLite's write lock: every write of ours waits, then fails."""

    def __init__(self, db_url: str) -> None:
        import sqlite3

        self._connection = sqlite3.connect(
            make_url(db_url).database or "", timeout=30, isolation_level=None
        )
        self._connection.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self._connection.execute("ROLLBACK")
        self._connection.close()


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    """Each test starts from structlog's defaults, whatever a command run before configured."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture(params=REGISTRY_VERSIONS)
def registry_version(request: pytest.FixtureRequest) -> str:
    """Each supported registry line ("2.8", "3.1"): a test taking this runs against both real
    binaries (`tests.registry_harness.registry_binary(version)`)."""
    version: str = request.param
    return version


@pytest.fixture(scope="session")
def postgres() -> PostgresDatabases:
    return PostgresDatabases(POSTGRES_ADMIN_URL)


class MigratedStores:
    """Stores with the schema at head, migrated once per test session instead of once per test.

    SQLite: each test gets a copy of one migrated file. PostgreSQL: each test gets a database
    created from a migrated template (`CREATE DATABASE … TEMPLATE`); when the test is done its
    database is emptied (`TRUNCATE … RESTART IDENTITY`) and renamed, so the URL the test used
    reaches nothing, and a later test gets it instead of a new one. Creating and dropping a
    database each costs PostgreSQL a checkpoint; emptying one does not.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._sqlite: Path | None = None
        self._template: str | None = None
        self._databases: PostgresDatabases | None = None
        self._schema: tuple[frozenset[str], str] | None = None
        self._recycle = True
        self._idle: list[str] = []

    def sqlite_file(self) -> Path:
        if self._sqlite is None:
            path = self.folder / "migrated.db"
            _migrate(f"sqlite:///{path}")
            self._sqlite = path
        return self._sqlite

    def checkout(self, databases: PostgresDatabases) -> str:
        """The URL of a PostgreSQL database with the schema at head and no rows, for one test."""
        if self._idle:
            return self._idle.pop()
        if self._template is None:
            self._databases = databases
            self._template = databases.create()
            _migrate(self._template)
            self._schema = _schema(self._template)
            # A migration that adds rows would need them copied back: then drop, never recycle.
            self._recycle = not _has_rows(self._template)
        return databases.create(template=self._template)

    def checkin(self, databases: PostgresDatabases, url: str) -> None:
        """Take back a test's database: emptied under a new name, or dropped when it cannot be
        (its schema changed, or it cannot be renamed or emptied)."""
        if not self._recycle:
            databases.drop(url)
            return
        try:
            fresh = databases.rename(url)
            if _schema(fresh) != self._schema:
                databases.drop(fresh)
                return
            _empty(fresh)
        except psycopg.Error:
            databases.drop(url)
            return
        self._idle.append(fresh)

    def close(self) -> None:
        if self._databases is not None:
            for url in [*self._idle, *([self._template] if self._template else [])]:
                self._databases.drop(url)


def _schema(url: str) -> tuple[frozenset[str], str]:
    """The tables of a database and its alembic revision."""
    with psycopg.connect(_libpq(url)) as conn:
        tables = frozenset(
            str(row[0])
            for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        )
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone() or ("",)
    return tables, str(revision)


def _has_rows(url: str) -> bool:
    tables, _ = _schema(url)
    with psycopg.connect(_libpq(url)) as conn:
        return any(
            conn.execute(
                sql.SQL("SELECT EXISTS (SELECT FROM {})").format(sql.Identifier(t))
            ).fetchone()
            == (True,)
            for t in tables - {"alembic_version"}
        )


def _empty(url: str) -> None:
    """Delete every row but the alembic revision and restart every id sequence."""
    tables, _ = _schema(url)
    names = sql.SQL(", ").join(sql.Identifier(t) for t in sorted(tables - {"alembic_version"}))
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(names))


def _migrate(url: str) -> None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def migrated_stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigratedStores]:
    stores = MigratedStores(tmp_path_factory.mktemp("migrated"))
    try:
        yield stores
    finally:
        stores.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database, on each supported store."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres")
    url = databases.create()
    try:
        yield url
    finally:
        databases.drop(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_stores: MigratedStores
) -> Iterator[str]:
    """A URL of a database of its own with the schema at head, on each supported store."""
    if request.param == "sqlite":
        path = tmp_path / "store.db"
        shutil.copyfile(migrated_stores.sqlite_file(), path)
        yield f"sqlite:///{path}"
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres")
    url = migrated_stores.checkout(databases)
    try:
        yield url
    finally:
        migrated_stores.checkin(databases, url)


def make_settings(db_url: str, tmp_path: Path, **env: str) -> Settings:
    environ = {
        "REGISTRY_MONITOR_DATABASE_URL": db_url,
        "REGISTRY_MONITOR_DATABASE_DATA_DIR": str(tmp_path / "data"),
        "REGISTRY_MONITOR_NOTIFICATIONS_TOKENS": "s3cret,next-s3cret",
        # In-process tests apply the intake inbox on a thread (a child process per test would
        # cost its start-up each time); tests/store/test_inbox.py and the end-to-end tests,
        # which run `serve`, cover the default child process.
        "REGISTRY_MONITOR_NOTIFICATIONS_APPLIER": "thread",
        **env,
    }
    return load_settings(environ)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path)


@pytest.fixture
def postgres_services(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    migrated_stores: MigratedStores,
    postgres: PostgresDatabases,
) -> Iterator[tuple[Services, str]]:
    """Services on a PostgreSQL store of their own (for what only PostgreSQL has), and its URL.
    Parametrized indirectly with "inbox_file", their intake inbox is a file of their own."""
    url = migrated_stores.checkout(postgres)
    env = {}
    if getattr(request, "param", None) == "inbox_file":
        env["REGISTRY_MONITOR_NOTIFICATIONS_INBOX_FILE"] = str(tmp_path / "replica" / "inbox")
    settings = make_settings(url, tmp_path, **env)
    built = build_services(settings, registry=CollectorRegistry(), migrate=True)
    built.start()
    try:
        yield built, url
    finally:
        built.stop()
        built.engine.dispose()
        migrated_stores.checkin(postgres, url)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    """Migrated store, fresh metrics registry, writer, intake inbox and applier running."""
    built = build_services(settings, registry=CollectorRegistry(), migrate=True)
    built.start()
    try:
        yield built
    finally:
        built.stop()
        built.engine.dispose()
