"""An interrupted upgrade leaves the store at its previous revision, and a later one succeeds."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from monitor.errors import StoreUnavailable
from monitor.store.migrate import current_revision, head_revision, upgrade
from tests.console import console_environment, console_script, run_console
from tests.harness import wait_until

ROWS = 200_000


def old_store(path: Path) -> str:
    """A SQLite store at revision 0010 holding ROWS events (0011 rebuilds the events table)."""
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    upgrade(engine, "0010")
    engine.dispose()
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO events (event_id, source, action, target_kind, repository, digest, "
            "user_agent, client, occurred_at, received_at) VALUES (?, 'notification', 'push', "
            "'manifest', 'team/app', ?, ?, 'docker', '2026-11-30 10:00:00', '2026-11-30 10:00:01')",
            ((f"event-{n:08d}", f"sha256:{n:064x}", "docker/27.3.1 " * 8) for n in range(ROWS)),
        )
    return url


def tables(path: Path) -> set[str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def event_count(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        (count,) = db.execute("SELECT count(*) FROM events").fetchone()
        return int(count)


class TestInterruptedUpgrade:
    def test_killed_upgrade_rolls_back_and_the_next_one_succeeds(self, tmp_path: Path) -> None:
        """SIGKILL while 0011 copies the events table: still at 0010, no copy, nothing lost."""
        path = tmp_path / "store.db"
        url = old_store(path)
        wal = path.with_name("store.db-wal")
        before = wal.stat().st_size if wal.exists() else 0
        env = console_environment({"REGISTRY_MONITOR_DATABASE_URL": url})
        process = subprocess.Popen(
            [str(console_script()), "db", "upgrade"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # The copy's pages spill into the write-ahead log before anything commits.
            wait_until(
                lambda: (
                    process.poll() is not None
                    or (wal.exists() and wal.stat().st_size > before + 8_000_000)
                ),
                timeout=60,
                what="the upgrade to write the copy of the events table",
            )
            assert process.poll() is None, "the upgrade finished before it could be interrupted"
            process.send_signal(signal.SIGKILL)
        finally:
            process.kill()
            process.communicate(timeout=30)
        engine = create_engine(url)
        assert "0010" == current_revision(engine)
        engine.dispose()
        assert [] == [t for t in tables(path) if t.startswith("_alembic_tmp_")]
        assert ROWS == event_count(path)

        again = run_console(
            "db", "upgrade", cwd=tmp_path, env={"REGISTRY_MONITOR_DATABASE_URL": url}
        )
        assert (0, "") == (again.returncode, again.stderr)
        engine = create_engine(url)
        assert head_revision() == current_revision(engine)
        engine.dispose()
        assert ROWS == event_count(path)


class TestCopiesLeftByEarlierVersions:
    def test_a_partial_copy_beside_its_table_is_dropped_with_a_warning(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        path = tmp_path / "store.db"
        url = old_store(path)
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE _alembic_tmp_events (id INTEGER PRIMARY KEY)")
            db.execute("INSERT INTO _alembic_tmp_events VALUES (1)")
        engine = create_engine(url)
        upgrade(engine)
        assert head_revision() == current_revision(engine)
        engine.dispose()
        assert "_alembic_tmp_events" not in tables(path)
        assert ROWS == event_count(path)
        assert any("_alembic_tmp_events" in r.getMessage() for r in caplog.records)

    def test_a_copy_whose_table_was_dropped_is_left_alone_with_an_error(
        self, tmp_path: Path
    ) -> None:
        """Killed between dropping `events` and renaming the copy: the copy is the data."""
        path = tmp_path / "store.db"
        url = old_store(path)
        with sqlite3.connect(path) as db:
            db.execute("ALTER TABLE events RENAME TO _alembic_tmp_events")
        engine = create_engine(url)
        with pytest.raises(StoreUnavailable, match="_alembic_tmp_events holds the only copy"):
            upgrade(engine)
        assert "0010" == current_revision(engine)
        engine.dispose()
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            (count,) = db.execute("SELECT count(*) FROM _alembic_tmp_events").fetchone()
        assert ROWS == count
