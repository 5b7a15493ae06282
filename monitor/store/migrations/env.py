"""Alembic environment: the connection comes from the caller (monitor.store.migrate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from monitor.store.schema import METADATA

config = context.config
target_metadata = METADATA


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set sqlalchemy.url or run `registry-monitor db upgrade`")
    with create_engine(url).connect() as conn:
        _run(conn)
