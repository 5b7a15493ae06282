"""Schema changes go through alembic only: models and migrations agree on both stores."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from monitor.store.migrate import current_revision, downgrade, head_revision, upgrade
from monitor.store.schema import Base


class TestMigrations:
    def test_upgrade_from_empty_reaches_head(self, db_url: str) -> None:
        """An empty database upgrades to the newest revision with every table."""
        engine = create_engine(db_url)
        upgrade(engine)
        assert head_revision() == current_revision(engine)
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
        engine.dispose()

    def test_models_and_migrations_agree(self, db_url: str) -> None:
        """After upgrade, autogenerate finds nothing to change (the `alembic check` rule)."""
        engine = create_engine(db_url)
        upgrade(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert [] == compare_metadata(context, Base.metadata)
        engine.dispose()

    def test_downgrade_and_upgrade_round_trip(self, db_url: str) -> None:
        """Down to nothing and up again works, so every revision can be undone."""
        engine = create_engine(db_url)
        upgrade(engine)
        downgrade(engine, "base")
        assert current_revision(engine) is None
        assert {"alembic_version"} >= set(inspect(engine).get_table_names())
        upgrade(engine)
        assert head_revision() == current_revision(engine)
        engine.dispose()

    def test_upgrade_twice_is_harmless(self, db_url: str) -> None:
        """`serve` migrates on every start; a second upgrade changes nothing."""
        engine = create_engine(db_url)
        upgrade(engine)
        upgrade(engine)
        assert head_revision() == current_revision(engine)
        engine.dispose()
