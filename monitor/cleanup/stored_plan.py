"""The stored form of a plan: decisions grouped, compressed, apart from the actions.

A plan of 100k tags as one JSON object per decision (with its text) was 24 MB. Here the
decisions of one repository are grouped by (decision, reason, policy, detail), each group a
list of tags and a list of their digests (`@` for a tag an action deletes: the action names
the digest, so it is stored once). Decisions come back per repository in tag order, the order
the planner makes (`encode` sorts them the same way, so any plan round-trips to its canonical
order). Pure: bytes in, plan out.

Format 3 (`MAGIC`, the length of the first part, then two zlib streams): the decisions, then
the digest actions, written in slices so the whole JSON never sits in memory. A diff needs only
the previous plan's selection, which `decode_selection` reads from the first part without
touching the actions (500k of them when untagged manifests go). Format 2 (one zlib stream of
both) is still read.
"""

from __future__ import annotations

import struct
import zlib
from collections import defaultdict
from datetime import datetime
from typing import Any

import orjson

from monitor.cleanup.model import TagRef
from monitor.cleanup.plan import Decision, DigestAction, Plan, Reason, Selection, TagDecision
from monitor.errors import ParseError

FORMAT = 3
MAGIC = b"RMP3"
"""Starts a format 3 plan (a zlib stream, format 2, starts with 0x78)."""
_LENGTH = struct.Struct(">I")
ACTION_SLICE = 10_000
"""Actions turned into JSON at a time."""
_PREFIX = "sha256:"
_PREFIX_LENGTH = len(_PREFIX)
_BY_ACTION = "@"
"""Stored in place of the digest of a tag that an action deletes: the action names it."""

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


def _deleted_digests(actions: tuple[DigestAction, ...]) -> dict[tuple[str, str], str]:
    return {(a.repository, tag): a.digest for a in actions if a.tags for tag in a.tags}


def encode(plan: Plan) -> bytes:
    """The compressed, grouped form of `plan` (format 3)."""
    by_action = _deleted_digests(plan.actions)

    def digest_of(d: TagDecision) -> str:
        if by_action.get((d.repository, d.tag)) == d.digest:
            return _BY_ACTION
        return _short(d.digest)

    repositories: dict[str, dict[GroupKey, list[TagDecision]]] = {}
    for decision in canonical(plan).decisions:
        groups = repositories.setdefault(decision.repository, defaultdict(list))
        key = (decision.decision.value, decision.reason.value, decision.policy, decision.detail)
        groups[key].append(decision)
    document = {
        "format": FORMAT,
        "created_at": plan.created_at.isoformat(),
        "bytes_freed": plan.bytes_freed,
        "repositories": [
            [
                name,
                [
                    [*key, [d.tag for d in members], [digest_of(d) for d in members]]
                    for key, members in groups.items()
                ],
            ]
            for name, groups in repositories.items()
        ],
    }
    decisions = zlib.compress(orjson.dumps(document), 6)
    return MAGIC + _LENGTH.pack(len(decisions)) + decisions + _encode_actions(plan.actions)


def _encode_actions(actions: tuple[DigestAction, ...]) -> bytes:
    """The actions as one compressed JSON list, made a slice at a time."""
    stream = zlib.compressobj(6)
    out = [stream.compress(b"[")]
    for start in range(0, len(actions), ACTION_SLICE):
        rows = [  # _short inlined, the reason as the enumeration (orjson writes its value)
            [
                a.repository,
                a.digest[_PREFIX_LENGTH:] if a.digest.startswith(_PREFIX) else "=" + a.digest,
                a.tags,
                a.reason,
                a.policy,
                a.media_type,
            ]
            for a in actions[start : start + ACTION_SLICE]
        ]
        out.append(stream.compress((b"," if start else b"") + orjson.dumps(rows)[1:-1]))
    out.append(stream.compress(b"]"))
    out.append(stream.flush())
    return b"".join(out)


def _parts(data: bytes) -> tuple[dict[str, Any], bytes | None]:
    """The decisions document and the compressed actions (None in format 2, whose
    document holds them)."""
    if data.startswith(MAGIC):
        (length,) = _LENGTH.unpack_from(data, len(MAGIC))
        start = len(MAGIC) + _LENGTH.size
        document = orjson.loads(zlib.decompress(data[start : start + length]))
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ValueError("not a stored plan of format 3")
        return document, data[start + length :]
    document = orjson.loads(zlib.decompress(data))
    if not isinstance(document, dict) or document.get("format") != 2:
        raise ValueError("not a stored plan of format 2 or 3")
    return document, None


def decode(data: bytes) -> Plan:
    """The plan `encode` stored; ParseError when `data` is not one."""
    try:
        document, packed = _parts(data)
        rows = document["actions"] if packed is None else orjson.loads(zlib.decompress(packed))
        actions = tuple(
            DigestAction(repo, _long(digest), tuple(tags), Reason(reason), policy, media_type)
            for repo, digest, tags, reason, policy, media_type in rows
        )
        by_action = _deleted_digests(actions)
        decisions: list[TagDecision] = []
        for name, groups in document["repositories"]:
            mine: list[TagDecision] = []
            for decision, reason, policy, detail, tags, digests in groups:
                kind, why = Decision(decision), Reason(reason)
                mine.extend(
                    TagDecision(
                        name,
                        tag,
                        by_action[(name, tag)] if digest == _BY_ACTION else _long(digest),
                        kind,
                        why,
                        policy,
                        detail,
                    )
                    for tag, digest in zip(tags, digests, strict=True)
                )
            mine.sort(key=lambda d: d.tag)
            decisions.extend(mine)
        return Plan(
            datetime.fromisoformat(document["created_at"]),
            tuple(decisions),
            actions,
            int(document["bytes_freed"]),
        )
    except (zlib.error, ValueError, KeyError, TypeError, struct.error) as exc:
        # JSONDecodeError is a ValueError
        raise ParseError("stored_plan", f"stored cleanup plan is unreadable: {exc}") from exc


def decode_selection(data: bytes) -> Selection:
    """The tags the stored plan deletes with their reasons (`Plan.selection`), read from the
    decisions alone in format 3; ParseError when `data` is not a stored plan."""
    try:
        document, packed = _parts(data)
        if packed is None:
            return decode(data).selection()
        selection: Selection = {}
        for name, groups in document["repositories"]:
            for decision, reason, _policy, detail, tags, _digests in groups:
                if decision == Decision.DELETE.value:
                    why = Reason(reason)
                    for tag in tags:
                        selection[TagRef(name, tag)] = (why, detail)
        return selection
    except (zlib.error, ValueError, KeyError, TypeError, struct.error) as exc:
        raise ParseError("stored_plan", f"stored cleanup plan is unreadable: {exc}") from exc
