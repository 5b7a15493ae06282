"""A cleanup plan: a decision per tag, an action per digest, and how two plans differ.

Plans are plain data: `to_dict`/`from_dict` give the JSON-ready form the store keeps.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from itertools import groupby
from operator import attrgetter
from typing import Any, NamedTuple

from monitor.cleanup.model import TagRef
from monitor.events import format_timestamp, parse_timestamp


class Decision(StrEnum):
    DELETE = "delete"
    KEEP = "keep"
    PROTECTED = "protected"
    UNKNOWN = "unknown"  # not enough knowledge to delete: kept


class Reason(StrEnum):
    NO_POLICY = "no_policy"
    ATTACHMENT = "attachment"
    PINNED = "pinned"
    DEPLOYED = "deployed"
    GRACE_PERIOD = "grace_period"
    MIN_TAGS = "min_tags"
    SHARES_DIGEST = "shares_digest_with_kept"
    CHILD_OF_KEPT_INDEX = "child_of_kept_index"
    KEEP_MOST_RECENT = "keep_most_recent"
    KEEP_PULLED_WITHIN = "keep_pulled_within"
    KEEP_PUSHED_WITHIN = "keep_pushed_within"
    KEEP_TAG_PATTERN = "keep_tag_pattern"
    NO_DELETE_RULE = "no_delete_rule"
    DELETE_RULE = "delete_rule"
    COVERAGE_GAP = "coverage_gap"
    FIRST_SEEN_TOO_RECENT = "first_seen_too_recent"
    UNTAGGED = "untagged"


REASON_TEXT: dict[Reason, str] = {
    Reason.NO_POLICY: "no policy selects this repository",
    Reason.ATTACHMENT: "signature/attestation tag {detail}; follows its subject",
    Reason.PINNED: "pinned by tag pattern {detail}",
    Reason.DEPLOYED: "listed in the deployed set ({detail})",
    Reason.GRACE_PERIOD: "pushed within the grace period of {detail}",
    Reason.MIN_TAGS: "keeps the repository at its minimum of {detail} tags",
    Reason.SHARES_DIGEST: "its digest also carries a kept tag; deleting it would delete that tag",
    Reason.CHILD_OF_KEPT_INDEX: "its manifest is a child of a kept index",
    Reason.KEEP_MOST_RECENT: "among the {detail} most recently pushed",
    Reason.KEEP_PULLED_WITHIN: "pulled within {detail}",
    Reason.KEEP_PUSHED_WITHIN: "pushed within {detail}",
    Reason.KEEP_TAG_PATTERN: "kept by tag pattern {detail}",
    Reason.NO_DELETE_RULE: "no delete rule matches; the default is keep",
    Reason.DELETE_RULE: "selected by delete rule {detail}",
    Reason.COVERAGE_GAP: "unknown, kept: the monitor was not listening for all of {detail}",
    Reason.FIRST_SEEN_TOO_RECENT: "unknown, kept: first seen less than {detail} ago",
    Reason.UNTAGGED: "untagged manifest selected by delete rule {detail}",
}


Selection = dict[TagRef, tuple[Reason, str]]
"""The tags a plan deletes, each with its reason and detail."""


class TagDecision(NamedTuple):
    """The decision on one tag (a NamedTuple: a million of them are made per plan).

    `digest` is where the tag pointed when planned; a stored plan keeps it only for the tags
    it deletes (their actions name it), so a plan loaded from the store has None for the
    others."""

    repository: str
    tag: str
    digest: str | None
    decision: Decision
    reason: Reason
    policy: str | None = None
    detail: str = ""

    @property
    def ref(self) -> TagRef:
        return TagRef(self.repository, self.tag)

    @property
    def text(self) -> str:
        return REASON_TEXT[self.reason].format(detail=self.detail)


class DigestAction(NamedTuple):
    """Delete one manifest; `tags` are all the live tags on it (empty for untagged ones).
    A NamedTuple, like TagDecision: a large plan makes half a million."""

    repository: str
    digest: str
    tags: tuple[str, ...]
    reason: Reason
    policy: str
    media_type: str | None = None


def decision_dict(d: TagDecision) -> dict[str, Any]:
    """A decision as the API and `--json` show it."""
    return {
        "repository": d.repository,
        "tag": d.tag,
        "digest": d.digest,
        "decision": d.decision.value,
        "reason": d.reason.value,
        "policy": d.policy,
        "detail": d.detail,
        "text": d.text,
    }


def action_dict(a: DigestAction) -> dict[str, Any]:
    """An action as the API and `--json` show it."""
    return {
        "repository": a.repository,
        "digest": a.digest,
        "tags": list(a.tags),
        "reason": a.reason.value,
        "policy": a.policy,
        "media_type": a.media_type,
    }


class PlanHash:
    """A plan's id: a hash over its time and, in order, the hash of each repository's actions
    (a run of consecutive actions of one repository), fed as they come. Hashed per repository,
    processes planning different repositories hash theirs side by side (`repository_hashes`)
    and the plan's id is the same as one process gives."""

    def __init__(self, created_at: datetime) -> None:
        self._hash = hashlib.sha256(created_at.isoformat().encode())

    @staticmethod
    def repository_hashes(actions: Iterable[DigestAction]) -> bytes:
        """The SHA-256 of each run of one repository's `actions`, joined: what `update` hashes."""
        return b"".join(
            hashlib.sha256(
                "".join([f"{a.repository}@{a.digest}:{','.join(a.tags)};" for a in run]).encode()
            ).digest()
            for _repository, run in groupby(actions, key=attrgetter("repository"))
        )

    def update(self, actions: Iterable[DigestAction]) -> None:
        self._hash.update(self.repository_hashes(actions))

    def update_hashes(self, hashes: bytes) -> None:
        """Hashes what `repository_hashes` gave, as `update` with those actions would."""
        self._hash.update(hashes)

    def plan_id(self) -> str:
        return self._hash.hexdigest()[:16]


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    created_at: datetime
    decisions: tuple[TagDecision, ...]
    actions: tuple[DigestAction, ...]
    bytes_freed: int

    @property
    def plan_id(self) -> str:
        plan_hash = PlanHash(self.created_at)
        plan_hash.update(self.actions)
        return plan_hash.plan_id()

    def selected(self) -> dict[TagRef, TagDecision]:
        """Tags the plan deletes."""
        return {d.ref: d for d in self.decisions if d.decision is Decision.DELETE}

    def selection(self) -> Selection:
        """Tags the plan deletes, with the reason and detail of each: what a diff compares."""
        return {
            TagRef(d.repository, d.tag): (d.reason, d.detail)
            for d in self.decisions
            if d.decision is Decision.DELETE
        }

    def counts(self) -> dict[str, int]:
        out = {d.value: 0 for d in Decision}
        for decision in self.decisions:
            out[decision.decision.value] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan_id": self.plan_id,
            "created_at": format_timestamp(self.created_at),
            "bytes_freed": self.bytes_freed,
            "decisions": [decision_dict(d) for d in self.decisions],
            "actions": [action_dict(a) for a in self.actions],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(
            created_at=parse_timestamp(data["created_at"]),
            bytes_freed=int(data["bytes_freed"]),
            decisions=tuple(
                TagDecision(
                    repository=d["repository"],
                    tag=d["tag"],
                    digest=d.get("digest"),
                    decision=Decision(d["decision"]),
                    reason=Reason(d["reason"]),
                    policy=d.get("policy"),
                    detail=d.get("detail", ""),
                )
                for d in data["decisions"]
            ),
            actions=tuple(
                DigestAction(
                    repository=a["repository"],
                    digest=a["digest"],
                    tags=tuple(a["tags"]),
                    reason=Reason(a["reason"]),
                    policy=a["policy"],
                    media_type=a.get("media_type"),
                )
                for a in data["actions"]
            ),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class PlanDiff:
    newly_selected: tuple[TagRef, ...]
    no_longer_selected: tuple[TagRef, ...]
    changed_reason: tuple[tuple[TagRef, Reason, Reason], ...]


def diff_plans(previous: Plan | None, current: Plan) -> PlanDiff:
    """Tags the current plan deletes that the previous did not, and the reverse.

    `changed_reason` lists tags selected by both whose reason differs.
    """
    return diff_selection(previous.selection() if previous is not None else {}, current)


def diff_selection(before: Selection, current: Plan) -> PlanDiff:
    """`diff_plans` against the selection of the previous plan (all a diff needs of it)."""
    return diff_selections(before, current.selection())


def diff_selections(before: Selection, after: Selection) -> PlanDiff:
    """`diff_plans` from the selections of both plans."""
    changed = tuple(
        (ref, before[ref][0], after[ref][0])
        for ref in sorted(before.keys() & after.keys())
        if before[ref] != after[ref]
    )
    return PlanDiff(
        newly_selected=tuple(sorted(after.keys() - before.keys())),
        no_longer_selected=tuple(sorted(before.keys() - after.keys())),
        changed_reason=changed,
    )
