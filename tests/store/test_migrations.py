"""Migrations and models agree, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from monitor.store.migrate import current_revision, downgrade, head_revision, upgrade
from monitor.store.schema import Base

CLEANUP_TABLES = {
    "cleanup_plans",
    "cleanup_journal",
    "cleanup_saved_manifests",
    "registry_tags",
    "manifest_info",
    "job_locks",
}


def pending_diff(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


class TestMigrations:
    def test_upgraded_schema_matches_the_models(self, db_url: str) -> None:
        """After `upgrade head` autogenerate finds nothing to change."""
        engine = create_engine(db_url)
        upgrade(engine)
        engine.dispose()
        assert [] == pending_diff(db_url)

    def test_cleanup_tables_round_trip(self, db_url: str) -> None:
        """Downgrading to 0001 drops the cleanup tables; upgrading brings them back at head."""
        engine = create_engine(db_url)
        try:
            upgrade(engine)
            downgrade(engine, "0001")
            after_down = set(inspect(engine).get_table_names()) & CLEANUP_TABLES
            upgrade(engine)
            after_up = set(inspect(engine).get_table_names()) & CLEANUP_TABLES
            expected: tuple[object, ...] = (set(), CLEANUP_TABLES, head_revision())
            assert expected == (after_down, after_up, current_revision(engine))
        finally:
            engine.dispose()
