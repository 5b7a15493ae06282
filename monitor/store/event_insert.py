"""Events written many at a time: `INSERT … ON CONFLICT (event_id) DO NOTHING RETURNING
event_id`, one statement for a whole batch, whatever its size.

The rows go as one JSON parameter, dumped by orjson: the statement's text is the same for
every batch, so it is converted to the server's placeholders and prepared once. A multi-row
`VALUES` is a new text for each batch size, longer than psycopg caches (4,096 characters, 50
parameters): converting it took a fifth of the intake applier's time, and SQLAlchemy compiled,
bound value by value and prepared it again for every batch size on SQLite. On PostgreSQL the
rows are objects read through `json_to_recordset`, which types each column; one array a column
through `unnest` had psycopg dump every value of the 25 arrays in Python, about an eighth of
the applier's samples while it drained a backlog. On SQLite they are arrays read through
`json_each` (SQLite has no typed record set; what remains of the insert is its own work on
the table and its indexes).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import TextClause, text
from sqlalchemy.orm import Session

from monitor.events import Event
from monitor.store.columns import as_utc
from monitor.store.dialect import dialect_of
from monitor.store.schema import EventRow

COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "text"),
    ("source", "text"),
    ("action", "text"),
    ("target_kind", "text"),
    ("repository", "text"),
    ("tag", "text"),
    ("digest", "text"),
    ("media_type", "text"),
    ("size", "bigint"),
    ("from_repository", "text"),
    ("actor", "text"),
    ("remote_ip", "text"),
    ("user_agent", "text"),
    ("http_method", "text"),
    ("http_status", "integer"),
    ("request_id", "text"),
    ("request_uri", "text"),
    ("client", "text"),
    ("route", "text"),
    ("instance", "text"),
    ("references", "text"),
    ("detail", "text"),
    ("occurred_at", "timestamptz"),
    ("received_at", "timestamptz"),
    ("reconstructed", "boolean"),
)
"""Every column an event row is written with (all but `id`), with its PostgreSQL type."""


def event_row(event: Event, received_at: datetime) -> dict[str, Any]:
    """The values of `event`'s row, received at `received_at`."""
    return {
        "event_id": event.event_id,
        "source": event.source.value,
        "action": event.action.value,
        "target_kind": event.target_kind.value if event.target_kind else None,
        "repository": event.repository,
        "tag": event.tag,
        "digest": event.digest,
        "media_type": event.media_type,
        "size": event.size,
        "from_repository": event.from_repository,
        "actor": event.actor,
        "remote_ip": event.remote_ip,
        "user_agent": event.user_agent,
        "http_method": event.http_method,
        "http_status": event.http_status,
        "request_id": event.request_id,
        "request_uri": event.request_uri,
        "client": event.client.value,
        "route": event.route,
        "instance": event.instance,
        "references": orjson.dumps(list(event.references)).decode() if event.references else None,
        "detail": event.detail,
        "occurred_at": event.occurred_at,
        "received_at": received_at,
        "reconstructed": event.reconstructed,
    }


def insert_new_rows(session: Session, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert `rows` (of `event_row`, `event_id`s distinct) but those whose `event_id` is
    stored already; return the `event_id`s inserted."""
    if not rows:
        return set()
    connection = session.connection()
    if dialect_of(session) == "postgresql":
        # Aware times: orjson writes them with their offset, which `timestamptz` reads.
        records = [
            {
                **row,
                "occurred_at": as_utc(row["occurred_at"]),
                "received_at": as_utc(row["received_at"]),
            }
            for row in rows
        ]
        payload = orjson.dumps(records).decode()
        return set(connection.execute(_records_insert(), {"rows": payload}).scalars())
    values = [[_sqlite_value(row[name]) for name, _ in COLUMNS] for row in rows]
    return set(connection.execute(_json_insert(), {"rows": orjson.dumps(values)}).scalars())


def _sqlite_value(value: Any) -> Any:
    """`value` as SQLite keeps it: times as UTCDateTime writes them (naive UTC text)."""
    if isinstance(value, datetime):
        return as_utc(value).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return value


@functools.cache
def _records_insert() -> TextClause:
    """The PostgreSQL statement: one JSON array of row objects, typed by the record set's
    column list; the same text for any batch."""
    names = ", ".join(f'"{name}"' for name, _ in COLUMNS)
    typed = ", ".join(f'"{name}" {kind}' for name, kind in COLUMNS)
    # Only this module's constant names go into the text; the rows are one bound parameter.
    return text(
        f"INSERT INTO {EventRow.__tablename__} ({names}) SELECT {names}"  # noqa: S608
        f" FROM json_to_recordset(CAST(:rows AS json)) AS r({typed})"
        " ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
    )


@functools.cache
def _json_insert() -> TextClause:
    """The SQLite statement: one JSON array of rows, each an array in COLUMNS' order (JSON
    true and false are read as 1 and 0, as SQLite keeps booleans); the same text for any
    batch. `WHERE true` tells SQLite's parser the upsert clause is not a join's `ON`."""
    names = ", ".join(f'"{name}"' for name, _ in COLUMNS)
    fields = ", ".join(f"json_extract(value, '$[{n}]')" for n in range(len(COLUMNS)))
    # Only this module's constant names go into the text; the rows are one bound parameter.
    return text(
        f"INSERT INTO {EventRow.__tablename__} ({names}) SELECT {fields}"  # noqa: S608
        " FROM json_each(:rows) WHERE true"
        " ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
    )
