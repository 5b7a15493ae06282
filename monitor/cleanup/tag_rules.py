"""One tag's decision under the policies that choose its repository, compiled for `now`: the
protections, keep rules and delete rules of the planner (monitor/cleanup/planner.py) in their
order. Pure; made a million times a plan, so written for speed (see `RepositoryRules.decide`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from monitor.cleanup.model import TagState
from monitor.cleanup.plan import Decision, Reason, TagDecision
from monitor.cleanup.policy import Policy, is_attachment


def _days(value: timedelta) -> str:
    days = value.total_seconds() / 86400
    if days >= 1 and days == int(days):
        return f"{int(days)} days"
    return f"{value.total_seconds() / 3600:g} hours"


class CompiledPolicy:
    """One policy with its cut-off times computed for `now`."""

    def __init__(self, policy: Policy, now: datetime) -> None:
        protect, keep = policy.protect, policy.keep
        self.policy = policy
        self.name = policy.name
        self.repositories = policy.repositories
        self.min_tags = protect.min_tags
        self.pinned = protect.tags if protect.tags.patterns else None
        deployed = policy.deployed
        self.deployed = deployed if deployed.tags or deployed.digests else None
        self.grace_after = now - protect.grace
        self.grace_text = _days(protect.grace)
        self.most_recent = keep.most_recent
        self.most_recent_text = str(keep.most_recent)
        self.pushed_after = None if keep.pushed_within is None else now - keep.pushed_within
        self.pushed_text = "" if keep.pushed_within is None else _days(keep.pushed_within)
        self.pulled_after = None if keep.pulled_within is None else now - keep.pulled_within
        self.pulled_text = "" if keep.pulled_within is None else _days(keep.pulled_within)
        self.keep_tags = keep.tags
        self.rules = tuple(
            (
                rule,
                None if rule.older_than is None else now - rule.older_than,
                None if rule.not_pulled_for is None else now - rule.not_pulled_for,
                "" if rule.not_pulled_for is None else _days(rule.not_pulled_for),
            )
            for rule in policy.delete
            if not rule.untagged
        )
        self.pulls = policy.pulls

    def last_pull(self, state: TagState) -> datetime | None:
        last: datetime | None = None
        methods, ignore = self.pulls.methods, self.pulls.ignore_clients
        for method, client, at in state.pulls:
            # an upper-case method (as stored) is looked up as it is, saving `upper`
            if (
                (method in methods or method.upper() in methods)
                and client not in ignore
                and (last is None or at > last)
            ):
                last = at
        return last


_UNSET: Any = object()
_new = tuple.__new__
"""Makes a `TagDecision` from a tuple of all its fields, without its generated `__new__` (a
Python function, called a million times a plan)."""
_PROTECTED, _KEEP, _DELETE, _UNKNOWN = (
    Decision.PROTECTED,
    Decision.KEEP,
    Decision.DELETE,
    Decision.UNKNOWN,
)
_ATTACHMENT, _PINNED, _DEPLOYED, _GRACE = (
    Reason.ATTACHMENT,
    Reason.PINNED,
    Reason.DEPLOYED,
    Reason.GRACE_PERIOD,
)
_MOST_RECENT, _PUSHED_WITHIN, _PULLED_WITHIN, _TAG_PATTERN = (
    Reason.KEEP_MOST_RECENT,
    Reason.KEEP_PUSHED_WITHIN,
    Reason.KEEP_PULLED_WITHIN,
    Reason.KEEP_TAG_PATTERN,
)
_DELETE_RULE, _NO_DELETE_RULE = Reason.DELETE_RULE, Reason.NO_DELETE_RULE


class RepositoryRules:
    """Everything needed to decide one repository's tags."""

    def __init__(self, policies: Sequence[CompiledPolicy], since: datetime | None) -> None:
        self.policies = policies
        self.since = since

    def decide(self, state: TagState, rank: int) -> TagDecision:
        # Made a million times a plan: the state unpacked once, decisions made as tuples.
        repository, tag, digest, first_seen, pushed, _media, _deleted, _pulls = state
        if tag.startswith("sha256-") and is_attachment(tag):
            return _new(TagDecision, (repository, tag, digest, _PROTECTED, _ATTACHMENT, None, tag))
        for p in self.policies:
            if p.pinned is not None and p.pinned(tag):
                pattern = p.pinned.first_include(tag)
                return _new(
                    TagDecision, (repository, tag, digest, _PROTECTED, _PINNED, p.name, pattern)
                )
            if p.deployed is not None and state in p.deployed:
                return _new(
                    TagDecision, (repository, tag, digest, _PROTECTED, _DEPLOYED, p.name, "ref")
                )
            if pushed > p.grace_after:
                return _new(
                    TagDecision,
                    (repository, tag, digest, _PROTECTED, _GRACE, p.name, p.grace_text),
                )
        pulls: list[Any] = [_UNSET] * len(self.policies)
        for i, p in enumerate(self.policies):
            if p.most_recent is not None and rank < p.most_recent:
                return _new(
                    TagDecision,
                    (repository, tag, digest, _KEEP, _MOST_RECENT, p.name, p.most_recent_text),
                )
            if p.pushed_after is not None and pushed >= p.pushed_after:
                return _new(
                    TagDecision,
                    (repository, tag, digest, _KEEP, _PUSHED_WITHIN, p.name, p.pushed_text),
                )
            if p.pulled_after is not None:
                last = pulls[i] = p.last_pull(state)
                if last is not None and last >= p.pulled_after:
                    return _new(
                        TagDecision,
                        (repository, tag, digest, _KEEP, _PULLED_WITHIN, p.name, p.pulled_text),
                    )
            if p.keep_tags is not None and p.keep_tags(tag):
                pattern = p.keep_tags.first_include(tag)
                return _new(
                    TagDecision, (repository, tag, digest, _KEEP, _TAG_PATTERN, p.name, pattern)
                )
        unknown: TagDecision | None = None
        for i, p in enumerate(self.policies):
            for rule, older_cutoff, horizon, window in p.rules:
                if rule.tags is not None and not rule.tags(tag):
                    continue
                if older_cutoff is not None and pushed > older_cutoff:
                    continue
                if horizon is not None:
                    last = pulls[i]
                    if last is _UNSET:
                        last = pulls[i] = p.last_pull(state)
                    if last is not None and last > horizon:
                        continue
                    if self.since is None or self.since > horizon:
                        reason = Reason.COVERAGE_GAP
                    elif first_seen > horizon:
                        reason = Reason.FIRST_SEEN_TOO_RECENT
                    else:
                        reason = None
                    if reason is not None:
                        if unknown is None:
                            unknown = _new(
                                TagDecision,
                                (repository, tag, digest, _UNKNOWN, reason, p.name, window),
                            )
                        continue
                return _new(
                    TagDecision, (repository, tag, digest, _DELETE, _DELETE_RULE, p.name, rule.name)
                )
        return unknown or _new(
            TagDecision, (repository, tag, digest, _KEEP, _NO_DELETE_RULE, None, "")
        )


def tag_decision(
    state: TagState, decision: Decision, reason: Reason, policy: str | None, detail: str
) -> TagDecision:
    return TagDecision(state.repository, state.tag, state.digest, decision, reason, policy, detail)
