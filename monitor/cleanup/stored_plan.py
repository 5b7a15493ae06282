"""The stored form of a plan: decisions grouped, actions with their digests, both in chunks
that a page reads alone. Pure.

Format 5 (its layout and reading: monitor.cleanup.plan_chunks): a header with the index of
the chunks, chunks of up to 1,000 decisions (grouped per repository by decision, reason,
policy and detail; a deleted tag's digest is a reference to the same digest among the
actions'), chunks of up to 1,000 actions, and the SHA-256 digests of the actions, 32 bytes
each: random bytes, which are the floor of a stored plan's size (a plan of 43,889 deletes
holds 1.4 MB of them).

A plan loads back with the digests of the tags it does not delete gone (`as_stored`), and
decisions per repository in tag order. `PlanWriter` writes a plan a repository at a time, so
the whole plan never sits in memory; a diff needs only the previous plan's selection, which
`decode_selection` reads from the decisions alone. Formats 2, 3 and 4 are still read
(monitor.cleanup.stored_plan_v3, monitor.cleanup.stored_plan_v4).
"""

from __future__ import annotations

import contextlib
import dataclasses
import struct
import zlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import orjson

from monitor.cleanup.model import TagRef
from monitor.cleanup.plan import (
    Decision,
    DigestAction,
    Plan,
    PlanHash,
    Selection,
    TagDecision,
)
from monitor.cleanup.plan_chunks import (
    CHUNK,
    FORMAT,
    LENGTH,
    MAGIC,
    PREFIX,
    decode_v5,
    selection_v5,
    short,
)
from monitor.cleanup.stored_plan_v3 import MAGIC_V3, decode_v3, selection_v3
from monitor.cleanup.stored_plan_v4 import MAGIC_V4, decode_v4, selection_v4
from monitor.errors import ParseError

__all__ = [
    "MAGIC",
    "EncodedPlan",
    "PlanPart",
    "PlanWriter",
    "as_stored",
    "canonical",
    "decode",
    "decode_selection",
    "encode",
    "encode_plan",
    "readable",
]


def _sha256_bytes(digest: str) -> bytes | None:
    """The 32 bytes of a SHA-256 `digest` in its canonical spelling ("sha256:" and 64
    lowercase hexadecimal digits), else None: what the digests part holds, and a digest it
    gives back as it was. Canonical is what reads back the same (`fromhex` also takes upper
    case and spaces): half the time of a regular expression's match."""
    if not digest.startswith(PREFIX):
        return None
    hexadecimal = digest[len(PREFIX) :]
    try:
        raw = bytes.fromhex(hexadecimal)
    except ValueError:
        return None
    return raw if len(raw) == 32 and raw.hex() == hexadecimal else None


_LEVEL = 9
_UNREADABLE = (zlib.error, ValueError, KeyError, TypeError, IndexError, struct.error)

GroupKey = tuple[str, str, str | None, str]
DigestRefs = dict[tuple[str, str], int]
"""(repository, digest) to the position of the digest in the digests part."""


def canonical(plan: Plan) -> Plan:
    """The plan with its decisions in stored order: repositories as they first appear, tags
    in order within each."""
    order: dict[str, int] = {}
    for decision in plan.decisions:
        order.setdefault(decision.repository, len(order))
    decisions = sorted(plan.decisions, key=lambda d: (order[d.repository], d.tag))
    return Plan(plan.created_at, tuple(decisions), plan.actions, plan.bytes_freed)


def as_stored(plan: Plan) -> Plan:
    """`plan` as it loads back from the store: canonical order, and no digest on the
    decisions of tags it does not delete."""
    ordered = canonical(plan)
    decisions = tuple(
        d if d.decision is Decision.DELETE or d.digest is None else d._replace(digest=None)
        for d in ordered.decisions
    )
    return Plan(plan.created_at, decisions, plan.actions, plan.bytes_freed)


@dataclasses.dataclass(frozen=True, slots=True)
class EncodedPlan:
    """A plan in its stored form, with what its summary row and the next diff need."""

    plan_id: str
    created_at: datetime
    data: bytes
    counts: dict[str, int]
    actions: int
    bytes_freed: int
    selection: Selection


@dataclasses.dataclass(frozen=True, slots=True)
class PlanPart:
    """What a `PlanWriter` of a part of a plan (repositories planned in another process) hands
    to the writer of the whole: its chunks, digests, counts, selection, and the hashes of its
    repositories' actions for the plan's id."""

    decision_chunks: list[tuple[int, bytes]]
    action_chunks: list[tuple[int, int, bytes]]
    digests: bytes
    digest_count: int
    counts: dict[str, int]
    action_count: int
    selection: Selection
    action_hashes: bytes


def _shifted(packed: bytes, offset: int) -> bytes:
    """A chunk of decisions with its references to the digests part moved by `offset`."""
    entries = orjson.loads(zlib.decompress(packed))
    moved = False
    for _name, groups in entries:
        for group in groups:
            if len(group) > 5:
                group[5] = [r + offset if isinstance(r, int) else r for r in group[5]]
                moved = True
    return zlib.compress(orjson.dumps(entries), _LEVEL) if moved else packed


class PlanWriter:
    """Builds the stored form a repository at a time (`add`), then `finish`es it. A writer
    made with `part=True` writes a part of a plan instead: `part()` gives it, and the writer
    of the whole `absorb`s it after the repositories before it."""

    def __init__(self, created_at: datetime, *, part: bool = False) -> None:
        self.created_at = created_at
        self._decision_chunks: list[tuple[int, bytes]] = []
        self._action_chunks: list[tuple[int, int, bytes]] = []
        self._decisions: list[tuple[str, TagDecision, int | str | None]] = []
        self._actions: list[tuple[DigestAction, bytes | None]] = []
        self._digests = bytearray()
        self._digest_count = 0
        self._hash = PlanHash(created_at)
        self._hashes: list[bytes] | None = [] if part else None
        self.counts = {d.value: 0 for d in Decision}
        self.action_count = 0
        self.selection: Selection = {}

    def add(
        self,
        repository: str,
        decisions: Sequence[TagDecision],
        actions: Sequence[DigestAction],
    ) -> None:
        """One repository's decisions (all of `repository`) and the actions that follow."""
        refs = self.add_actions(actions)
        if decisions:
            self._add_decisions(repository, decisions, refs)

    def _add_decisions(
        self, repository: str, decisions: Sequence[TagDecision], refs: DigestRefs
    ) -> None:
        counts, selection = self.counts, self.selection
        for d in sorted(decisions, key=lambda d: d.tag):
            counts[d.decision.value] += 1
            ref: int | str | None = None
            if d.decision is Decision.DELETE:
                selection[TagRef(repository, d.tag)] = (d.reason, d.detail)
                digest = d.digest or ""
                ref = refs.get((repository, digest), short(digest))
            self._decisions.append((repository, d, ref))
            if len(self._decisions) == CHUNK:
                self._flush_decisions()

    def _flush_decisions(self) -> None:
        if not self._decisions:
            return
        entries: dict[str, dict[GroupKey, list[Any]]] = {}
        for repository, d, ref in self._decisions:
            groups = entries.setdefault(repository, {})
            key = (d.decision.value, d.reason.value, d.policy, d.detail)
            group = groups.get(key)
            if group is None:
                group = groups[key] = [*key, []]
                if d.decision is Decision.DELETE:
                    group.append([])
            group[4].append(d.tag)
            if d.decision is Decision.DELETE:
                group[5].append(ref)
        text = orjson.dumps([[name, list(groups.values())] for name, groups in entries.items()])
        self._decision_chunks.append((len(self._decisions), zlib.compress(text, _LEVEL)))
        self._decisions = []

    def add_actions(self, actions: Sequence[DigestAction]) -> DigestRefs:
        """Actions in plan order (consecutive ones of one repository stored as one run).

        Answers where the SHA-256 digests of the actions that name tags go in the digests
        part: a deleted tag's digest is one of these (untagged manifests, the bulk of a large
        plan, need no entry)."""
        refs: DigestRefs = {}
        if not actions:
            return refs
        if self._hashes is None:
            self._hash.update(actions)
        else:
            self._hashes.append(PlanHash.repository_hashes(actions))
        self.action_count += len(actions)
        pending = self._actions
        for action in actions:
            raw = _sha256_bytes(action.digest)
            if raw is not None:
                if action.tags:
                    refs.setdefault((action.repository, action.digest), self._digest_count)
                self._digest_count += 1
            pending.append((action, raw))
            if len(pending) == CHUNK:
                self._flush_actions()
                pending = self._actions
        return refs

    def _flush_actions(self) -> None:
        if not self._actions:
            return
        runs: list[list[Any]] = []
        rows: list[list[Any]] = []
        repository = None
        digests: list[bytes] = []
        for action, raw in self._actions:
            if action.repository != repository:
                repository = action.repository
                rows = []
                runs.append([repository, rows])
            if raw is None:
                rows.append(
                    [action.tags, action.reason, action.policy, action.media_type, action.digest]
                )
            else:
                rows.append([action.tags, action.reason, action.policy, action.media_type])
                digests.append(raw)
        self._digests += b"".join(digests)
        packed = zlib.compress(orjson.dumps(runs), _LEVEL)
        self._action_chunks.append((len(self._actions), len(digests), packed))
        self._actions = []

    def part(self) -> PlanPart:
        """The part of a plan written so far (a writer made with `part=True`)."""
        if self._hashes is None:
            raise ValueError("a writer of a whole plan has no part to give")
        self._flush_decisions()
        self._flush_actions()
        return PlanPart(
            self._decision_chunks, self._action_chunks, bytes(self._digests),
            self._digest_count, dict(self.counts), self.action_count, self.selection,
            b"".join(self._hashes),
        )  # fmt: skip

    def absorb(self, part: PlanPart) -> None:
        """Adds `part`, planned from repositories after every one added so far (its chunks
        follow these, its references to digests moved past these digests)."""
        self._flush_decisions()
        self._flush_actions()
        offset = self._digest_count
        chunks = part.decision_chunks
        self._decision_chunks += [(n, _shifted(packed, offset)) for n, packed in chunks]
        self._action_chunks += part.action_chunks
        self._digests += part.digests
        self._digest_count += part.digest_count
        for decision, count in part.counts.items():
            self.counts[decision] += count
        self.action_count += part.action_count
        self.selection.update(part.selection)
        if self._hashes is None:
            self._hash.update_hashes(part.action_hashes)
        else:
            self._hashes.append(part.action_hashes)

    def finish(self, bytes_freed: int) -> EncodedPlan:
        self._flush_decisions()
        self._flush_actions()
        header = orjson.dumps(
            {
                "format": FORMAT,
                "created_at": self.created_at.isoformat(),
                "bytes_freed": bytes_freed,
                "decisions": [[count, len(packed)] for count, packed in self._decision_chunks],
                "actions": [
                    [count, digests, len(packed)] for count, digests, packed in self._action_chunks
                ],
            }
        )
        data = b"".join(
            [
                MAGIC,
                LENGTH.pack(len(header)),
                header,
                *(packed for _, packed in self._decision_chunks),
                *(packed for _, _, packed in self._action_chunks),
                self._digests,
            ]
        )
        return EncodedPlan(
            plan_id=self._hash.plan_id(),
            created_at=self.created_at,
            data=data,
            counts=dict(self.counts),
            actions=self.action_count,
            bytes_freed=bytes_freed,
            selection=self.selection,
        )


def encode_plan(plan: Plan) -> EncodedPlan:
    """The stored form of a whole `plan` (format 5)."""
    writer = PlanWriter(plan.created_at)
    refs = writer.add_actions(plan.actions)
    by_repository: dict[str, list[TagDecision]] = {}
    for decision in canonical(plan).decisions:
        by_repository.setdefault(decision.repository, []).append(decision)
    for repository, decisions in by_repository.items():
        writer._add_decisions(repository, decisions, refs)
    return writer.finish(plan.bytes_freed)


def encode(plan: Plan) -> bytes:
    """The stored form of `plan` (format 5)."""
    return encode_plan(plan).data


@contextlib.contextmanager
def readable() -> Iterator[None]:
    """Whatever reading a stored plan raises for bytes that are not one, as ParseError."""
    try:
        yield
    except _UNREADABLE as exc:  # JSONDecodeError is a ValueError
        raise ParseError("stored_plan", f"stored cleanup plan is unreadable: {exc}") from exc


def decode(data: bytes) -> Plan:
    """The plan stored as `data` (any format); ParseError when `data` is not one."""
    with readable():
        if data.startswith(MAGIC):
            return decode_v5(data)
        if data.startswith(MAGIC_V4):
            return decode_v4(data)
        return decode_v3(data)


def decode_selection(data: bytes) -> Selection:
    """The tags the stored plan deletes with their reasons (`Plan.selection`), read from the
    decisions alone; ParseError when `data` is not a stored plan."""
    with readable():
        if data.startswith(MAGIC):
            return selection_v5(data)
        if data.startswith(MAGIC_V4):
            return selection_v4(data)
        if data.startswith(MAGIC_V3):
            return selection_v3(data)
    return decode(data).selection()
