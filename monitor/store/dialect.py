"""What differs between the two stores, in one place: the name of the session's database and the
INSERT that can say ON CONFLICT (PostgreSQL's and SQLite's are two classes in SQLAlchemy); and
key lists for `IN (...)` in a few fixed lengths, so hot lookups run statements built once."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

Insert = postgresql.Insert | sqlite.Insert


def dialect_of(session: Session) -> str:
    """`postgresql` or `sqlite`: the database the session is bound to."""
    return session.get_bind().dialect.name


def upsert(dialect: str, table: Any) -> Insert:
    """An INSERT into `table` that takes `on_conflict_do_nothing`/`on_conflict_do_update`."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


IN_LIST_MAX = 512
"""The most keys one `IN` list holds; longer lists are looked up in chunks."""


def in_list_size(count: int) -> int:
    """The length of an `IN` list holding `count` (at most IN_LIST_MAX) keys: the next power of
    two, so a lookup takes one of a few statements built once (SQLAlchemy rewrites a statement
    with an expanding parameter at every execution)."""
    return 1 << max(count - 1, 0).bit_length()


def in_list_chunks(prefix: str, keys: Sequence[Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    """`keys` in chunks of at most IN_LIST_MAX, each as (list length, parameters `{prefix}0`…),
    padded to `in_list_size` by repeating its last key."""
    for start in range(0, len(keys), IN_LIST_MAX):
        chunk = keys[start : start + IN_LIST_MAX]
        size = in_list_size(len(chunk))
        padded = [*chunk, *[chunk[-1]] * (size - len(chunk))]
        yield size, {f"{prefix}{n}": key for n, key in enumerate(padded)}
