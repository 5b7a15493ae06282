"""The stored form of a plan: decisions grouped without digests, actions with theirs. Pure.

Format 4 (`MAGIC`, then three parts each after its 4-byte length, then the digests):

- a header (JSON): the format, when the plan was made and the bytes it frees;
- the decisions (zlib, JSON): per repository, one group per (decision, reason, policy,
  detail) listing its tags. No digest: apply needs only the actions' digests, and a tag the
  plan deletes takes its digest from the action that names it (a delete group carries its
  digests only when some action does not name them, which the planner never makes);
- the actions (zlib, JSON): runs of consecutive actions of one repository, each action its
  tags, reason, policy and media type (and its digest when that is not a SHA-256 digest in
  lower-case hexadecimal);
- the SHA-256 digests of the other actions, 32 bytes each in order: random bytes, which is
  the floor of a stored plan's size (a plan of 43,889 deletes holds 1.4 MB of them).

A plan loads back with the digests of the tags it does not delete gone (`as_stored`), and
decisions per repository in tag order. `PlanWriter` writes a plan a repository at a time, so
the whole plan never sits in memory; a diff needs only the previous plan's selection, which
`decode_selection` reads from the decisions alone. Formats 2 and 3, with every tag's digest,
are still read (monitor.cleanup.stored_plan_v3).
"""

from __future__ import annotations

import dataclasses
import re
import struct
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson

from monitor.cleanup.model import TagRef
from monitor.cleanup.plan import (
    Decision,
    DigestAction,
    Plan,
    PlanHash,
    Reason,
    Selection,
    TagDecision,
)
from monitor.cleanup.stored_plan_v3 import MAGIC_V3, decode_v3, selection_v3
from monitor.errors import ParseError

FORMAT = 4
MAGIC = b"RMP4"
_LENGTH = struct.Struct(">I")
_PREFIX = "sha256:"
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
_DIGEST_BYTES = 32
_LEVEL = 9
_UNREADABLE = (zlib.error, ValueError, KeyError, TypeError, IndexError, struct.error)

GroupKey = tuple[str, str, str | None, str]


def _short(digest: str) -> str:
    return digest[len(_PREFIX) :] if digest.startswith(_PREFIX) else "=" + digest


def _long(short: str) -> str:
    return short[1:] if short.startswith("=") else _PREFIX + short


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


def _named_by_actions(actions: Iterable[DigestAction]) -> dict[tuple[str, str], str]:
    return {(a.repository, tag): a.digest for a in actions if a.tags for tag in a.tags}


class PlanWriter:
    """Builds the stored form a repository at a time (`add`), then `finish`es it."""

    def __init__(self, created_at: datetime) -> None:
        self.created_at = created_at
        self._decisions = zlib.compressobj(_LEVEL)
        self._actions = zlib.compressobj(_LEVEL)
        self._decision_parts = [self._decisions.compress(b"[")]
        self._action_parts = [self._actions.compress(b"[")]
        self._digests = bytearray()
        self._first_decisions = self._first_actions = True
        self._hash = PlanHash(created_at)
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
        if decisions:
            self._add_decisions(repository, decisions, _named_by_actions(actions))
        self.add_actions(actions)

    def _add_decisions(
        self,
        repository: str,
        decisions: Sequence[TagDecision],
        named: dict[tuple[str, str], str],
    ) -> None:
        groups: dict[GroupKey, list[TagDecision]] = defaultdict(list)
        counts, selection = self.counts, self.selection
        for d in decisions:
            groups[(d.decision.value, d.reason.value, d.policy, d.detail)].append(d)
            counts[d.decision.value] += 1
            if d.decision is Decision.DELETE:
                selection[TagRef(repository, d.tag)] = (d.reason, d.detail)
        rows: list[list[Any]] = []
        for key, members in groups.items():
            row: list[Any] = [*key, [d.tag for d in members]]
            if key[0] == Decision.DELETE.value:
                digests = [
                    "@" if named.get((repository, d.tag)) == d.digest else _short(d.digest or "")
                    for d in members
                ]
                if any(digest != "@" for digest in digests):
                    row.append(digests)
            rows.append(row)
        text = orjson.dumps([repository, rows])
        self._decision_parts.append(
            self._decisions.compress(text if self._first_decisions else b"," + text)
        )
        self._first_decisions = False

    def add_actions(self, actions: Sequence[DigestAction]) -> None:
        """Actions in plan order (consecutive ones of one repository stored as one run)."""
        if not actions:
            return
        self._hash.update(actions)
        self.action_count += len(actions)
        runs: list[list[Any]] = []
        for action in actions:
            row: list[Any] = [action.tags, action.reason, action.policy, action.media_type]
            if _SHA256.fullmatch(action.digest):
                self._digests += bytes.fromhex(action.digest[len(_PREFIX) :])
            else:
                row.append(action.digest)
            if not runs or runs[-1][0] != action.repository:
                runs.append([action.repository, []])
            runs[-1][1].append(row)
        text = orjson.dumps(runs)[1:-1]
        self._action_parts.append(
            self._actions.compress(text if self._first_actions else b"," + text)
        )
        self._first_actions = False

    def finish(self, bytes_freed: int) -> EncodedPlan:
        header = orjson.dumps(
            {
                "format": FORMAT,
                "created_at": self.created_at.isoformat(),
                "bytes_freed": bytes_freed,
            }
        )
        decisions = b"".join([*self._decision_parts, self._decisions.compress(b"]")])
        decisions += self._decisions.flush()
        actions = b"".join([*self._action_parts, self._actions.compress(b"]")])
        actions += self._actions.flush()
        data = b"".join(
            [
                MAGIC,
                *(_LENGTH.pack(len(part)) + part for part in (header, decisions, actions)),
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
    """The stored form of a whole `plan` (format 4)."""
    writer = PlanWriter(plan.created_at)
    named = _named_by_actions(plan.actions)
    by_repository: dict[str, list[TagDecision]] = {}
    for decision in canonical(plan).decisions:
        by_repository.setdefault(decision.repository, []).append(decision)
    for repository, decisions in by_repository.items():
        writer._add_decisions(repository, decisions, named)
    writer.add_actions(plan.actions)
    return writer.finish(plan.bytes_freed)


def encode(plan: Plan) -> bytes:
    """The compressed, grouped form of `plan` (format 4)."""
    return encode_plan(plan).data


def _parts(data: bytes) -> tuple[dict[str, Any], list[bytes], bytes]:
    """The header, the compressed parts after it, and the digests of a format 4 plan."""
    offset = len(MAGIC)
    parts: list[bytes] = []
    for _ in range(3):
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if offset + length > len(data):
            raise ValueError("stored plan is cut short")
        parts.append(data[offset : offset + length])
        offset += length
    header = orjson.loads(parts[0])
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError("not a stored plan of format 4")
    return header, parts[1:], data[offset:]


def _actions(packed: bytes, digests: bytes) -> tuple[DigestAction, ...]:
    out: list[DigestAction] = []
    offset = 0
    for repository, rows in orjson.loads(zlib.decompress(packed)):
        for row in rows:
            tags, reason, policy, media_type = row[:4]
            if len(row) == 5:
                digest = str(row[4])
            else:
                raw = digests[offset : offset + _DIGEST_BYTES]
                if len(raw) != _DIGEST_BYTES:
                    raise ValueError("stored plan lacks the digests of its actions")
                digest = _PREFIX + raw.hex()
                offset += _DIGEST_BYTES
            out.append(
                DigestAction(repository, digest, tuple(tags), Reason(reason), policy, media_type)
            )
    if offset != len(digests):
        raise ValueError("stored plan has digests no action names")
    return tuple(out)


def _decisions(packed: bytes, named: dict[tuple[str, str], str]) -> list[TagDecision]:
    decisions: list[TagDecision] = []
    for name, groups in orjson.loads(zlib.decompress(packed)):
        mine: list[TagDecision] = []
        for group in groups:
            decision, reason, policy, detail, tags = group[:5]
            kind, why = Decision(decision), Reason(reason)
            found: list[str | None]
            if kind is Decision.DELETE:
                digests = group[5] if len(group) > 5 else ["@"] * len(tags)
                found = [
                    named[(name, tag)] if digest == "@" else _long(digest)
                    for tag, digest in zip(tags, digests, strict=True)
                ]
            else:
                found = [None] * len(tags)
            mine.extend(
                TagDecision(name, tag, digest, kind, why, policy, detail)
                for tag, digest in zip(tags, found, strict=True)
            )
        mine.sort(key=lambda d: d.tag)
        decisions.extend(mine)
    return decisions


def decode(data: bytes) -> Plan:
    """The plan stored as `data` (any format); ParseError when `data` is not one."""
    try:
        if not data.startswith(MAGIC):
            return decode_v3(data)
        header, (decisions, actions), digests = _parts(data)
        loaded = _actions(actions, digests)
        return Plan(
            datetime.fromisoformat(header["created_at"]),
            tuple(_decisions(decisions, _named_by_actions(loaded))),
            loaded,
            int(header["bytes_freed"]),
        )
    except _UNREADABLE as exc:  # JSONDecodeError is a ValueError
        raise ParseError("stored_plan", f"stored cleanup plan is unreadable: {exc}") from exc


def decode_selection(data: bytes) -> Selection:
    """The tags the stored plan deletes with their reasons (`Plan.selection`), read from the
    decisions alone; ParseError when `data` is not a stored plan."""
    try:
        if not data.startswith(MAGIC):
            return selection_v3(data) if data.startswith(MAGIC_V3) else decode(data).selection()
        _header, (decisions, _actions), _digests = _parts(data)
        selection: Selection = {}
        for name, groups in orjson.loads(zlib.decompress(decisions)):
            for decision, reason, _policy, detail, tags, *_ in groups:
                if decision == Decision.DELETE.value:
                    why = Reason(reason)
                    for tag in tags:
                        selection[TagRef(name, tag)] = (why, detail)
        return selection
    except _UNREADABLE as exc:
        raise ParseError("stored_plan", f"stored cleanup plan is unreadable: {exc}") from exc
