"""Telling a store outage (retry later) from a refusal of the data itself (never retry as is)."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

# SQLSTATE classes and codes that mean the database cannot take writes right now: connection
# exceptions, read-only transaction (a standby, or `default_transaction_read_only`),
# serialization failure and deadlock, insufficient resources (disk full), operator
# intervention (shutdown), system errors.
_OUTAGE_CLASSES = ("08", "53", "57", "58")
READ_ONLY_CODES = frozenset({"25006"})
CONFLICT_CODES = frozenset({"40001", "40P01"})
"""Serialization failure and deadlock: PostgreSQL broke the transaction off for another one;
run again, it commits."""
_OUTAGE_CODES = READ_ONLY_CODES | CONFLICT_CODES


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a PostgreSQL error wrapped by SQLAlchemy, if any."""
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code if isinstance(code, str) else None


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says the store is unavailable, as opposed to refusing what it was given.

    SQLite reports every environmental failure (locked, disk full, I/O error, read-only file)
    as OperationalError; PostgreSQL's are told by their SQLSTATE.
    """
    if isinstance(
        exc,
        sa_exc.OperationalError
        | sa_exc.InterfaceError
        | sa_exc.DisconnectionError
        | sa_exc.TimeoutError
        | sa_exc.ResourceClosedError,
    ):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    code = sqlstate(exc)
    return code is not None and (code in _OUTAGE_CODES or code[:2] in _OUTAGE_CLASSES)


def is_conflict(exc: BaseException) -> bool:
    """Whether PostgreSQL ended the transaction to let a conflicting one go on (run it again)."""
    return sqlstate(exc) in CONFLICT_CODES
