"""Schema changes go through alembic only: models and migrations agree on both stores."""

from __future__ import annotations

import pickle
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, Table, create_engine, inspect, select, text
from sqlalchemy.orm import Session

from monitor.detect.saved_state import saved_form, state_from_saved
from monitor.detect.state import Baseline, DetectorState, state_from_json
from monitor.events import Event, TargetKind
from monitor.store.events import insert_events
from monitor.store.migrate import (
    alembic_config,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from monitor.store.schema import METADATA, BlobSizeRow, EventRow
from tests.conftest import make_settings
from tests.fixture_events import scenario_events


def insert_old_events(session: Session, events: list[Event], *, received_at: datetime) -> None:
    """Insert `events` into the events table as an older revision has it (only its columns)."""
    old = Table("events", MetaData(), autoload_with=session.connection())
    with Session(create_engine("sqlite://")) as scratch, scratch.begin():
        EventRow.metadata.create_all(scratch.connection())
        insert_events(scratch, events, received_at=received_at)
        rows = [dict(row._mapping) for row in scratch.execute(select(EventRow.__table__))]
    session.execute(old.insert(), [{k: v for k, v in r.items() if k in old.c} for r in rows])


class TestMigrations:
    def test_upgrade_from_empty_reaches_head(self, empty_db_url: str) -> None:
        """An empty database upgrades to the newest revision with every table."""
        engine = create_engine(empty_db_url)
        upgrade(engine)
        assert head_revision() == current_revision(engine)
        assert set(METADATA.tables) <= set(inspect(engine).get_table_names())
        engine.dispose()

    def test_models_and_migrations_agree(self, empty_db_url: str) -> None:
        """After upgrade, autogenerate finds nothing to change (the `alembic check` rule)."""
        engine = create_engine(empty_db_url)
        upgrade(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert [] == compare_metadata(context, METADATA)
        engine.dispose()

    def test_downgrade_and_upgrade_round_trip(self, empty_db_url: str) -> None:
        """Down to nothing and up again works, so every revision can be undone."""
        engine = create_engine(empty_db_url)
        upgrade(engine)
        downgrade(engine, "base")
        assert current_revision(engine) is None
        assert {"alembic_version"} >= set(inspect(engine).get_table_names())
        upgrade(engine)
        assert head_revision() == current_revision(engine)
        engine.dispose()

    def test_upgrade_twice_is_harmless(self, empty_db_url: str) -> None:
        """`serve` migrates on every start; a second upgrade changes nothing."""
        engine = create_engine(empty_db_url)
        upgrade(engine)
        upgrade(engine)
        assert head_revision() == current_revision(engine)
        engine.dispose()

    def test_the_newest_revision_is_alembic_s_head(self) -> None:
        """The head read from the migration files is the one alembic computes."""
        script = ScriptDirectory.from_config(alembic_config())
        assert script.get_current_head() == head_revision()

    def test_the_service_migrates_without_loading_alembic(
        self, empty_db_url: str, tmp_path: Path
    ) -> None:
        """`serve` upgrades at every start. It runs a migration in a child process and finds a
        store at head without one: either way it loads none of alembic's modules, which would
        stay in its memory (about 12 MiB) for its life."""
        settings = make_settings(empty_db_url, tmp_path)
        probe = (
            "import pickle, sys\n"
            "from prometheus_client import CollectorRegistry\n"
            "from monitor.main import build_services\n"
            "settings = pickle.loads(sys.stdin.buffer.read())\n"
            "for start in range(2):\n"
            "    build_services(settings, registry=CollectorRegistry()).engine.dispose()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", probe],
            input=pickle.dumps(settings),
            capture_output=True,
            check=True,
        )
        engine = create_engine(empty_db_url)
        try:
            assert (b"[]", head_revision()) == (result.stdout.strip(), current_revision(engine))
        finally:
            engine.dispose()


class TestBlobSizesMigration:
    def test_upgrade_learns_blob_sizes_from_the_events_kept(self, empty_db_url: str) -> None:
        """A store upgraded to blob_sizes knows the sizes of the blobs its events name."""
        engine = create_engine(empty_db_url)
        upgrade(engine, "0009")
        blobs = [e for e in scenario_events() if e.target_kind is TargetKind.BLOB]
        with Session(engine) as session, session.begin():
            insert_old_events(session, blobs, received_at=datetime(2026, 11, 27, tzinfo=UTC))
        upgrade(engine)
        with Session(engine) as session:
            known = {(r.repository, r.digest): r.size for r in session.scalars(select(BlobSizeRow))}
        engine.dispose()
        expected = {(e.repository, e.digest): e.size for e in blobs if e.size is not None}
        assert expected == known


CLUSTERED = ("tag_state", "tag_pulls", "manifest_info")


def without_rowid(engine: Engine) -> dict[str, bool]:
    """For each table of `CLUSTERED` in SQLite's catalogue: whether it has no rowid."""
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
        ).all()
    return {name: "WITHOUT ROWID" in sql.upper() for name, sql in rows if name in CLUSTERED}


class TestClusteredStateMigration:
    def test_sqlite_keeps_state_pulls_and_manifests_in_key_order_with_their_rows(
        self, tmp_path: Path
    ) -> None:
        """0013 rebuilds the three tables that planning reads whole as WITHOUT ROWID tables,
        rows, indexes and all; its downgrade gives them their rowid back."""
        engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
        upgrade(engine, "0012")
        with Session(engine) as session, session.begin():
            for table, row in ROWS.items():
                columns = ", ".join(row)
                values = ", ".join(f":{name}" for name in row)
                session.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({values})"), row)  # noqa: S608
        assert dict.fromkeys(CLUSTERED, False) == without_rowid(engine)
        upgrade(engine)
        assert dict.fromkeys(CLUSTERED, True) == without_rowid(engine)
        assert ROWS == stored_rows(engine)
        assert {"ix_tag_state_repository_digest"} == {
            i["name"] for i in inspect(engine).get_indexes("tag_state")
        }
        downgrade(engine, "0012")
        assert dict.fromkeys(CLUSTERED, False) == without_rowid(engine)
        assert ROWS == stored_rows(engine)
        engine.dispose()


ROWS: dict[str, dict[str, Any]] = {
    "tag_state": {
        "repository": "team/app", "tag": "v1", "digest": "sha256:" + "a" * 64,
        "media_type": "application/vnd.oci.image.manifest.v1+json",
        "first_seen_at": "2026-11-27 10:00:00.000000", "last_pushed_at": None,
        "last_pushed_by": "ci", "last_pulled_at": None, "pull_count": 3, "deleted_at": None,
    },
    "tag_pulls": {
        "repository": "team/app", "tag": "v1", "http_method": "GET", "client": "docker",
        "last_pulled_at": "2026-11-28 10:00:00.000000", "pull_count": 3,
    },
    "manifest_info": {
        "repository": "team/app", "digest": "sha256:" + "a" * 64,
        "media_type": "application/vnd.oci.image.manifest.v1+json", "size": 1234,
        "children": "[]", "blobs": '[["sha256:' + "b" * 64 + '", 99]]',
        "pushed_at": None, "learned_at": "2026-11-27 10:00:00.000000",
    },
}  # fmt: skip


def stored_rows(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as connection:
        return {
            table: dict(connection.execute(text(f"SELECT * FROM {table}")).one()._mapping)  # noqa: S608
            for table in CLUSTERED
        }


class TestDetectorPartsMigration:
    def test_downgrade_puts_the_parts_back_into_one_document(self, empty_db_url: str) -> None:
        """A state saved in parts is one version 2 document again below 0015, which the code
        of that revision reads; upgraded again, it is read as it is."""
        state = DetectorState(
            baselines={"alice": Baseline(since=1, addresses={"10.0.0.1": 5, "10.0.0.2": 7})},
            tags={"team/app": {"v1": "sha256:" + "a" * 64}},
        )
        core, parts = saved_form(state)
        engine = create_engine(empty_db_url)
        upgrade(engine)
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO detector_state (name, state, cursor, updated_at)"
                    " VALUES ('default', :state, 3, :at)"
                ),
                {"state": core, "at": datetime(2026, 12, 3, tzinfo=UTC)},
            )
            for part, body in parts.items():
                connection.execute(
                    text(
                        "INSERT INTO detector_parts (name, part, body) VALUES ('default', :p, :b)"
                    ),
                    {"p": part, "b": body},
                )
        downgrade(engine, "0014")
        with engine.connect() as connection:
            document = connection.scalar(text("SELECT state FROM detector_state"))
        upgrade(engine)
        engine.dispose()
        assert (state, (state, False)) == (
            state_from_json(document),
            state_from_saved(document, []),
        )


class TestEventsReceivedAtIndexMigration:
    def test_upgrade_drops_the_index_no_query_reads_and_downgrade_restores_it(
        self, empty_db_url: str
    ) -> None:
        """Events are read by id and by `occurred_at`, never by `received_at`: 0016 drops that
        index (one entry less written for each event stored), 0015 has it again."""
        engine = create_engine(empty_db_url)

        def by_received_at() -> list[str]:
            indexes = inspect(engine).get_indexes("events")
            return [str(i["name"]) for i in indexes if i["column_names"] == ["received_at"]]

        upgrade(engine)
        assert [] == by_received_at()
        downgrade(engine, "0015")
        assert ["ix_events_received_at"] == by_received_at()
        upgrade(engine)
        assert [] == by_received_at()
        engine.dispose()
