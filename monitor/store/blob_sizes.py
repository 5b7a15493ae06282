"""Blob sizes per (repository, digest), recorded as blob events are stored, so a manifest push
finds its layers' sizes by key. Functions take a session and never commit."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from monitor.events import Event, TargetKind
from monitor.store.dialect import dialect_of, in_list_chunks, upsert
from monitor.store.schema import BlobSizeRow

MAX_REPOSITORY, MAX_DIGEST = 255, 160  # the key columns of blob_sizes


@functools.cache
def _record_blob_size(dialect: str) -> Any:
    table: Any = BlobSizeRow.__table__
    return upsert(dialect, table).on_conflict_do_nothing(
        index_elements=[table.c.repository, table.c.digest]
    )


def record_blob_sizes(session: Session, events: Iterable[Event]) -> None:
    """Remember the size of every blob the events name (a digest's size never changes, so the
    first one recorded stands). One statement per call, keyed lookups only."""
    sizes: dict[tuple[str, str], int] = {}
    for e in events:
        if (
            e.target_kind is TargetKind.BLOB
            and e.repository
            and e.digest
            and e.size is not None
            and e.size >= 0
            and len(e.repository) <= MAX_REPOSITORY
            and len(e.digest) <= MAX_DIGEST
        ):
            sizes.setdefault((e.repository, e.digest), e.size)
    if sizes:
        session.connection().execute(
            _record_blob_size(dialect_of(session)),
            [{"repository": r, "digest": d, "size": s} for (r, d), s in sorted(sizes.items())],
        )


@functools.cache
def _sizes_of(size: int) -> Any:
    """The sizes of `size` digests of one repository, built once per size (`in_list_chunks`)."""
    table: Any = BlobSizeRow.__table__
    return select(table.c.digest, table.c.size).where(
        table.c.repository == bindparam("repository"),
        table.c.digest.in_([bindparam(f"d{n}") for n in range(size)]),
    )


def blob_sizes(session: Session, repository: str, digests: Iterable[str]) -> dict[str, int]:
    """Known sizes of `digests` in `repository` (a primary-key lookup per digest)."""
    wanted = sorted(set(digests))
    if not wanted:
        return {}
    connection = session.connection()
    out: dict[str, int] = {}
    for size, params in in_list_chunks("d", wanted):
        rows = connection.execute(_sizes_of(size), {"repository": repository, **params})
        out.update((d, int(s)) for d, s in rows)
    return out
