from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from monitor.store.migrate import current_revision, downgrade, upgrade
from monitor.store.schema import Base


class TestMigrations:
    def test_models_and_migrations_agree(self, db_url):
        """After `upgrade`, autogenerate finds no difference between the models and the store."""
        engine = create_engine(db_url)
        upgrade(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
        engine.dispose()
        assert [] == diff

    def test_0002_downgrades_and_upgrades(self, db_url):
        """Downgrading to 0001 drops the alert tables; upgrading brings them back."""
        engine = create_engine(db_url)
        upgrade(engine)
        downgrade(engine, "0001")
        after_down = (current_revision(engine), "alerts" in inspect(engine).get_table_names())
        upgrade(engine)
        tables = set(inspect(engine).get_table_names())
        engine.dispose()
        expected = (("0001", False), "0002", {"alerts", "alert_outbox", "detector_state"})
        actual = (after_down, "0002", tables & {"alerts", "alert_outbox", "detector_state"})
        assert expected == actual
