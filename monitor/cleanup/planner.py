"""The cleanup planner: policies + what the store knows + coverage + now → a Plan. Pure.

Per repository, in this order: protections (attachments, pinned, deployed, grace period),
then keep rules (any one keeps), then delete rules (all conditions of one rule must hold).
Afterwards the floors: the minimum number of tags, any tag sharing a digest with a kept tag,
and children of kept indexes. A tag nobody selects is kept. "Not pulled for D days" holds only
when coverage spans the whole D days and the tag was first seen at least D days ago; when it
cannot be known the tag is `unknown` and kept.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from monitor.cleanup.model import Interval, ManifestInfo, TagState
from monitor.cleanup.plan import Decision, DigestAction, Plan, Reason, TagDecision
from monitor.cleanup.policy import DeleteRule, Policy, PullFilter, is_attachment


def covered_since(
    coverage: Iterable[Interval], now: datetime, *, gap_tolerance: timedelta = timedelta(0)
) -> datetime | None:
    """The earliest time from which coverage runs without a gap up to `now`; None if `now` isn't
    covered."""
    spans = sorted((start, min(end, now)) for start, end in coverage if start <= now)
    since: datetime | None = None
    for start, end in reversed(spans):
        if since is None:
            if end + gap_tolerance < now:
                return None
            since = start
        elif end + gap_tolerance >= since:
            since = min(since, start)
        else:
            break
    return since


def _days(value: timedelta) -> str:
    days = value.total_seconds() / 86400
    if days >= 1 and days == int(days):
        return f"{int(days)} days"
    return f"{value.total_seconds() / 3600:g} hours"


def _last_pull(state: TagState, pulls: PullFilter) -> datetime | None:
    times = [p.last_pulled_at for p in state.pulls if pulls.counts(p)]
    return max(times) if times else None


class _Repo:
    """Everything needed to decide one repository's tags."""

    def __init__(self, policies: Sequence[Policy], now: datetime, since: datetime | None) -> None:
        self.policies = policies
        self.now = now
        self.since = since

    def protect(self, state: TagState) -> TagDecision | None:
        if is_attachment(state.tag):
            return _decide(state, Decision.PROTECTED, Reason.ATTACHMENT, None, state.tag)
        for policy in self.policies:
            if policy.protect.tags(state.tag):
                pattern = policy.protect.tags.first_include(state.tag)
                return _decide(state, Decision.PROTECTED, Reason.PINNED, policy.name, pattern)
            if state in policy.deployed:
                return _decide(state, Decision.PROTECTED, Reason.DEPLOYED, policy.name, "ref")
            if self.now - state.last_pushed_at < policy.protect.grace:
                grace = _days(policy.protect.grace)
                return _decide(state, Decision.PROTECTED, Reason.GRACE_PERIOD, policy.name, grace)
        return None

    def keep(self, state: TagState, rank: int) -> TagDecision | None:
        for policy in self.policies:
            keep = policy.keep
            if keep.most_recent is not None and rank < keep.most_recent:
                detail = str(keep.most_recent)
                return _decide(state, Decision.KEEP, Reason.KEEP_MOST_RECENT, policy.name, detail)
            if keep.pushed_within is not None and (
                self.now - state.last_pushed_at <= keep.pushed_within
            ):
                detail = _days(keep.pushed_within)
                return _decide(state, Decision.KEEP, Reason.KEEP_PUSHED_WITHIN, policy.name, detail)
            if keep.pulled_within is not None:
                last = _last_pull(state, policy.pulls)
                if last is not None and self.now - last <= keep.pulled_within:
                    detail = _days(keep.pulled_within)
                    return _decide(
                        state, Decision.KEEP, Reason.KEEP_PULLED_WITHIN, policy.name, detail
                    )
            if keep.tags is not None and keep.tags(state.tag):
                pattern = keep.tags.first_include(state.tag)
                return _decide(state, Decision.KEEP, Reason.KEEP_TAG_PATTERN, policy.name, pattern)
        return None

    def select(self, state: TagState) -> TagDecision:
        unknown: TagDecision | None = None
        for policy in self.policies:
            for rule in policy.delete:
                if rule.untagged:
                    continue
                verdict = self._rule(state, policy, rule)
                if verdict is None:
                    continue
                if verdict.decision is Decision.DELETE:
                    return verdict
                unknown = unknown or verdict
        return unknown or _decide(state, Decision.KEEP, Reason.NO_DELETE_RULE, None, "")

    def _rule(self, state: TagState, policy: Policy, rule: DeleteRule) -> TagDecision | None:
        if rule.tags is not None and not rule.tags(state.tag):
            return None
        if rule.older_than is not None and self.now - state.last_pushed_at < rule.older_than:
            return None
        if rule.not_pulled_for is not None:
            horizon = self.now - rule.not_pulled_for
            last = _last_pull(state, policy.pulls)
            if last is not None and last > horizon:
                return None
            window = _days(rule.not_pulled_for)
            if self.since is None or self.since > horizon:
                return _decide(state, Decision.UNKNOWN, Reason.COVERAGE_GAP, policy.name, window)
            if state.first_seen_at > horizon:
                return _decide(
                    state, Decision.UNKNOWN, Reason.FIRST_SEEN_TOO_RECENT, policy.name, window
                )
        return _decide(state, Decision.DELETE, Reason.DELETE_RULE, policy.name, rule.name)


def _decide(
    state: TagState, decision: Decision, reason: Reason, policy: str | None, detail: str
) -> TagDecision:
    return TagDecision(state.repository, state.tag, state.digest, decision, reason, policy, detail)


def _closure(roots: Iterable[str], manifests: dict[str, ManifestInfo]) -> set[str]:
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        digest = stack.pop()
        if digest in seen:
            continue
        seen.add(digest)
        info = manifests.get(digest)
        if info is not None:
            stack.extend(info.children)
    return seen


def _plan_repo(
    repo: str,
    tags: list[TagState],
    policies: Sequence[Policy],
    manifests: dict[str, ManifestInfo],
    now: datetime,
    since: datetime | None,
) -> tuple[list[TagDecision], list[DigestAction]]:
    if not policies:
        return [_decide(t, Decision.KEEP, Reason.NO_POLICY, None, "") for t in tags], []
    ctx = _Repo(policies, now, since)
    ordered = sorted(tags, key=lambda t: (t.last_pushed_at, t.tag), reverse=True)
    decisions: list[TagDecision] = []
    for rank, state in enumerate(ordered):
        decision = ctx.protect(state) or ctx.keep(state, rank) or ctx.select(state)
        decisions.append(decision)
    min_tags = max(p.protect.min_tags for p in policies)
    deleting = [i for i, d in enumerate(decisions) if d.decision is Decision.DELETE]
    missing = min_tags - (len(decisions) - len(deleting))
    for i in deleting[: max(missing, 0)]:  # the most recently pushed candidates
        d = decisions[i]
        decisions[i] = TagDecision(
            d.repository,
            d.tag,
            d.digest,
            Decision.PROTECTED,
            Reason.MIN_TAGS,
            d.policy,
            str(min_tags),
        )
    tag_kept = {d.digest for d in decisions if d.decision is not Decision.DELETE}
    kept = _closure(tag_kept, manifests)
    for i, d in enumerate(decisions):
        if d.decision is Decision.DELETE and d.digest in kept:
            reason = Reason.SHARES_DIGEST if d.digest in tag_kept else Reason.CHILD_OF_KEPT_INDEX
            decisions[i] = TagDecision(
                d.repository, d.tag, d.digest, Decision.PROTECTED, reason, d.policy, ""
            )
    by_digest: dict[str, list[TagDecision]] = defaultdict(list)
    for d in decisions:
        if d.decision is Decision.DELETE:
            by_digest[d.digest].append(d)
    actions = [
        DigestAction(
            repo,
            digest,
            tuple(sorted(d.tag for d in group)),
            Reason.DELETE_RULE,
            group[0].policy or "",
            manifests[digest].media_type if digest in manifests else None,
        )
        for digest, group in sorted(by_digest.items())
    ]
    actions.extend(_untagged(repo, tags, policies, manifests, now))
    return decisions, actions


def _untagged(
    repo: str,
    tags: list[TagState],
    policies: Sequence[Policy],
    manifests: dict[str, ManifestInfo],
    now: datetime,
) -> list[DigestAction]:
    rules = [(p, r) for p in policies for r in p.delete if r.untagged]
    if not rules:
        return []
    tagged = {t.digest for t in tags}
    children = {c for m in manifests.values() for c in m.children}
    out: list[DigestAction] = []
    for digest, info in sorted(manifests.items()):
        if digest in tagged or digest in children or info.pushed_at is None:
            continue
        if any((repo, digest) in p.deployed.digests for p in policies):
            continue
        if any(now - info.pushed_at < p.protect.grace for p in policies):
            continue
        for policy, rule in rules:
            if rule.older_than is None or now - info.pushed_at >= rule.older_than:
                out.append(
                    DigestAction(repo, digest, (), Reason.UNTAGGED, policy.name, info.media_type)
                )
                break
    return out


def _bytes_freed(
    manifests: Sequence[ManifestInfo],
    deleted: set[tuple[str, str]],
    live_tagged: set[tuple[str, str]],
) -> int:
    index: dict[tuple[str, str], ManifestInfo] = {(m.repository, m.digest): m for m in manifests}
    has_parent: set[tuple[str, str]] = set()
    for m in manifests:
        has_parent.update((m.repository, c) for c in m.children)
    roots = [
        key for key in index if key not in deleted and (key in live_tagged or key not in has_parent)
    ]
    kept: set[tuple[str, str]] = set()
    stack = roots
    while stack:
        key = stack.pop()
        if key in kept or key in deleted:
            continue
        kept.add(key)
        info = index.get(key)
        if info is not None:
            stack.extend((key[0], c) for c in info.children)
    kept_blobs: set[str] = set()
    for key in kept:
        kept_blobs.add(key[1])
        kept_blobs.update(b.digest for b in index[key].blobs)
    freed: dict[str, int] = {}
    for key, info in index.items():
        if key in kept:
            continue
        for digest, size in ((info.digest, info.size), *((b.digest, b.size) for b in info.blobs)):
            if digest not in kept_blobs:
                freed[digest] = size
    return sum(freed.values())


def plan(
    policies: Sequence[Policy],
    tags: Iterable[TagState],
    manifests: Iterable[ManifestInfo],
    coverage: Iterable[Interval],
    now: datetime,
    *,
    gap_tolerance: timedelta = timedelta(0),
) -> Plan:
    """Decide every live tag and the digest deletions that follow; estimate bytes freed."""
    by_repo: dict[str, list[TagState]] = defaultdict(list)
    for state in tags:
        if state.deleted_at is None:
            by_repo[state.repository].append(state)
    manifest_list = list(manifests)
    by_repo_manifests: dict[str, dict[str, ManifestInfo]] = defaultdict(dict)
    for info in manifest_list:
        by_repo_manifests[info.repository][info.digest] = info
    since = covered_since(coverage, now, gap_tolerance=gap_tolerance)
    decisions: list[TagDecision] = []
    actions: list[DigestAction] = []
    for repo in sorted(by_repo.keys() | by_repo_manifests.keys()):
        chosen = [p for p in policies if p.repositories(repo)]
        d, a = _plan_repo(
            repo, by_repo.get(repo, []), chosen, by_repo_manifests.get(repo, {}), now, since
        )
        decisions.extend(sorted(d, key=lambda x: x.tag))
        actions.extend(a)
    deleted = {(a.repository, a.digest) for a in actions}
    live_tagged = {(r, t.digest) for r, states in by_repo.items() for t in states}
    freed = _bytes_freed(manifest_list, deleted, live_tagged)
    return Plan(now, tuple(decisions), tuple(actions), freed)
