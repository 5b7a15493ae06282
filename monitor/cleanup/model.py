"""Plain data the cleanup planner works on: what the store knows about tags and manifests.

No I/O here. Every timestamp is timezone-aware UTC.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from monitor.events import INDEX_MEDIA_TYPES, Client

Interval = tuple[datetime, datetime]
"""A span `[start, end)` during which the monitor was receiving the registry's events."""


@dataclasses.dataclass(frozen=True, slots=True)
class PullRecord:
    """The last pull of a tag by one HTTP method from one client class."""

    http_method: str
    client: Client
    last_pulled_at: datetime


@dataclasses.dataclass(frozen=True, slots=True)
class TagState:
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
    """A blob a manifest references (a layer or its config); a NamedTuple: planning reads a
    million of them, and a tuple is made several times faster than a frozen dataclass."""

    digest: str
    size: int


@dataclasses.dataclass(frozen=True, slots=True)
class ManifestInfo:
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
