"""Keyset pagination by time, one way for every list ordered by (a time, a unique key): a page
of `limit` rows, and an opaque cursor (`monitor.store.cursors`) naming the last row of the page.

The next page holds the rows strictly beyond the cursor in the order asked for, so rows added
meanwhile neither repeat nor shift a page. Lists in primary key order (tags, daily counts) page
with `after_key`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, literal, or_, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from monitor.errors import InvalidQuery
from monitor.events import format_timestamp, parse_timestamp
from monitor.ingest.boundary import MAX_BIGINT, READ_CEILING, READ_FLOOR
from monitor.store.cursors import decode_key, encode_key

R = TypeVar("R")
Position = tuple[datetime, int | str]
"""Where a row stands in the order: its time and its unique key."""

SCAN_ROWS = 10_000
"""Most rows a page filtered beyond what an index serves examines. Without a bound, a filter
that matches rarely (an event's tag, its source) walks the whole list for one page: 7 minutes
on 10M events in SQLite, cold, holding a read slot and a read transaction all along. A page
that examined this many rows without filling up ends there, with fewer items than its limit
(possibly none) and the cursor of the last row it examined, from which the next page goes on."""
_FIRST_WINDOW = 500


def encode_cursor(at: datetime, key: int | str) -> str:
    return encode_key([format_timestamp(at), str(key)])


def decode_cursor(cursor: str, key_type: type[int] | type[str] = int) -> Position:
    """The position in `cursor`; InvalidQuery for anything this server did not issue."""
    stamp, key = decode_key(cursor, 2)
    try:
        at = parse_timestamp(stamp)
    except ValueError:
        raise InvalidQuery("invalid_cursor", "cursor is not one this server issued") from None
    if not READ_FLOOR <= at < READ_CEILING:  # no row is dated there; the stores cannot compare
        raise InvalidQuery("invalid_cursor", "cursor is not one this server issued")
    if key_type is str:
        return at, key
    if not key.isascii() or not key.isdigit() or int(key) > MAX_BIGINT:
        raise InvalidQuery("invalid_cursor", "cursor is not one this server issued")
    return at, int(key)


def beyond(
    time: InstrumentedAttribute[Any],
    key: InstrumentedAttribute[Any],
    position: Position,
    *,
    ascending: bool = False,
) -> ColumnElement[bool]:
    """The rows after `position` in the order (time, key), ascending or descending."""
    at, last = position
    if ascending:
        return or_(time > at, and_(time == at, key > last))
    return or_(time < at, and_(time == at, key < last))


def matching(
    query: Select[R],
    row: Any,
    where: Any,
    *,
    equal: Sequence[str],
    time: InstrumentedAttribute[Any],
) -> Select[R]:
    """`query` narrowed to the rows whose columns `equal` match the same fields of `where`
    (None matches any) and whose `time` is in [`where.since`, `where.until`)."""
    for name in equal:
        value = getattr(where, name)
        if value is not None:
            query = query.where(getattr(row, name) == value)
    if where.since is not None:
        query = query.where(time >= where.since)
    if where.until is not None:
        query = query.where(time < where.until)
    return query


def fetch_page(
    session: Session,
    query: Select[R],
    *,
    time: InstrumentedAttribute[Any],
    key: InstrumentedAttribute[Any],
    limit: int,
    cursor: str | None = None,
    ascending: bool = False,
) -> tuple[Sequence[R], str | None]:
    """The rows of `query` on the page after `cursor` (the first page without one), and the cursor
    of the next page (None on the last page)."""
    if cursor is not None:
        key_type = key.type.python_type
        position = decode_cursor(cursor, str if key_type is str else int)
        query = query.where(beyond(time, key, position, ascending=ascending))
    if ascending:
        query = query.order_by(time.asc(), key.asc())
    else:
        query = query.order_by(time.desc(), key.desc())
    rows = list(session.scalars(query.limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(getattr(last, time.key), getattr(last, key.key))


def fetch_scanned_page(
    session: Session,
    window: Select[Any],
    keep: Callable[[Sequence[Any]], bool],
    *,
    time: InstrumentedAttribute[Any],
    key: InstrumentedAttribute[Any],
    limit: int,
    cursor: str | None = None,
    ascending: bool = False,
    scan_rows: int = SCAN_ROWS,
) -> tuple[list[Any], str | None]:
    """The keys of the rows `keep` accepts on the page after `cursor`, in order, and the cursor
    of the next page (None on the last page), examining at most `scan_rows` rows of `window`.

    `window` selects the key and the time first, then what `keep` reads, from the rows its
    conditions (those an index serves) allow; it is read in growing slices, so a page whose
    rows are near examines few. A page that examined `scan_rows` rows without finding `limit`
    ends early, its cursor at the last row examined (see SCAN_ROWS)."""
    position: Position | None = None
    if cursor is not None:
        key_type = key.type.python_type
        position = decode_cursor(cursor, str if key_type is str else int)
    order = (time.asc(), key.asc()) if ascending else (time.desc(), key.desc())
    kept: list[Sequence[Any]] = []
    examined = 0
    size = min(max(_FIRST_WINDOW, 4 * (limit + 1)), scan_rows)
    while True:
        query = (
            window
            if position is None
            else window.where(beyond(time, key, position, ascending=ascending))
        )
        rows: Sequence[Sequence[Any]] = session.execute(query.order_by(*order).limit(size)).all()
        for row in rows:
            if keep(row):
                kept.append(row)
                if len(kept) > limit:
                    last = kept[limit - 1]
                    return [r[0] for r in kept[:limit]], encode_cursor(last[1], last[0])
        examined += len(rows)
        if len(rows) < size:
            return [r[0] for r in kept], None
        position = (rows[-1][1], rows[-1][0])
        if examined >= scan_rows:
            return [r[0] for r in kept], encode_cursor(position[0], position[1])
        size = min(size * 2, scan_rows - examined)


def after_key(columns: Sequence[Any], key: Sequence[Any]) -> ColumnElement[bool]:
    """The rows whose `columns` sort after `key`, compared as one row value: both stores search
    an index on those columns for it (a keyset page in primary key order)."""
    return tuple_(*columns) > tuple_(*(literal(value) for value in key))
