"""What cleanup knows about the registry's content: tags seen by reconciliation, manifest
details (media type, size, children, blobs with sizes). The planner's input read from them is
monitor/store/planner_input.py. Functions take a session and never commit.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import and_, case, delete, or_, select, update
from sqlalchemy.orm import Session

from monitor.cleanup.model import (
    Blob,
    ManifestInfo,
)
from monitor.events import INDEX_MEDIA_TYPES, Action, Event, TargetKind
from monitor.store.blob_sizes import blob_sizes, record_blob_sizes
from monitor.store.cleanup_tables import ManifestInfoRow, RegistryTagRow
from monitor.store.dialect import dialect_of, upsert
from monitor.store.schema import TagStateRow

# --- tags in the registry -----------------------------------------------------------------


def replace_registry_tags(
    session: Session,
    *,
    repository: str,
    tags: Mapping[str, tuple[str, str | None]],
    now: datetime,
) -> None:
    """Record that `repository` holds exactly `tags` (tag → (digest, media type)) at `now`."""
    session.execute(delete(RegistryTagRow).where(RegistryTagRow.repository == repository))
    for tag, (digest, media_type) in sorted(tags.items()):
        session.add(
            RegistryTagRow(
                repository=repository, tag=tag, digest=digest, media_type=media_type, seen_at=now
            )
        )


def forget_registry_repositories(session: Session, *, keep: Iterable[str]) -> None:
    """Drop reconciliation rows of repositories that are no longer in the catalog."""
    session.execute(delete(RegistryTagRow).where(RegistryTagRow.repository.not_in(list(keep))))


def registry_tags(session: Session, *, repository: str | None = None) -> dict[str, dict[str, str]]:
    """repository → tag → digest, as the last reconciliation saw them."""
    query = select(RegistryTagRow.repository, RegistryTagRow.tag, RegistryTagRow.digest)
    if repository is not None:
        query = query.where(RegistryTagRow.repository == repository)
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for repo, tag, digest in session.execute(query):
        out[repo][tag] = digest
    return dict(out)


def record_tag_seen(
    session: Session,
    *,
    repository: str,
    tag: str,
    digest: str,
    media_type: str | None,
    seen_at: datetime,
) -> None:
    """A tag seen in the registry at `seen_at` points at `digest`.

    A tag we never heard of starts its history at `seen_at` (no pulls known). A tag that was
    marked deleted or that points elsewhere now was pushed behind our back: it counts as pushed
    at `seen_at`. `first_seen_at` only ever moves earlier.
    """
    table = TagStateRow.__table__
    c = table.c
    stmt = upsert(dialect_of(session), table).values(
        repository=repository,
        tag=tag,
        digest=digest,
        media_type=media_type,
        first_seen_at=seen_at,
        last_pushed_at=None,
        pull_count=0,
    )
    changed = or_(c.deleted_at.is_not(None), c.digest.is_(None), c.digest != digest)
    stmt = stmt.on_conflict_do_update(
        index_elements=[c.repository, c.tag],
        set_={
            "first_seen_at": case((c.first_seen_at > seen_at, seen_at), else_=c.first_seen_at),
            "last_pushed_at": case((changed, seen_at), else_=c.last_pushed_at),
            "media_type": case((changed, stmt.excluded.media_type), else_=c.media_type),
            "digest": stmt.excluded.digest,
            "deleted_at": None,
        },
    )
    session.execute(stmt)


def mark_missing_deleted(
    session: Session, *, repository: str, present: Iterable[str], now: datetime
) -> int:
    """Mark the live tags of `repository` that are not in `present` as deleted at `now`."""
    c = TagStateRow
    result = session.execute(
        update(TagStateRow)
        .where(
            c.repository == repository,
            c.deleted_at.is_(None),
            c.tag.not_in(list(present)),
        )
        .values(deleted_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def live_repositories(session: Session) -> set[str]:
    rows = session.scalars(
        select(TagStateRow.repository).where(TagStateRow.deleted_at.is_(None)).distinct()
    )
    return set(rows)


# --- manifests ----------------------------------------------------------------------------


@functools.cache
def _save_manifest_statement(dialect: str) -> Any:
    """Insert a manifest's details, or replace them keeping the latest `pushed_at`; built once
    per dialect (intake runs it for every manifest push)."""
    table: Any = ManifestInfoRow.__table__
    c = table.c
    stmt = upsert(dialect, table)
    new = stmt.excluded
    later_push = and_(
        new.pushed_at.is_not(None), or_(c.pushed_at.is_(None), new.pushed_at > c.pushed_at)
    )
    return stmt.on_conflict_do_update(
        index_elements=[c.repository, c.digest],
        set_={
            "media_type": new.media_type,
            "size": new.size,
            "children": new.children,
            "blobs": new.blobs,
            "pushed_at": case((later_push, new.pushed_at), else_=c.pushed_at),
            "learned_at": new.learned_at,
        },
    )


def save_manifest_info(session: Session, info: ManifestInfo, *, now: datetime) -> None:
    """Insert or replace what is known about one manifest (`pushed_at` only moves later)."""
    save_manifest_infos(session, [info], now=now)


def save_manifest_infos(session: Session, infos: list[ManifestInfo], *, now: datetime) -> None:
    """`save_manifest_info` for each of `infos` in turn, in one call (one round trip on
    PostgreSQL)."""
    if not infos:
        return
    session.connection().execute(
        _save_manifest_statement(dialect_of(session)),
        [
            {
                "repository": info.repository,
                "digest": info.digest,
                "media_type": info.media_type,
                "size": info.size,
                "children": orjson.dumps(list(info.children)).decode(),
                "blobs": orjson.dumps([[b.digest, b.size] for b in info.blobs]).decode(),
                "pushed_at": info.pushed_at,
                "learned_at": now,
            }
            for info in infos
        ],
    )


def _info(row: ManifestInfoRow) -> ManifestInfo:
    return ManifestInfo(
        repository=row.repository,
        digest=row.digest,
        media_type=row.media_type,
        size=row.size,
        blobs=tuple(Blob(d, int(s)) for d, s in orjson.loads(row.blobs)),
        children=tuple(orjson.loads(row.children)),
        pushed_at=row.pushed_at,
    )


def list_manifests(session: Session, *, repository: str | None = None) -> list[ManifestInfo]:
    query = select(ManifestInfoRow).order_by(ManifestInfoRow.repository, ManifestInfoRow.digest)
    if repository is not None:
        query = query.where(ManifestInfoRow.repository == repository)
    return [_info(row) for row in session.scalars(query)]


def complete_manifests(session: Session, *, repository: str) -> set[str]:
    """Digests in `repository` whose blobs all have a known size (nothing left to learn)."""
    out: set[str] = set()
    for info in list_manifests(session, repository=repository):
        if all(b.size > 0 for b in info.blobs):
            out.add(info.digest)
    return out


def learn_manifests(session: Session, events: Iterable[Event], *, now: datetime) -> None:
    """Blob sizes from blob events, and manifest details from push events' `target.references`
    (sizes from the blob sizes recorded so far, never from raw events). The statements do not
    grow with the pushes: one lookup of sizes per repository, one call saving every manifest
    (a manifest pushed twice saved once: as its last push says, at the latest `pushed_at`,
    which is what saving each push in turn leaves)."""
    events = list(events)
    record_blob_sizes(session, events)
    pushes = [
        e
        for e in events
        if e.action is Action.PUSH
        and e.target_kind is TargetKind.MANIFEST
        and e.repository
        and e.digest
        and e.media_type
    ]
    layers: dict[str, set[str]] = defaultdict(set)
    for event in pushes:
        if event.media_type not in INDEX_MEDIA_TYPES:
            layers[event.repository or ""].update(event.references)
    sizes = {repository: blob_sizes(session, repository, d) for repository, d in layers.items()}
    infos: dict[tuple[str, str], ManifestInfo] = {}
    for event in pushes:
        repository, digest, media_type = (
            event.repository or "",
            event.digest or "",
            event.media_type,
        )
        assert media_type is not None
        if media_type in INDEX_MEDIA_TYPES:
            info = ManifestInfo(
                repository, digest, media_type, event.size or 0,
                children=event.references, pushed_at=event.occurred_at,
            )  # fmt: skip
        else:
            known = sizes[repository]
            blobs = tuple(Blob(d, known.get(d, 0)) for d in event.references)
            info = ManifestInfo(
                repository, digest, media_type, event.size or 0,
                blobs=blobs, pushed_at=event.occurred_at,
            )  # fmt: skip
        if (earlier := infos.get((repository, digest))) is not None:
            info = info._replace(pushed_at=_later(earlier.pushed_at, info.pushed_at))
        infos[(repository, digest)] = info
    save_manifest_infos(session, list(infos.values()), now=now)


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    """The later of two times, either possibly unknown."""
    return b if a is None else a if b is None else max(a, b)
