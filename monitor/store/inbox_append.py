"""Rows appended to PostgreSQL's `intake_inbox` through libpq's asynchronous interface.

The answer to every notification waits for this INSERT and its commit, so the CPU `serve`
spends on it is part of every answer at the registry's serial pace, and at 64 connections
what bounds them. `PostgresInbox.append` in a loop spent 90-125 µs of CPU per body (medians of
three runs) through psycopg's `AsyncCursor.execute` (its generators, adapting the parameters,
the prepared statement's bookkeeping) and 68-94 µs with the prepared INSERT sent by
`PGconn.send_query_prepared` (psycopg's wrapper of libpq) and awaited here; each append then
took 230-320 µs, against 240-328 (BENCHMARKS.md). psycopg still makes, configures and closes
the connection.

One statement appends any number of rows (up to `ROWS_PER_STATEMENT`): in autocommit it is one
transaction, so its rows are stored together or not at all. A lone row, the registry's serial
pace, goes by a statement prepared once per connection (`PREPARED`). Any failure leaves the
connection unusable (a statement may be half sent or half answered): its owner discards it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import pq

from monitor.store.columns import as_utc

ROWS_PER_STATEMENT = 1000  # 5 parameters a row: PostgreSQL takes at most 65,535 a statement

InboxRow = tuple[str, datetime, str | None, str | None, bytes]
"""receiver, received_at, content_type, remote_ip, body"""

_FORMATS = (0, 0, 0, 0, 1)  # text, but the body binary: bytea as it is
PREPARED = b"intake_append"
"""The one-row INSERT, prepared once per connection: a registry's serial delivery appends one
row at a time, and PostgreSQL then skips parsing and planning it (25-80 µs less per append,
in a loop of appends)."""


@functools.lru_cache(maxsize=64)
def statement(rows: int) -> bytes:
    """The INSERT of `rows` rows (placeholders only: the values go as parameters)."""
    values = ",".join(
        "(" + ",".join(f"${5 * row + column}" for column in range(1, 6)) + ")"
        for row in range(rows)
    )
    columns = "receiver, received_at, content_type, remote_ip, body"
    return f"INSERT INTO intake_inbox ({columns}) VALUES {values}".encode()  # noqa: S608


def parameters(rows: Sequence[InboxRow]) -> list[bytes | None]:
    out: list[bytes | None] = []
    for receiver, received_at, content_type, remote_ip, body in rows:
        out.append(receiver.encode())
        out.append(as_utc(received_at).isoformat().encode())
        out.append(None if content_type is None else content_type.encode())
        out.append(None if remote_ip is None else remote_ip.encode())
        out.append(body)
    return out


def refused(result: pq.abc.PGresult) -> psycopg.Error:
    """The psycopg error of a failed statement: the class of its SQLSTATE
    (`psycopg.errors.lookup`, e.g. ReadOnlySqlTransaction), DatabaseError without one."""
    message = (result.error_message or b"the statement failed").decode("utf-8", "replace")
    sqlstate = result.error_field(pq.DiagnosticField.SQLSTATE)
    kind: type[psycopg.Error] = psycopg.DatabaseError
    if sqlstate:
        with contextlib.suppress(KeyError):
            kind = psycopg.errors.lookup(sqlstate.decode("ascii", "replace"))
    return kind(message.strip())


class Appender:
    """Appends rows over `connection` (autocommit), which nothing else uses meanwhile."""

    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self.connection = connection
        self.broken = False
        """An append failed or was cancelled part way: the connection is out of step."""
        self._prepared = False
        self._pgconn = connection.pgconn
        self._pgconn.nonblocking = 1

    async def append(self, rows: Sequence[InboxRow]) -> None:
        """Stores `rows` (at most ROWS_PER_STATEMENT) in one statement; psycopg.Error when
        they could not be (the connection is then unusable: `broken`)."""
        if not 0 < len(rows) <= ROWS_PER_STATEMENT:
            raise ValueError(f"{len(rows)} rows in one statement")
        try:
            await self._append(rows)
        except BaseException:
            self.broken = True
            raise

    async def _append(self, rows: Sequence[InboxRow]) -> None:
        pgconn = self._pgconn
        if len(rows) > 1:
            pgconn.send_query_params(
                statement(len(rows)), parameters(rows), param_formats=_FORMATS * len(rows)
            )
            await self._outcome()
            return
        if not self._prepared:
            pgconn.send_prepare(PREPARED, statement(1))
            await self._outcome()
            self._prepared = True
        pgconn.send_query_prepared(PREPARED, parameters(rows), param_formats=_FORMATS)
        await self._outcome()

    async def _outcome(self) -> None:
        """Sends what is queued and reads every result of it; the first error, if any."""
        pgconn = self._pgconn
        while pgconn.flush():  # a large body: the socket's buffer took part of it
            await self._ready(writable=True)
            pgconn.consume_input()  # what the server sent meanwhile (libpq's advice)
        failure: psycopg.Error | None = None
        while True:
            pgconn.consume_input()
            while not pgconn.is_busy():
                result = pgconn.get_result()
                if result is None:
                    if failure is not None:
                        raise failure
                    return
                if result.status != pq.ExecStatus.COMMAND_OK and failure is None:
                    failure = refused(result)
            await self._ready(writable=False)

    async def _ready(self, *, writable: bool) -> None:
        """Until the socket can be read (or, `writable`, read or written)."""
        loop = asyncio.get_running_loop()
        fd = self._pgconn.socket
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, wake)
        if writable:
            loop.add_writer(fd, wake)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
            if writable:
                loop.remove_writer(fd)
