"""Reading a plan stored in format 5 (see monitor.cleanup.stored_plan) a chunk at a time: a
page of decisions or actions reads the header and the chunks it spans (two at most for a page
of up to `CHUNK` items), never the whole plan. Pure; raises what it meets (ValueError and
the like; the caller turns it into ParseError).

Format 5: `MAGIC`, the header's length (4 bytes) and the header (JSON: format, created_at,
bytes_freed, and the index of the chunks: `decisions`, a [count, bytes] per chunk of
decisions, and `actions`, a [count, digests, bytes] per chunk of actions), the chunks back to
back in that order, then the SHA-256 digests of the actions, 32 bytes each, in plan order.

- A chunk of decisions (zlib, JSON) holds up to `CHUNK` decisions in stored order
  (repositories as they first appear, tags in order within each) as [repository, groups] per
  repository it holds, one group per (decision, reason, policy, detail) listing its tags, and
  for deletes their digests: each the position of the same digest in the digests part (no
  digest is stored twice), or the digest itself when no action of the repository has it.
- A chunk of actions (zlib, JSON) holds up to `CHUNK` actions in plan order as runs of one
  repository, each action its tags, reason, policy and media type, and its digest when that
  is not a SHA-256 digest in lower-case hexadecimal; `digests` in the index counts the others,
  which are in the digests part.
"""

from __future__ import annotations

import bisect
import dataclasses
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

import orjson

from monitor.cleanup.model import TagRef
from monitor.cleanup.plan import Decision, DigestAction, Plan, Reason, Selection, TagDecision

FORMAT = 5
MAGIC = b"RMP5"
CHUNK = 1000
"""Most decisions, or actions, in one chunk: a page of up to 1,000 items spans two chunks."""
LENGTH = struct.Struct(">I")
PREFIX = "sha256:"
DIGEST_BYTES = 32

T = TypeVar("T")


class Source(Protocol):
    """Where a stored plan's bytes are read from: each read exactly as long as asked, or
    ValueError."""

    def read(self, offset: int, length: int) -> bytes:
        """`length` bytes from `offset`."""
        ...

    def read_many(self, spans: Sequence[tuple[int, int]]) -> list[bytes]:
        """The bytes of each (offset, length) of `spans`, in order."""
        ...


def short(digest: str) -> str:
    return digest[len(PREFIX) :] if digest.startswith(PREFIX) else "=" + digest


def long(short: str) -> str:
    return short[1:] if short.startswith("=") else PREFIX + short


@dataclasses.dataclass(frozen=True, slots=True)
class Chunk:
    """Where a chunk is and what it holds: items `first` to `first + count` of the plan's
    decisions or actions; a chunk of actions also names digests `digest_first` to
    `digest_first + digests` of the digests part."""

    first: int
    count: int
    offset: int
    length: int
    digest_first: int = 0
    digests: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Layout:
    """A format 5 plan's header: its time, the bytes it frees, and where its chunks are."""

    created_at: datetime
    bytes_freed: int
    decisions: tuple[Chunk, ...]
    actions: tuple[Chunk, ...]
    digests_offset: int
    digests: int

    @property
    def decision_count(self) -> int:
        return self.decisions[-1].first + self.decisions[-1].count if self.decisions else 0

    @property
    def action_count(self) -> int:
        return self.actions[-1].first + self.actions[-1].count if self.actions else 0


class BytesSource:
    """A stored plan's bytes held whole."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > len(self._view):
            raise ValueError("stored plan is cut short")
        return bytes(self._view[offset : offset + length])

    def read_many(self, spans: Sequence[tuple[int, int]]) -> list[bytes]:
        return [self.read(offset, length) for offset, length in spans]


def _counts(value: Any, width: int) -> list[list[int]]:
    if not isinstance(value, list) or not all(
        isinstance(row, list)
        and len(row) == width
        and all(isinstance(n, int) and n >= 0 for n in row)
        for row in value
    ):
        raise ValueError("stored plan's index is not one this server writes")
    return value


def read_layout(source: Source, size: int) -> Layout:
    """The layout of the format 5 plan of `size` bytes in `source`."""
    start = len(MAGIC) + LENGTH.size
    head = source.read(0, start)
    if head[: len(MAGIC)] != MAGIC:
        raise ValueError("not a stored plan of format 5")
    (length,) = LENGTH.unpack(head[len(MAGIC) :])
    header = orjson.loads(source.read(start, length))
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError("not a stored plan of format 5")
    offset, first = start + length, 0
    decisions: list[Chunk] = []
    for count, size_of in _counts(header["decisions"], 2):
        decisions.append(Chunk(first, count, offset, size_of))
        first, offset = first + count, offset + size_of
    actions: list[Chunk] = []
    first = digest_first = 0
    for count, digests, size_of in _counts(header["actions"], 3):
        actions.append(Chunk(first, count, offset, size_of, digest_first, digests))
        first, offset, digest_first = first + count, offset + size_of, digest_first + digests
    if offset + digest_first * DIGEST_BYTES != size:
        raise ValueError("stored plan's digests do not match its actions")
    return Layout(
        datetime.fromisoformat(header["created_at"]),
        int(header["bytes_freed"]),
        tuple(decisions),
        tuple(actions),
        offset,
        digest_first,
    )


def _entries(source: Source, chunk: Chunk) -> list[Any]:
    entries = orjson.loads(zlib.decompress(source.read(chunk.offset, chunk.length)))
    if not isinstance(entries, list):
        raise ValueError("stored plan's chunk is not one this server writes")
    return entries


def repository_decisions(
    name: str, groups: list[Any], digests: Callable[[list[Any]], list[str | None]]
) -> list[TagDecision]:
    """Repository `name`'s decisions from its stored groups, in tag order; `digests(group)`
    gives the digests of a delete group's tags (formats 4 and 5 refer to them differently)."""
    mine: list[TagDecision] = []
    for group in groups:
        decision, reason, policy, detail, tags = group[:5]
        kind, why = Decision(decision), Reason(reason)
        found = digests(group) if kind is Decision.DELETE else [None] * len(tags)
        mine.extend(
            TagDecision(name, tag, digest, kind, why, policy, detail)
            for tag, digest in zip(tags, found, strict=True)
        )
    mine.sort(key=lambda d: d.tag)
    return mine


def entries_selection(entries: Iterable[Any], selection: Selection) -> None:
    """Adds the tags the stored `entries` ([repository, groups] each) delete to `selection`."""
    for name, groups in entries:
        for decision, reason, _policy, detail, tags, *_ in groups:
            if decision == Decision.DELETE.value:
                why = Reason(reason)
                for tag in tags:
                    selection[TagRef(name, tag)] = (why, detail)


def actions_of(entries: Iterable[Any], raw: bytes) -> list[DigestAction]:
    """The actions of the stored runs `entries` ([repository, rows] each), the SHA-256 digests
    taken in order from `raw`, which they must use up exactly."""
    out: list[DigestAction] = []
    offset = 0
    for repository, rows in entries:
        for row in rows:
            tags, reason, policy, media_type = row[:4]
            if len(row) == 5:
                digest = str(row[4])
            else:
                if offset + DIGEST_BYTES > len(raw):
                    raise ValueError("stored plan lacks the digests of its actions")
                digest = PREFIX + raw[offset : offset + DIGEST_BYTES].hex()
                offset += DIGEST_BYTES
            out.append(
                DigestAction(repository, digest, tuple(tags), Reason(reason), policy, media_type)
            )
    if offset != len(raw):
        raise ValueError("stored plan has digests no action names")
    return out


def decision_chunk(source: Source, layout: Layout, chunk: Chunk) -> list[TagDecision]:
    """The decisions of `chunk`, in stored order, each deleted tag with its digest (the
    digests it refers to read in one go)."""
    entries = _entries(source, chunk)
    refs = sorted(
        {
            ref
            for _name, groups in entries
            for group in groups
            if len(group) > 5
            for ref in group[5]
            if isinstance(ref, int) and not isinstance(ref, bool)
        }
    )
    if refs and not 0 <= refs[0] <= refs[-1] < layout.digests:
        raise ValueError("stored plan names a digest it does not hold")
    spans = [(layout.digests_offset + ref * DIGEST_BYTES, DIGEST_BYTES) for ref in refs]
    held = dict(zip(refs, source.read_many(spans), strict=True))

    def digest(ref: Any) -> str:
        if isinstance(ref, str):
            return long(ref)
        if isinstance(ref, bool) or not isinstance(ref, int):
            raise ValueError("stored plan names a digest it does not hold")
        return PREFIX + held[ref].hex()

    out: list[TagDecision] = []
    for name, groups in entries:
        out.extend(repository_decisions(name, groups, lambda group: [digest(r) for r in group[5]]))
    if len(out) != chunk.count:
        raise ValueError("stored plan's chunk does not hold what its index says")
    return out


def action_chunk(source: Source, layout: Layout, chunk: Chunk) -> list[DigestAction]:
    """The actions of `chunk`, in plan order."""
    raw = source.read(
        layout.digests_offset + chunk.digest_first * DIGEST_BYTES, chunk.digests * DIGEST_BYTES
    )
    out = actions_of(_entries(source, chunk), raw)
    if len(out) != chunk.count:
        raise ValueError("stored plan's chunk does not hold what its index says")
    return out


def _page(
    chunks: tuple[Chunk, ...], start: int, limit: int, load: Callable[[Chunk], list[T]]
) -> list[T]:
    out: list[T] = []
    at = bisect.bisect_right([c.first for c in chunks], start) - 1
    for chunk in chunks[max(at, 0) :]:
        if len(out) >= limit:
            break
        if chunk.first + chunk.count <= start or not chunk.count:
            continue
        skip = max(start - chunk.first, 0)
        out.extend(load(chunk)[skip : skip + limit - len(out)])
    return out


def decisions_page(source: Source, layout: Layout, start: int, limit: int) -> list[TagDecision]:
    """Up to `limit` decisions from the `start`th, in stored order."""
    return _page(layout.decisions, start, limit, lambda c: decision_chunk(source, layout, c))


def actions_page(source: Source, layout: Layout, start: int, limit: int) -> list[DigestAction]:
    """Up to `limit` actions from the `start`th, in plan order."""
    return _page(layout.actions, start, limit, lambda c: action_chunk(source, layout, c))


def _all(chunks: tuple[Chunk, ...], load: Callable[[Chunk], list[T]]) -> Iterator[T]:
    for chunk in chunks:
        yield from load(chunk)


def decode_v5(data: bytes) -> Plan:
    """The whole plan stored as `data` in format 5."""
    source = BytesSource(data)
    layout = read_layout(source, len(data))
    return Plan(
        layout.created_at,
        tuple(_all(layout.decisions, lambda c: decision_chunk(source, layout, c))),
        tuple(_all(layout.actions, lambda c: action_chunk(source, layout, c))),
        layout.bytes_freed,
    )


def selection_of(source: Source, layout: Layout) -> Selection:
    """The tags the format 5 plan in `source` (laid out as `layout`) deletes, read from its
    chunks of decisions alone."""
    selection: Selection = {}
    for chunk in layout.decisions:
        entries_selection(_entries(source, chunk), selection)
    return selection


def selection_v5(data: bytes) -> Selection:
    """The tags a format 5 plan deletes, read from its decisions alone."""
    source = BytesSource(data)
    return selection_of(source, read_layout(source, len(data)))
