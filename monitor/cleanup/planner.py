"""The cleanup planner: policies + what the store knows + coverage + now → a Plan. Pure.

Per repository, in this order: protections (attachments, pinned, deployed, grace period),
then keep rules (any one keeps), then delete rules (all conditions of one rule must hold).
Afterwards the floors: the minimum number of tags, any tag sharing a digest with a kept tag,
and children of kept indexes. A tag nobody selects is kept. "Not pulled for D days" holds only
when coverage spans the whole D days and the tag was first seen at least D days ago; when it
cannot be known the tag is `unknown` and kept.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from operator import attrgetter, itemgetter
from typing import NamedTuple

from monitor.cleanup.freed import Freed
from monitor.cleanup.model import Interval, ManifestInfo, RepositoryState, TagState
from monitor.cleanup.plan import Decision, DigestAction, Plan, Reason, TagDecision
from monitor.cleanup.policy import Policy
from monitor.cleanup.tag_rules import CompiledPolicy, RepositoryRules, tag_decision


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


_RECENCY = attrgetter("last_pushed_at", "tag")
_BY_TAG = itemgetter(1)


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
    policies: Sequence[CompiledPolicy],
    manifests: dict[str, ManifestInfo],
    now: datetime,
    since: datetime | None,
) -> tuple[list[TagDecision], list[DigestAction]]:
    if not policies:
        return [tag_decision(t, Decision.KEEP, Reason.NO_POLICY, None, "") for t in tags], []
    ctx = RepositoryRules(policies, since)
    ordered = sorted(tags, key=_RECENCY, reverse=True)
    decisions = [ctx.decide(state, rank) for rank, state in enumerate(ordered)]
    min_tags = max(p.min_tags for p in policies)
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
    # the digests from the states (a decision's digest is its state's, typed as optional)
    tag_kept = {
        state.digest
        for state, d in zip(ordered, decisions, strict=True)
        if d.decision is not Decision.DELETE
    }
    kept = _closure(tag_kept, manifests)
    for i, (state, d) in enumerate(zip(ordered, decisions, strict=True)):
        if d.decision is Decision.DELETE and state.digest in kept:
            reason = (
                Reason.SHARES_DIGEST if state.digest in tag_kept else Reason.CHILD_OF_KEPT_INDEX
            )
            decisions[i] = TagDecision(
                d.repository, d.tag, d.digest, Decision.PROTECTED, reason, d.policy, ""
            )
    by_digest: dict[str, list[TagDecision]] = defaultdict(list)
    for state, d in zip(ordered, decisions, strict=True):
        if d.decision is Decision.DELETE:
            by_digest[state.digest].append(d)
    actions = [
        DigestAction(
            repo,
            digest,
            (group[0].tag,) if len(group) == 1 else tuple(sorted(d.tag for d in group)),
            Reason.DELETE_RULE,
            group[0].policy or "",
            manifests[digest].media_type if digest in manifests else None,
        )
        for digest, group in sorted(by_digest.items())
    ]
    actions.extend(_untagged(repo, tags, [p.policy for p in policies], manifests, now))
    return decisions, actions


def _untagged(
    repo: str,
    tags: list[TagState],
    policies: Sequence[Policy],
    manifests: dict[str, ManifestInfo],
    now: datetime,
) -> list[DigestAction]:
    rules = [(p.name, r.older_than) for p in policies for r in p.delete if r.untagged]
    if not rules:
        return []
    tagged = {t.digest for t in tags}
    children = {c for m in manifests.values() for c in m.children}
    deployed = [p.deployed.digests for p in policies if p.deployed.digests]
    # pushed within the longest grace period is pushed within some policy's grace period
    grace_after = now - max(p.protect.grace for p in policies)
    out: list[DigestAction] = []
    for digest in sorted(manifests):
        info = manifests[digest]
        pushed = info.pushed_at
        if pushed is None or pushed > grace_after or digest in tagged or digest in children:
            continue
        if deployed and any((repo, digest) in digests for digests in deployed):
            continue
        age = now - pushed
        for name, older_than in rules:
            if older_than is None or age >= older_than:
                out.append(DigestAction(repo, digest, (), Reason.UNTAGGED, name, info.media_type))
                break
    return out


class RepositoryPlan(NamedTuple):
    """One repository's part of a plan: its decisions in tag order, and its actions."""

    name: str
    decisions: list[TagDecision]
    actions: list[DigestAction]


class Planner:
    """Plans repositories one at a time (`each`), so a caller can store each part as it comes
    and hold no more than one repository; what the plan frees is known once all have gone
    through (`bytes_freed`)."""

    def __init__(
        self,
        policies: Sequence[Policy],
        coverage: Iterable[Interval],
        now: datetime,
        *,
        gap_tolerance: timedelta = timedelta(0),
    ) -> None:
        self.now = now
        self.since = covered_since(coverage, now, gap_tolerance=gap_tolerance)
        self.compiled = [CompiledPolicy(p, now) for p in policies]
        self.freed = Freed()
        self.seen: set[str] = set()

    def each(self, repositories: Iterable[RepositoryState]) -> Iterator[RepositoryPlan]:
        """The plan of every repository in `repositories`, in their order; each repository
        must appear once (ValueError otherwise)."""
        for repository in repositories:
            yield self.one(repository)

    def one(self, repository: RepositoryState) -> RepositoryPlan:
        repo = repository.name
        if repo in self.seen:
            raise ValueError(f"repository {repo!r} given twice")
        self.seen.add(repo)
        chosen = [p for p in self.compiled if p.repositories(repo)]
        states = [t for t in repository.tags if t.deleted_at is None]
        repo_manifests = {m.digest: m for m in repository.manifests}
        decisions, actions = _plan_repo(repo, states, chosen, repo_manifests, self.now, self.since)
        decisions.sort(key=_BY_TAG)
        self.freed.add_repository(
            repo_manifests, {x.digest for x in actions}, {t.digest for t in states}
        )
        return RepositoryPlan(repo, decisions, actions)

    def bytes_freed(self) -> int:
        """What the repositories planned so far free, counted once across the registry."""
        return self.freed.total()


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block (restored after): planning makes no
    reference cycles, and with a million tags the collector's passes over the input would
    otherwise cost about a third of the time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def plan(
    policies: Sequence[Policy],
    tags: Iterable[TagState],
    manifests: Iterable[ManifestInfo],
    coverage: Iterable[Interval],
    now: datetime,
    *,
    gap_tolerance: timedelta = timedelta(0),
) -> Plan:
    """Decide every live tag and the digest deletions that follow; estimate bytes freed.

    Repositories are planned in name order, with the garbage collector paused (`gc_paused`).
    """
    with gc_paused():
        by_repo: dict[str, list[TagState]] = defaultdict(list)
        for state in tags:
            by_repo[state.repository].append(state)
        by_repo_manifests: dict[str, list[ManifestInfo]] = defaultdict(list)
        for info in manifests:
            by_repo_manifests[info.repository].append(info)
        names = sorted(by_repo.keys() | by_repo_manifests.keys())
        repositories = (
            RepositoryState(name, by_repo.pop(name, []), by_repo_manifests.pop(name, []))
            for name in names
        )
        return _plan(Planner(policies, coverage, now, gap_tolerance=gap_tolerance), repositories)


def plan_repositories(
    policies: Sequence[Policy],
    repositories: Iterable[RepositoryState],
    coverage: Iterable[Interval],
    now: datetime,
    *,
    gap_tolerance: timedelta = timedelta(0),
) -> Plan:
    """`plan` over repositories handed one at a time (a generator keeps only one in memory).

    Each repository must appear once; the plan keeps their order.
    """
    with gc_paused():
        return _plan(Planner(policies, coverage, now, gap_tolerance=gap_tolerance), repositories)


def _plan(planner: Planner, repositories: Iterable[RepositoryState]) -> Plan:
    decisions: list[TagDecision] = []
    actions: list[DigestAction] = []
    for part in planner.each(repositories):
        decisions.extend(part.decisions)
        actions.extend(part.actions)
    return Plan(planner.now, tuple(decisions), tuple(actions), planner.bytes_freed())
