"""Build a store of N generated events fast, and hand out working copies of it.

The store is created by the project's own migrations, then filled by direct bulk insert
(SQLite: executemany on one connection with journaling off; PostgreSQL: COPY), with the
secondary indexes of `events` dropped during the load and rebuilt after. Per-tag state, pulls by
client, manifest details, blob sizes, roll-ups, the detector's cursor (at the newest event, as
after a caught-up detector) and intake coverage (the whole span) are written consistent with the
events.

Built stores are kept outside the repository (/work/bench-data, or REGISTRY_MONITOR_BENCH_DATA)
and reused: `migrate_forward` brings a kept store to the current schema, and
`working_copy` gives a disposable copy for runs that change the store (retention, intake).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Table, create_engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateIndex

from bench.scalegen import EVENT_COLUMNS, History, Spec
from monitor.store import schema
from monitor.store.migrate import current_revision, head_revision, upgrade

DATA_DIR = Path(os.environ.get("REGISTRY_MONITOR_BENCH_DATA", "/work/bench-data"))
PG_ADMIN = os.environ.get(
    "REGISTRY_MONITOR_TEST_POSTGRES_URL",
    "postgresql+psycopg://monitor_test:monitor_test@127.0.0.1:5432/monitor_test",
)
CHUNK = 50_000


@dataclasses.dataclass(frozen=True)
class Store:
    kind: str  # "sqlite" | "postgresql"
    events: int

    @property
    def name(self) -> str:
        return f"scale_{self.kind}_{self.events}"

    @property
    def meta_path(self) -> Path:
        return DATA_DIR / f"{self.name}.json"

    def url(self, *, work: bool = False) -> str:
        suffix = "_work" if work else ""
        if self.kind == "sqlite":
            return f"sqlite:///{DATA_DIR / (self.name + suffix)}.db"
        return make_url(PG_ADMIN).set(database=self.name + suffix).render_as_string(False)

    def meta(self) -> dict[str, Any]:
        return dict(json.loads(self.meta_path.read_text()))


def _events_table() -> Table:
    table = schema.EventRow.__table__
    assert isinstance(table, Table)
    return table


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _sqlite_path(url: str) -> Path:
    return Path(make_url(url).database or "")


# --- values -------------------------------------------------------------------------------


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        return value.isoformat(" ", "microseconds")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


# --- the load -----------------------------------------------------------------------------


class _Loader:
    """Bulk writes into one database, by executemany (SQLite) or COPY (PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self.kind = make_url(url).get_backend_name()
        self.url = url
        if self.kind == "sqlite":
            self.lite = sqlite3.connect(_sqlite_path(url), isolation_level=None)
            for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-1000000"):
                self.lite.execute(f"PRAGMA {pragma}")
        else:
            self.pg = psycopg.connect(_libpq(url), autocommit=True)
            self.pg.execute("SET maintenance_work_mem = '1GB'")

    def execute(self, sql: str) -> None:
        if self.kind == "sqlite":
            self.lite.execute(sql)
        else:
            self.pg.execute(sql.encode())

    def load(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        count = 0
        quoted = ", ".join(f'"{c}"' for c in columns)
        if self.kind == "sqlite":
            marks = ", ".join("?" * len(columns))
            sql = f"INSERT INTO {table} ({quoted}) VALUES ({marks})"  # noqa: S608 (our names)
            self.lite.execute("BEGIN")
            for chunk in _chunks(rows):
                self.lite.executemany(sql, [[_sqlite_value(v) for v in row] for row in chunk])
                count += len(chunk)
            self.lite.execute("COMMIT")
            return count
        with self.pg.cursor() as cursor, cursor.copy(f"COPY {table} ({quoted}) FROM STDIN") as copy:
            for chunk in _chunks(rows):
                copy.write("".join("\t".join(_copy_value(v) for v in row) + "\n" for row in chunk))
                count += len(chunk)
        return count

    def close(self) -> None:
        if self.kind == "sqlite":
            self.lite.execute("PRAGMA journal_mode=WAL")
            self.lite.close()
        else:
            self.pg.close()


def _chunks(rows: Iterable[Sequence[Any]]) -> Iterator[list[Sequence[Any]]]:
    chunk: list[Sequence[Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _create_database(store: Store, *, work: bool = False, template: str | None = None) -> None:
    name = store.name + ("_work" if work else "")
    with psycopg.connect(_libpq(PG_ADMIN), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
        clause = f' TEMPLATE "{template}" STRATEGY FILE_COPY' if template else ""
        admin.execute(f'CREATE DATABASE "{name}"{clause}'.encode())


def build(store: Store, spec: Spec, *, progress: bool = True) -> dict[str, Any]:
    """Create the pristine store of `spec.events` events; returns (and saves) its metadata."""
    assert spec.events == store.events
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    url = store.url()
    if store.kind == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{_sqlite_path(url)}{suffix}").unlink(missing_ok=True)
    else:
        _create_database(store)
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()

    dialect: Any = sqlite.dialect() if store.kind == "sqlite" else postgresql.dialect()  # type: ignore[no-untyped-call]
    events = _events_table()
    secondary = [i for i in events.indexes if not i.unique]
    loader = _Loader(url)
    for index in secondary:
        loader.execute(f"DROP INDEX {index.name}")
    history = History(spec)
    marks = [time.monotonic()]

    def tick(rows: Iterable[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
        for n, row in enumerate(rows, 1):
            if progress and n % 1_000_000 == 0:
                print(f"  {n:,} events, {time.monotonic() - started:.0f} s", flush=True)
            yield row

    loaded = loader.load("events", EVENT_COLUMNS, tick(history.events()))
    marks.append(time.monotonic())
    for index in secondary:
        loader.execute(str(CreateIndex(index).compile(dialect=dialect)))
    marks.append(time.monotonic())
    _load_derived(loader, history, spec)
    if store.kind == "postgresql":
        loader.execute(f"SELECT setval('events_id_seq', {history.last_id})")
        loader.execute("VACUUM ANALYZE")
    loader.close()
    marks.append(time.monotonic())
    meta = {
        "events": loaded,
        "tags": len(history.tags),
        "manifests": len(history.manifests),
        "repositories": spec.repositories,
        "busiest": history.busiest,
        "busiest_events": sum(
            c for (_, repo, _, _), c in history.daily.items() if repo == history.busiest
        ),
        "start": spec.start.isoformat(),
        "end": spec.end.isoformat(),
        "last_id": history.last_id,
        "seconds": {
            "events": round(marks[1] - marks[0], 1),
            "indexes": round(marks[2] - marks[1], 1),
            "derived": round(marks[3] - marks[2], 1),
            "total": round(marks[3] - started, 1),
        },
        "size_bytes": _size(store),
    }
    store.meta_path.write_text(json.dumps(meta, indent=2))
    return meta


def _load_derived(loader: _Loader, history: History, spec: Spec) -> None:
    loader.load(
        "tag_state",
        ("repository", "tag", "digest", "media_type", "first_seen_at", "last_pushed_at",
         "last_pushed_by", "last_pulled_at", "pull_count", "deleted_at"),
        (
            (repo, tag, s.digest, s.media_type, s.first_seen_at, s.last_pushed_at,
             s.last_pushed_by, s.last_pulled_at, s.pull_count, s.deleted_at)
            for (repo, tag), s in history.tags.items()
        ),
    )  # fmt: skip
    loader.load(
        "tag_pulls",
        ("repository", "tag", "http_method", "client", "last_pulled_at", "pull_count"),
        ((*key, at, count) for key, (at, count) in history.pulls.items()),
    )
    loader.load(
        "manifest_info",
        ("repository", "digest", "media_type", "size", "children", "blobs", "pushed_at",
         "learned_at"),
        (
            (repo, digest, m.media_type, m.size, json.dumps(m.children),
             json.dumps([[d, s] for d, s in m.blobs]), m.pushed_at, m.pushed_at)
            for (repo, digest), m in history.manifests.items()
        ),
    )  # fmt: skip
    loader.load(
        "blob_sizes",
        ("repository", "digest", "size"),
        ((repo, digest, size) for (repo, digest), size in history.blob_sizes.items()),
    )
    loader.load(
        "event_rollups",
        ("day", "repository", "action", "client", "count"),
        rollup_rows(history, spec),
    )
    # The newest event per source, as inserting keeps it (one pass over the loaded events).
    loader.execute(
        "INSERT INTO event_sources (source, newest_occurred_at) "
        "SELECT source, max(occurred_at) FROM events GROUP BY source"
    )
    loader.load(
        "detector_state",
        ("name", "state", "cursor", "updated_at"),
        [("default", None, history.last_id, spec.end)],
    )
    loader.load(
        "intake_coverage",
        ("replica", "source", "started_at", "last_seen_at"),
        [("bench-scale", "notification", spec.start, spec.end)],
    )


def rollup_rows(history: History, spec: Spec) -> Iterator[tuple[Any, ...]]:
    """Roll-up rows as the store holds them: every day, since events are counted as inserted."""
    for (day, repo, action, client), count in sorted(history.daily.items()):
        yield day, repo, action, client, count


def _size(store: Store) -> int:
    if store.kind == "sqlite":
        return _sqlite_path(store.url()).stat().st_size
    with psycopg.connect(_libpq(store.url())) as connection:
        row = connection.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(row[0]) if row else 0


# --- reuse --------------------------------------------------------------------------------


def exists(store: Store) -> bool:
    if not store.meta_path.exists():
        return False
    if store.kind == "sqlite":
        return _sqlite_path(store.url()).exists()
    with psycopg.connect(_libpq(PG_ADMIN)) as admin:
        found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (store.name,))
        return found.fetchone() is not None


def migrate_forward(store: Store) -> None:
    """Bring a kept store to the current schema (what `registry-monitor db upgrade` does)."""
    engine = create_engine(store.url())
    try:
        if current_revision(engine) != head_revision():
            upgrade(engine)
    finally:
        engine.dispose()


SQLITE_FILES = (
    "", "-wal", "-shm", ".intake", ".intake-wal", ".intake-shm",
    ".intake-2", ".intake-2-wal", ".intake-2-shm",
)  # fmt: skip
"""The files of a SQLite store at a path: the store, its log, and the intake inbox beside it. A
copy made where an earlier run's copy was must not find that run's inbox: serve would apply
its bodies again, and answer 503 until the backlog fell under notifications.inbox_max."""


def remove_sqlite_files(path: Path, *, keep_store: bool = False) -> None:
    for suffix in SQLITE_FILES[1:] if keep_store else SQLITE_FILES:
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def working_copy(store: Store) -> str:
    """A fresh copy of the pristine store for a run that changes it; returns its URL."""
    migrate_forward(store)
    if store.kind == "sqlite":
        source, target = _sqlite_path(store.url()), _sqlite_path(store.url(work=True))
        remove_sqlite_files(target, keep_store=True)
        shutil.copyfile(source, target)
        # On disk before the run: otherwise the kernel writes the 9 GB back while the first
        # measurement runs, and each of serve's commits waits behind it (p99 of 270-410 ms).
        with target.open("rb+") as copied:
            os.fsync(copied.fileno())
    else:
        _create_database(store, work=True, template=store.name)
    return store.url(work=True)


def drop_working_copy(store: Store) -> None:
    if store.kind == "sqlite":
        remove_sqlite_files(_sqlite_path(store.url(work=True)))
        return
    with psycopg.connect(_libpq(PG_ADMIN), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{store.name}_work" WITH (FORCE)'.encode())
