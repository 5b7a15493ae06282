"""Properties of the planner over random registries, pull histories and policies."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.cleanup.model import ManifestInfo, PullRecord, TagState
from monitor.cleanup.plan import Decision, Plan
from monitor.cleanup.planner import plan
from monitor.cleanup.policy import Policy, load_policies
from monitor.events import Client
from tests.cleanup.factories import NOW, digest_of, make_manifest

REPOS = ["team/app", "team/web", "lib/base"]
TAG_NAMES = ["latest", "main", "v1", "v2", "pr-1", "pr-2", "pr-3", "rc-1", "sha256-" + "a" * 64]
DIGESTS = [digest_of(f"d{i}") for i in range(6)]
INDEX = digest_of("index")

pull_records = st.lists(
    st.builds(
        PullRecord,
        http_method=st.sampled_from(["GET", "HEAD", "get", "Head"]),
        client=st.sampled_from(list(Client)),
        last_pulled_at=st.integers(0, 300).map(lambda d: NOW - timedelta(days=d)),
    ),
    max_size=3,
)


@st.composite
def registries(draw: st.DrawFn) -> tuple[list[TagState], list[ManifestInfo]]:
    tags: list[TagState] = []
    manifests: list[ManifestInfo] = []
    for repo in draw(st.lists(st.sampled_from(REPOS), min_size=1, max_size=3, unique=True)):
        manifests.extend(make_manifest(d, repository=repo, blobs=((d + "l", 10),)) for d in DIGESTS)
        manifests.append(make_manifest(INDEX, repository=repo, children=tuple(DIGESTS[:2])))
        for name in draw(st.lists(st.sampled_from(TAG_NAMES), max_size=8, unique=True)):
            pushed = draw(st.integers(0, 300))
            tags.append(
                TagState(
                    repository=repo,
                    tag=name,
                    digest=draw(st.sampled_from([*DIGESTS, INDEX])),
                    first_seen_at=NOW - timedelta(days=pushed + draw(st.integers(0, 50))),
                    last_pushed_at=NOW - timedelta(days=pushed),
                    pulls=tuple(draw(pull_records)),
                )
            )
    return tags, manifests


def delete_rule(*, pull_based: bool) -> st.SearchStrategy[dict[str, Any]]:
    days = st.integers(1, 200)
    return st.fixed_dictionaries(
        {"not_pulled_days": days} if pull_based else {},
        optional={
            "tags": st.lists(st.sampled_from(["pr-*", "rc-*", "*", "v*"]), min_size=1, max_size=2),
            "older_than_days": st.integers(0, 200),
            **({} if pull_based else {"not_pulled_days": days}),
        },
    ).filter(lambda r: len(r) > 0)


def policies(*, pull_based: bool = False) -> st.SearchStrategy[tuple[Policy, ...]]:
    policy = st.fixed_dictionaries(
        {
            "repositories": st.sampled_from([["**"], ["team/*"], ["lib/**", "team/app"]]),
            "protect": st.fixed_dictionaries(
                {},
                optional={
                    "tags": st.lists(st.sampled_from(["latest", "v*", "main"]), max_size=2),
                    "grace_hours": st.integers(0, 100),
                    "min_tags": st.integers(0, 3),
                },
            ),
            "keep": st.fixed_dictionaries(
                {},
                optional={
                    "most_recent": st.integers(1, 3),
                    "pulled_within_days": st.integers(1, 60),
                    "pushed_within_days": st.integers(1, 60),
                    "tags": st.lists(st.sampled_from(["v*", "main"]), min_size=1, max_size=2),
                },
            ),
            "delete": st.lists(delete_rule(pull_based=pull_based), min_size=1, max_size=3),
        }
    )

    def build(items: list[dict[str, Any]]) -> tuple[Policy, ...]:
        named = [{"name": f"p{i}", **item} for i, item in enumerate(items)]
        return load_policies(yaml.safe_dump(named))

    return st.lists(policy, min_size=1, max_size=2).map(build)


def kept_digests(result: Plan, manifests: list[ManifestInfo]) -> set[tuple[str, str]]:
    children = {(m.repository, m.digest): m.children for m in manifests}
    kept = {
        (d.repository, d.digest)
        for d in result.decisions
        if d.decision is not Decision.DELETE and d.digest is not None
    }
    stack = list(kept)
    while stack:
        repo, digest = stack.pop()
        for child in children.get((repo, digest), ()):
            if (repo, child) not in kept:
                kept.add((repo, child))
                stack.append((repo, child))
    return kept


FULL = ((NOW - timedelta(days=1000), NOW),)


class TestPlannerProperties:
    @settings(max_examples=300, deadline=None)
    @given(registry=registries(), chosen=policies())
    def test_kept_digests_are_never_deleted(self, registry, chosen) -> None:
        """No digest holding a kept, protected or unknown tag, or under a kept index, is deleted."""
        tags, manifests = registry
        result = plan(chosen, tags, manifests, FULL, NOW)
        deleted = {(a.repository, a.digest) for a in result.actions}
        expected: set[tuple[str, str]] = set()
        assert expected == deleted & kept_digests(result, manifests)

    @settings(max_examples=200, deadline=None)
    @given(registry=registries(), chosen=policies())
    def test_actions_carry_every_live_tag(self, registry, chosen) -> None:
        """Each digest action lists exactly the live tags on that digest."""
        tags, manifests = registry
        result = plan(chosen, tags, manifests, FULL, NOW)
        for action in result.actions:
            on_digest = sorted(
                t.tag
                for t in tags
                if (t.repository, t.digest) == (action.repository, action.digest)
            )
            assert on_digest == list(action.tags)

    @settings(max_examples=300, deadline=None)
    @given(
        registry=registries(),
        chosen=policies(pull_based=True),
        gap_hours=st.integers(1, 23),
        start_days=st.integers(0, 2000),
    )
    def test_coverage_gap_blocks_pull_based_deletion(
        self, registry, chosen, gap_hours: int, start_days: int
    ) -> None:
        """With a gap in the last day of coverage, no rule that needs pull history deletes."""
        tags, manifests = registry
        gap_end = NOW - timedelta(hours=gap_hours - 0.5)
        coverage = [
            (NOW - timedelta(days=start_days + 1), gap_end - timedelta(hours=1)),
            (gap_end, NOW),
        ]
        result = plan(chosen, tags, manifests, coverage, NOW)
        selected = [d for d in result.decisions if d.decision is Decision.DELETE]
        expected: list[object] = []
        assert expected == selected
        assert expected == [a for a in result.actions if a.tags]

    @settings(max_examples=100, deadline=None)
    @given(registry=registries(), chosen=policies(), seed=st.randoms())
    def test_plan_is_deterministic_and_round_trips(self, registry, chosen, seed) -> None:
        """Input order does not change the plan, and to_dict/from_dict gives it back."""
        tags, manifests = registry
        shuffled = list(tags)
        seed.shuffle(shuffled)
        first = plan(chosen, tags, manifests, FULL, NOW)
        second = plan(chosen, shuffled, manifests, FULL, NOW)
        assert first == second
        assert first == Plan.from_dict(first.to_dict())
