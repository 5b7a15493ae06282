"""The SQLite connections every process of `serve` keeps: write-ahead log, the configured
durability, foreign keys, and a page cache small enough to keep for months."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from monitor.store.engine import SQLITE_CACHE_KIB, make_engine
from tests.conftest import make_settings


def test_each_sqlite_connection_is_set_up_alike(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'store.db'}", tmp_path)
    engine = make_engine(settings.database)
    try:
        with engine.connect() as first, engine.connect() as second:
            for connection in (first, second):
                pragmas = [
                    connection.execute(text(f"PRAGMA {name}")).scalar()
                    for name in ("journal_mode", "synchronous", "foreign_keys", "cache_size")
                ]
                # synchronous 2 is FULL; a negative cache size is in KiB
                assert pragmas == ["wal", 2, 1, -SQLITE_CACHE_KIB]
    finally:
        engine.dispose()
