"""The busy phase of `bench.scale intake` expires at least 1M events (10% of a smaller store)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.scaleintake import COUNT_BEFORE, _scalar, expiry_days
from bench.scalestore import Store

PER_DAY = 10
DAYS = 100


def _store_of_events(path: Path, now: datetime) -> str:
    """PER_DAY events a day over DAYS days up to `now`, stored as SQLAlchemy stores times."""
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, occurred_at TEXT)")
        start = now - timedelta(days=DAYS)
        step = timedelta(days=1) / PER_DAY
        connection.executemany(
            "INSERT INTO events (occurred_at) VALUES (?)",
            [
                ((start + step * n).replace(tzinfo=None).isoformat(" ", "microseconds"),)
                for n in range(DAYS * PER_DAY)
            ],
        )
    connection.close()
    return f"sqlite:///{path}"


def test_the_days_kept_expire_at_least_a_tenth_and_less_than_a_day_more(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    url = _store_of_events(tmp_path / "events.db", now)
    store = Store("sqlite", DAYS * PER_DAY)

    days = expiry_days(url, store)

    due = int(_scalar(url, COUNT_BEFORE, cut=datetime.now(UTC) - timedelta(days=days)))
    tenth = store.events // 10
    assert tenth <= due < tenth + PER_DAY
    # a day more kept would expire fewer than the tenth: the days are the most that reach it
    fewer = int(_scalar(url, COUNT_BEFORE, cut=datetime.now(UTC) - timedelta(days=days + 1)))
    assert fewer < tenth
