"""What an apply records: outcomes, saved manifests, journal entries, and the journal's seam.

Pure data; the SQL journal lives in monitor.store.journal.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    DELETED = "deleted"
    SKIPPED = "skipped"
    FAILED = "failed"
    RESTORED = "restored"


class SkipReason(StrEnum):
    TAG_MOVED = "tag_moved"
    TAG_GONE = "tag_gone"
    UNPLANNED_TAG_ON_DIGEST = "unplanned_tag_on_digest"
    MANIFEST_GONE = "manifest_gone"
    REPOSITORY_SHARE_EXCEEDED = "repository_share_exceeded"
    RUN_LIMIT_REACHED = "run_limit_reached"


@dataclasses.dataclass(frozen=True, slots=True)
class SavedManifest:
    """A manifest as it was before deletion; `parent` is set for an index's children."""

    plan_id: str
    repository: str
    digest: str
    media_type: str
    body: bytes
    tags: tuple[str, ...] = ()
    parent: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class JournalEntry:
    plan_id: str
    repository: str
    digest: str
    tags: tuple[str, ...]
    outcome: Outcome
    reason: str
    at: datetime
    detail: str = ""


class ApplyJournal(Protocol):
    """Where apply records what it did and keeps what it deleted (the SQL one lives in store/)."""

    def done(self, plan_id: str) -> set[tuple[str, str]]:
        """(repository, digest) of the actions of `plan_id` already recorded as deleted."""
        ...

    def save_manifest(self, saved: SavedManifest) -> None: ...

    def saved(self, plan_id: str) -> list[SavedManifest]: ...

    def record(self, entry: JournalEntry) -> None: ...
