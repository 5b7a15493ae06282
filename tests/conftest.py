"""Shared fixtures: a fresh store on SQLite and on a real PostgreSQL, settings, services."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import structlog
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url

from monitor.main import build_services
from monitor.runtime import Services
from monitor.settings import Settings, load_settings
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

    def create(self) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(_libpq(self.admin_url), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        with psycopg.connect(_libpq(self.admin_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

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


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
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


def make_settings(db_url: str, tmp_path: Path, **env: str) -> Settings:
    environ = {
        "REGISTRY_MONITOR_DATABASE_URL": db_url,
        "REGISTRY_MONITOR_DATABASE_DATA_DIR": str(tmp_path / "data"),
        "REGISTRY_MONITOR_NOTIFICATIONS_TOKENS": "s3cret,next-s3cret",
        **env,
    }
    return load_settings(environ)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    """Migrated store, fresh metrics registry, writer running."""
    built = build_services(settings, registry=CollectorRegistry(), migrate=True)
    built.writer.start()
    try:
        yield built
    finally:
        built.writer.stop()
        built.engine.dispose()
