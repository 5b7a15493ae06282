"""The stored form of a plan: decisions grouped, compressed.

A plan of 100k tags as one JSON object per decision (with its text) was 24 MB. Here the
decisions of one repository are grouped by (decision, reason, policy, detail), each group a
list of tags and a list of their digests (`@` for a tag an action deletes: the action names
the digest, so it is stored once), and the JSON is compressed with zlib. Decisions come
back per repository in tag order, the order the planner makes (`encode` sorts them the same way,
so any plan round-trips to its canonical order). Pure: bytes in, plan out.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from datetime import datetime
from typing import Any

import orjson

from monitor.cleanup.plan import Decision, DigestAction, Plan, Reason, TagDecision
from monitor.errors import ParseError

FORMAT = 2
_PREFIX = "sha256:"
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
    return {(a.repository, tag): a.digest for a in actions for tag in a.tags}


def encode(plan: Plan) -> bytes:
    """The compressed, grouped form of `plan`."""
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
        "actions": [
            [a.repository, _short(a.digest), list(a.tags), a.reason.value, a.policy, a.media_type]
            for a in plan.actions
        ],
    }
    return zlib.compress(orjson.dumps(document), 6)


def decode(data: bytes) -> Plan:
    """The plan `encode` stored; ParseError when `data` is not one."""
    try:
        document: Any = orjson.loads(zlib.decompress(data))
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ValueError("not a stored plan of format 2")
        actions = tuple(
            DigestAction(repo, _long(digest), tuple(tags), Reason(reason), policy, media_type)
            for repo, digest, tags, reason, policy, media_type in document["actions"]
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
    except (zlib.error, ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise ParseError("stored_plan", f"stored cleanup plan is unreadable: {exc}") from exc
