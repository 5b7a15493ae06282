"""What every table is made of: the declarative base (with the constraint naming convention)
and column types that mean the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Dialect,
    Integer,
    MetaData,
    Text,
    TypeDecorator,
    type_coerce,
)
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


WITHOUT_ROWID = {"sqlite_with_rowid": False}
"""`__table_args__` of a table SQLite keeps in its primary key's b-tree (no rowid): for tables
read whole in key order (cleanup planning) and upserted by key (migration 0013)."""


def as_utc(value: datetime) -> datetime:
    """`value` in UTC; a naive datetime is refused (its zone is unknown)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store; pass aware UTC")
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on every dialect.

    SQLite keeps them as naive UTC text (which sorts correctly); PostgreSQL as timestamptz.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = as_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return utc_time(value)


def raw_time(column: Any) -> Any:
    """`column` (a UTCDateTime) selected as the driver returns it, for `utc_time` to convert:
    reads of a million rows spend several times less on their times."""
    return type_coerce(column, Text()).label(column.name)


def utc_time(value: Any) -> datetime:
    """What UTCDateTime gives for a time as the driver returns it (SQLite's naive UTC text,
    PostgreSQL's aware datetime, already in UTC as the engine sets each session's time zone):
    an aware UTC datetime."""
    if isinstance(value, str):
        try:  # naive UTC text, as UTCDateTime writes it: parsed with its zone in one call
            return datetime.fromisoformat(value + "+00:00")
        except ValueError:
            value = datetime.fromisoformat(value)
    zone = value.tzinfo
    if zone is UTC:
        return value  # type: ignore[no-any-return]
    if zone is None:
        return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
    return value.astimezone(UTC)  # type: ignore[no-any-return]


# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")
