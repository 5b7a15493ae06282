"""Plain data the cleanup planner works on: what the store knows about tags and manifests.

No I/O here. Every timestamp is timezone-aware UTC.

Pull records, tag states, manifests and blobs are NamedTuples, immutable like frozen dataclasses:
planning reads a million of them from the store, and a tuple made from positional values costs
a fifth of a frozen dataclass made from keywords (0.45 against 2.2 µs each).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from monitor.events import INDEX_MEDIA_TYPES, Client

Interval = tuple[datetime, datetime]
"""A span `[start, end)` during which the monitor was receiving the registry's events."""


class PullRecord(NamedTuple):
    """The last pull of a tag by one HTTP method from one client class."""

    http_method: str
    client: Client
    last_pulled_at: datetime


class TagState(NamedTuple):
    """One tag as the store knows it: where it points and when it was pushed and pulled."""

    repository: str
    tag: str
    digest: str
    first_seen_at: datetime
    last_pushed_at: datetime
    media_type: str | None = None
    deleted_at: datetime | None = None
    pulls: tuple[PullRecord, ...] = ()

    @property
    def live(self) -> bool:
        return self.deleted_at is None


class Blob(NamedTuple):
    """A blob a manifest references (a layer or its config)."""

    digest: str
    size: int


class ManifestInfo(NamedTuple):
    """A manifest in a repository: its blobs, or for an index its child manifests."""

    repository: str
    digest: str
    media_type: str
    size: int = 0
    blobs: tuple[Blob, ...] = ()
    children: tuple[str, ...] = ()
    pushed_at: datetime | None = None

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES


@dataclasses.dataclass(frozen=True, slots=True)
class RepositoryState:
    """One repository's tags and manifests, for planning one repository at a time."""

    name: str
    tags: Sequence[TagState]
    manifests: Sequence[ManifestInfo]


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class TagRef:
    """A tag by name."""

    repository: str
    tag: str

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclasses.dataclass(frozen=True, slots=True)
class DeployedSet:
    """Image references known to be in use: `repo:tag` and `repo@digest`."""

    tags: frozenset[TagRef] = frozenset()
    digests: frozenset[tuple[str, str]] = frozenset()

    def __contains__(self, state: object) -> bool:
        if not isinstance(state, TagState):
            return False
        return (
            TagRef(state.repository, state.tag) in self.tags
            or (state.repository, state.digest) in self.digests
        )
