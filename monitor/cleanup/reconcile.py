"""Reconciliation: walk the registry's catalog and tag lists and bring the store in line.

Tags the events never told us about are learned (first seen now, no pulls: the coverage rule
keeps them `unknown` until enough days pass); tags gone from the registry are marked deleted;
manifests the store has no sizes for are fetched, so bytes-freed estimates work. Requests go
out with the monitor's User-Agent, so the pulls they cause never count as use.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.orm import Session

from monitor.cleanup.model import Blob, ManifestInfo, TagRef
from monitor.cleanup.registry_client import RegistryClient
from monitor.clock import Clock
from monitor.errors import RegistryError
from monitor.events import INDEX_MEDIA_TYPES
from monitor.store.engine import SessionFactory
from monitor.store.inventory import (
    complete_manifests,
    forget_registry_repositories,
    live_repositories,
    mark_missing_deleted,
    record_tag_seen,
    replace_registry_tags,
    save_manifest_info,
)
from monitor.store.tags import list_tags
from monitor.store.transaction import in_transaction

MAX_MANIFESTS_PER_REPOSITORY = 100_000


@dataclasses.dataclass(frozen=True, slots=True)
class ReconcileResult:
    repositories: int
    tags: int
    learned: tuple[TagRef, ...]
    moved: tuple[TagRef, ...]
    vanished: int
    manifests_fetched: int


def manifest_info_from_body(
    repository: str, digest: str, media_type: str, body: bytes
) -> ManifestInfo:
    """A manifest's children (an index) or config and layers with sizes, from its JSON body."""
    try:
        document = json.loads(body)
    except ValueError:
        raise RegistryError(f"manifest {repository}@{digest} is not JSON") from None
    if not isinstance(document, dict):
        raise RegistryError(f"manifest {repository}@{digest} is not a JSON object")
    media_type = media_type or str(document.get("mediaType") or "")
    if media_type in INDEX_MEDIA_TYPES or "manifests" in document:
        children = tuple(
            str(m["digest"]) for m in document.get("manifests") or [] if isinstance(m, dict)
        )
        return ManifestInfo(repository, digest, media_type, len(body), children=children)
    descriptors = [document.get("config"), *(document.get("layers") or [])]
    blobs = tuple(
        Blob(str(d["digest"]), int(d.get("size") or 0))
        for d in descriptors
        if isinstance(d, dict) and "digest" in d
    )
    return ManifestInfo(repository, digest, media_type, len(body), blobs=blobs)


@dataclasses.dataclass(frozen=True, slots=True)
class _Recorded:
    """What one repository's transaction found: tags new to the store, tags that point
    elsewhere now, tags marked deleted, and the manifests the store has complete details of."""

    learned: tuple[TagRef, ...]
    moved: tuple[TagRef, ...]
    vanished: int
    complete: frozenset[str]


def reconcile(
    session_factory: SessionFactory,
    client: RegistryClient,
    *,
    clock: Clock,
) -> ReconcileResult:
    """One pass over the registry; each repository is committed on its own (and written again
    when PostgreSQL broke its transaction off for the applier's: monitor.store.transaction)."""
    repositories = client.catalog()
    learned: list[TagRef] = []
    moved: list[TagRef] = []
    vanished = fetched = tags_seen = 0
    for repository in repositories:
        seen: dict[str, tuple[str, str | None]] = {}
        for tag in client.tags(repository):
            head = client.head_manifest(repository, tag)
            if head is not None and head.digest:
                seen[tag] = (head.digest, head.media_type or None)
        tags_seen += len(seen)
        record = functools.partial(_record, repository=repository, seen=seen, now=clock())
        recorded = in_transaction(session_factory, record)
        learned.extend(recorded.learned)
        moved.extend(recorded.moved)
        vanished += recorded.vanished
        fetched += _fetch_manifests(
            session_factory,
            client,
            repository,
            {d for d, _ in seen.values()} - recorded.complete,
            clock,
        )
    vanished += in_transaction(
        session_factory, functools.partial(_forget, keep=repositories, now=clock())
    )
    return ReconcileResult(
        len(repositories), tags_seen, tuple(learned), tuple(moved), vanished, fetched
    )


def _record(
    session: Session,
    *,
    repository: str,
    seen: Mapping[str, tuple[str, str | None]],
    now: datetime,
) -> _Recorded:
    """Bring the store's tags of `repository` in line with `seen` (tag → digest, media type)."""
    known = {t.tag: t for t in list_tags(session, repository=repository)}
    learned: list[TagRef] = []
    moved: list[TagRef] = []
    for tag, (digest, media_type) in sorted(seen.items()):
        state = known.get(tag)
        if state is None or state.deleted_at is not None:
            learned.append(TagRef(repository, tag))
        elif state.digest != digest:
            moved.append(TagRef(repository, tag))
        record_tag_seen(
            session,
            repository=repository,
            tag=tag,
            digest=digest,
            media_type=media_type,
            seen_at=now,
        )
    vanished = mark_missing_deleted(session, repository=repository, present=seen.keys(), now=now)
    replace_registry_tags(session, repository=repository, tags=seen, now=now)
    complete = complete_manifests(session, repository=repository)
    return _Recorded(tuple(learned), tuple(moved), vanished, frozenset(complete))


def _forget(session: Session, *, keep: list[str], now: datetime) -> int:
    """Tags of repositories gone from the catalog are deleted; their registry tags forgotten."""
    vanished = 0
    for repository in sorted(live_repositories(session) - set(keep)):
        vanished += mark_missing_deleted(session, repository=repository, present=(), now=now)
    forget_registry_repositories(session, keep=keep)
    return vanished


def _fetch_manifests(
    session_factory: SessionFactory,
    client: RegistryClient,
    repository: str,
    wanted: set[str],
    clock: Clock,
) -> int:
    pending = sorted(wanted)
    done: set[str] = set()
    infos: list[ManifestInfo] = []
    while pending and len(done) < MAX_MANIFESTS_PER_REPOSITORY:
        digest = pending.pop()
        if digest in done:
            continue
        done.add(digest)
        manifest = client.get_manifest(repository, digest)
        info = manifest_info_from_body(repository, digest, manifest.media_type, manifest.body)
        infos.append(info)
        pending.extend(c for c in info.children if c not in done)
    if infos:
        in_transaction(session_factory, functools.partial(_save, infos=infos, now=clock()))
    return len(infos)


def _save(session: Session, *, infos: list[ManifestInfo], now: datetime) -> None:
    for info in infos:
        save_manifest_info(session, info, now=now)
