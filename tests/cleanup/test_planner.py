from __future__ import annotations

import random
from datetime import timedelta

import pytest

from monitor.cleanup.model import DeployedSet, RepositoryState, TagRef, TagState
from monitor.cleanup.plan import Decision, Reason
from monitor.cleanup.planner import covered_since, plan, plan_repositories
from monitor.events import Client
from tests.cleanup.factories import (
    FULL_COVERAGE,
    NOW,
    days_ago,
    digest_of,
    make_manifest,
    make_tag,
    one_policy,
)
from tests.cleanup.fixture_state import fixture_state

DELETE_ALL = "  delete: [{name: all, older_than_days: 0}]\n"
H = "sha256:62fe1501080ca69f6d148785d0cbf8f360beacebbdf35f38400cee06ce1858f0"
MULTI = "sha256:d11c01857587d6bd4e0625744027637fb5b85e04c0a8e53c7f12e51d7d459f8d"


def decide(policies, tags: list[TagState], coverage=FULL_COVERAGE, manifests=()):
    result = plan(policies, tags, manifests, coverage, NOW)
    return {d.tag: (d.decision, d.reason) for d in result.decisions}


class TestProtections:
    @pytest.mark.parametrize(
        ("protect", "tag", "expected"),
        [
            ("{tags: ['v*'], grace_hours: 0, min_tags: 0}", make_tag("v1"), Reason.PINNED),
            (
                "{tags: [], grace_hours: 48, min_tags: 0}",
                make_tag("x", pushed_days_ago=1),
                Reason.GRACE_PERIOD,
            ),
            ("{tags: [], grace_hours: 0, min_tags: 1}", make_tag("x"), Reason.MIN_TAGS),
            (
                "{tags: [], grace_hours: 0, min_tags: 0}",
                make_tag("sha256-" + "0" * 64 + ".sig"),
                Reason.ATTACHMENT,
            ),
        ],
    )
    def test_each_protection(self, protect: str, tag: TagState, expected: Reason) -> None:
        """A tag a delete-everything policy would remove is protected by each protection."""
        policies = one_policy(DELETE_ALL, protect=protect)
        assert {tag.tag: (Decision.PROTECTED, expected)} == decide(policies, [tag])

    @pytest.mark.parametrize(
        "deployed",
        [
            DeployedSet(tags=frozenset({TagRef("team/app", "x")})),
            DeployedSet(digests=frozenset({("team/app", digest_of("team/app:x"))})),
        ],
    )
    def test_deployed_by_tag_or_digest(self, deployed: DeployedSet) -> None:
        """A tag named in the deployed set, by tag or by digest, is protected."""
        policies = one_policy(DELETE_ALL, deployed=deployed)
        expected = {"x": (Decision.PROTECTED, Reason.DEPLOYED)}
        assert expected == decide(policies, [make_tag("x")])

    def test_shares_digest_with_kept_tag(self) -> None:
        """A selected tag on the same digest as a kept tag is protected (2.8 deletes both)."""
        policies = one_policy("  delete: [{tags: ['pr-*']}]\n")
        same = digest_of("shared")
        tags = [make_tag("pr-1", digest=same), make_tag("main", digest=same)]
        expected = {
            "pr-1": (Decision.PROTECTED, Reason.SHARES_DIGEST),
            "main": (Decision.KEEP, Reason.NO_DELETE_RULE),
        }
        assert expected == decide(policies, tags)

    def test_child_of_kept_index(self) -> None:
        """A selected tag whose manifest is a child of a kept index is protected."""
        child = digest_of("child")
        index = digest_of("index")
        manifests = [make_manifest(child), make_manifest(index, children=(child,))]
        tags = [make_tag("amd64-only", digest=child), make_tag("multi", digest=index)]
        policies = one_policy("  delete: [{tags: ['amd64-*']}]\n")
        expected = {
            "amd64-only": (Decision.PROTECTED, Reason.CHILD_OF_KEPT_INDEX),
            "multi": (Decision.KEEP, Reason.NO_DELETE_RULE),
        }
        assert expected == decide(policies, tags, manifests=manifests)

    def test_min_tags_rescues_most_recent(self) -> None:
        """The floor keeps the most recently pushed of the selected tags."""
        policies = one_policy(DELETE_ALL, protect="{tags: [], grace_hours: 0, min_tags: 2}")
        tags = [make_tag(f"t{i}", pushed_days_ago=10 + i) for i in range(4)]
        expected = {
            "t0": (Decision.PROTECTED, Reason.MIN_TAGS),
            "t1": (Decision.PROTECTED, Reason.MIN_TAGS),
            "t2": (Decision.DELETE, Reason.DELETE_RULE),
            "t3": (Decision.DELETE, Reason.DELETE_RULE),
        }
        assert expected == decide(policies, tags)

    def test_protection_beats_keep_rule(self) -> None:
        """Protections are decided before keep rules."""
        policies = one_policy(
            "  keep: {tags: ['v*']}\n", protect="{tags: ['v*'], grace_hours: 0, min_tags: 0}"
        )
        expected = {"v1": (Decision.PROTECTED, Reason.PINNED)}
        assert expected == decide(policies, [make_tag("v1")])


class TestKeepRules:
    @pytest.mark.parametrize(
        ("keep", "tag", "expected"),
        [
            ("{most_recent: 1}", make_tag("new", pushed_days_ago=10), Reason.KEEP_MOST_RECENT),
            (
                "{pushed_within_days: 20}",
                make_tag("x", pushed_days_ago=10),
                Reason.KEEP_PUSHED_WITHIN,
            ),
            (
                "{pulled_within_days: 5}",
                make_tag("x", pulls=(("GET", Client.DOCKER, 2),)),
                Reason.KEEP_PULLED_WITHIN,
            ),
            (
                "{pulled_within_days: 5}",
                make_tag("x", pulls=(("HEAD", Client.CONTAINERD, 2),)),
                Reason.KEEP_PULLED_WITHIN,
            ),
            (  # a method as a log may spell it
                "{pulled_within_days: 5}",
                make_tag("x", pulls=(("get", Client.DOCKER, 2),)),
                Reason.KEEP_PULLED_WITHIN,
            ),
            ("{tags: ['release-*']}", make_tag("release-1"), Reason.KEEP_TAG_PATTERN),
        ],
    )
    def test_each_keep_rule(self, keep: str, tag: TagState, expected: Reason) -> None:
        """Each keep rule alone keeps a tag that a delete-everything rule selects."""
        policies = one_policy(f"  keep: {keep}\n" + DELETE_ALL)
        old = make_tag("old", pushed_days_ago=300)
        decided = decide(policies, [tag, old])
        assert (Decision.KEEP, expected) == decided[tag.tag]
        expected_old = (Decision.DELETE, Reason.DELETE_RULE)
        assert expected_old == decided["old"]

    @pytest.mark.parametrize("client", [Client.SCANNER, Client.MONITOR])
    def test_scanner_and_monitor_pulls_do_not_keep(self, client: Client) -> None:
        """Pulls by scanners or by the monitor itself are not use."""
        policies = one_policy("  keep: {pulled_within_days: 5}\n" + DELETE_ALL)
        tag = make_tag("x", pulls=(("GET", client, 1),))
        expected = {"x": (Decision.DELETE, Reason.DELETE_RULE)}
        assert expected == decide(policies, [tag])

    def test_most_recent_ties_break_by_name(self) -> None:
        """Tags pushed at the same instant rank deterministically by name (highest first)."""
        policies = one_policy("  keep: {most_recent: 1}\n" + DELETE_ALL)
        tags = [make_tag("a", pushed_days_ago=5), make_tag("b", pushed_days_ago=5)]
        expected = {
            "a": (Decision.DELETE, Reason.DELETE_RULE),
            "b": (Decision.KEEP, Reason.KEEP_MOST_RECENT),
        }
        assert expected == decide(policies, tags)


class TestDeleteRules:
    @pytest.mark.parametrize(
        ("rule", "tag", "expected"),
        [
            ("{tags: ['pr-*']}", make_tag("pr-1"), (Decision.DELETE, Reason.DELETE_RULE)),
            ("{tags: ['pr-*']}", make_tag("main"), (Decision.KEEP, Reason.NO_DELETE_RULE)),
            (
                "{older_than_days: 30}",
                make_tag("x", pushed_days_ago=31),
                (Decision.DELETE, Reason.DELETE_RULE),
            ),
            (
                "{older_than_days: 30}",
                make_tag("x", pushed_days_ago=29),
                (Decision.KEEP, Reason.NO_DELETE_RULE),
            ),
            (
                "{not_pulled_days: 30}",
                make_tag("x", pulls=(("GET", Client.DOCKER, 31),)),
                (Decision.DELETE, Reason.DELETE_RULE),
            ),
            ("{not_pulled_days: 30}", make_tag("x"), (Decision.DELETE, Reason.DELETE_RULE)),
            (
                "{not_pulled_days: 30}",
                make_tag("x", pulls=(("HEAD", Client.KUBELET, 29),)),
                (Decision.KEEP, Reason.NO_DELETE_RULE),
            ),
            (
                "{not_pulled_days: 30}",
                make_tag("x", pulls=(("GET", Client.SCANNER, 1),)),
                (Decision.DELETE, Reason.DELETE_RULE),
            ),
            (
                "{not_pulled_days: 30}",
                make_tag("x", pushed_days_ago=5, first_seen_days_ago=20),
                (Decision.UNKNOWN, Reason.FIRST_SEEN_TOO_RECENT),
            ),
            (
                "{tags: ['pr-*'], older_than_days: 30}",
                make_tag("pr-1", pushed_days_ago=3),
                (Decision.KEEP, Reason.NO_DELETE_RULE),
            ),
            (
                "{tags: ['pr-*'], older_than_days: 30}",
                make_tag("main", pushed_days_ago=300),
                (Decision.KEEP, Reason.NO_DELETE_RULE),
            ),
        ],
    )
    def test_conditions_are_anded(self, rule: str, tag: TagState, expected: object) -> None:
        """A delete rule selects a tag only when every one of its conditions holds."""
        policies = one_policy(f"  delete: [{rule}]\n")
        assert {tag.tag: expected} == decide(policies, [tag])

    @pytest.mark.parametrize(
        "coverage",
        [
            (),
            ((days_ago(20), NOW),),
            ((days_ago(60), days_ago(10)), (days_ago(9), NOW)),
            ((days_ago(60), days_ago(1)),),
        ],
    )
    def test_not_pulled_needs_unbroken_coverage(self, coverage: object) -> None:
        """Without coverage over the whole window the decision is unknown, and kept."""
        policies = one_policy("  delete: [{not_pulled_days: 30}]\n")
        expected = {"x": (Decision.UNKNOWN, Reason.COVERAGE_GAP)}
        assert expected == decide(policies, [make_tag("x")], coverage=coverage)

    def test_rules_are_ored(self) -> None:
        """A tag matching any one delete rule is selected even if another is unknown."""
        policies = one_policy("  delete: [{not_pulled_days: 30}, {tags: ['x']}]\n")
        expected = {"x": (Decision.DELETE, Reason.DELETE_RULE)}
        assert expected == decide(policies, [make_tag("x")], coverage=())

    def test_no_policy_keeps(self) -> None:
        """A repository no policy selects keeps every tag."""
        policies = one_policy(DELETE_ALL)
        policies = (
            policies[0].__class__(name="p", repositories=policies[0].repositories.of(["other/*"])),
        )
        expected = {"x": (Decision.KEEP, Reason.NO_POLICY)}
        assert expected == decide(policies, [make_tag("x")])

    def test_deleted_tags_are_ignored(self) -> None:
        """Tags the store marks deleted get no decision."""
        tag = make_tag("x")._replace(deleted_at=days_ago(1))
        expected: dict[str, object] = {}
        assert expected == decide(one_policy(DELETE_ALL), [tag])


class TestActions:
    def test_one_action_per_digest(self) -> None:
        """Two selected tags on one digest become one delete carrying both tags."""
        same = digest_of("same")
        tags = [make_tag("a", digest=same), make_tag("b", digest=same), make_tag("c")]
        result = plan(one_policy(DELETE_ALL), tags, [], FULL_COVERAGE, NOW)
        assert [(same, ("a", "b")), (digest_of("team/app:c"), ("c",))] == sorted(
            (a.digest, a.tags) for a in result.actions
        )

    def test_untagged_manifests(self) -> None:
        """An untagged rule deletes old untagged manifests, never index children or young ones."""
        child, index, loose, young = (digest_of(n) for n in ("child", "index", "loose", "young"))
        manifests = [
            make_manifest(child),
            make_manifest(index, children=(child,)),
            make_manifest(loose, pushed_days_ago=30),
            make_manifest(young, pushed_days_ago=1),
        ]
        tags = [make_tag("multi", digest=index)]
        result = plan(
            one_policy("  delete: [{untagged: true, older_than_days: 7}]\n"),
            tags,
            manifests,
            FULL_COVERAGE,
            NOW,
        )
        assert [(loose, (), Reason.UNTAGGED)] == [
            (a.digest, a.tags, a.reason) for a in result.actions
        ]


class TestBytesFreed:
    def test_shared_layers_are_not_counted(self) -> None:
        """Only blobs no kept manifest references count, each once."""
        a, b = digest_of("a"), digest_of("b")
        manifests = [
            make_manifest(a, blobs=(("base", 1000), ("cfg-a", 10)), size=100),
            make_manifest(b, blobs=(("base", 1000), ("cfg-b", 20)), size=200),
        ]
        tags = [make_tag("a", digest=a), make_tag("b", digest=b)]
        result = plan(one_policy("  delete: [{tags: [a]}]\n"), tags, manifests, FULL_COVERAGE, NOW)
        expected = 110
        assert expected == result.bytes_freed


class TestRealFixture:
    """The tags and manifests the scenario-1 notifications describe."""

    @pytest.mark.parametrize(
        ("rule", "expected_actions", "expected_bytes"),
        [
            # hello:1.0 shares its digest with :latest; mirror/hello holds the same blobs;
            # the index frees itself, two 476-byte children and their four blobs (908 B).
            ("{tags: ['1.0']}", [("mirror/hello", H, ("1.0",))], 0),
            ("{tags: ['multi']}", [("team/app", MULTI, ("multi",))], 645 + 2 * 476 + 908),
            (
                "{tags: ['1.0', 'latest']}",
                [("library/hello", H, ("1.0", "latest")), ("mirror/hello", H, ("1.0",))],
                476 + 138 + 319,
            ),
        ],
    )
    def test_actions_and_bytes(
        self, rule: str, expected_actions: object, expected_bytes: int
    ) -> None:
        """Digest actions and freed bytes for the real registry content."""
        tags, manifests = fixture_state()
        now = max(t.last_pushed_at for t in tags) + timedelta(days=1)
        coverage = ((now - timedelta(days=9), now),)
        result = plan(one_policy(f"  delete: [{rule}]\n"), tags, manifests, coverage, now)
        actual = ([(a.repository, a.digest, a.tags) for a in result.actions], result.bytes_freed)
        assert (expected_actions, expected_bytes) == actual

    def test_recent_real_pulls_keep(self) -> None:
        """Tags pulled in the scenario are kept by a pulled-within rule at the scenario's time."""
        tags, manifests = fixture_state()
        now = max(t.last_pushed_at for t in tags) + timedelta(days=1)
        policies = one_policy("  keep: {pulled_within_days: 2}\n" + DELETE_ALL)
        result = plan(policies, tags, manifests, ((now - timedelta(days=9), now),), now)
        kept = {str(d.ref) for d in result.decisions if d.decision is Decision.KEEP}
        assert {"library/hello:1.0", "team/app:v1", "team/app:multi"} == kept


class TestCoveredSince:
    @pytest.mark.parametrize(
        ("coverage", "expected"),
        [
            ((), None),
            (((days_ago(5), NOW),), days_ago(5)),
            (((days_ago(5), days_ago(1)),), None),
            (((days_ago(9), days_ago(4)), (days_ago(5), NOW)), days_ago(9)),
            (((days_ago(9), days_ago(6)), (days_ago(5), NOW)), days_ago(5)),
            (((days_ago(5), NOW + timedelta(days=1)),), days_ago(5)),
        ],
    )
    def test_unbroken_span(self, coverage: object, expected: object) -> None:
        """The start of the unbroken coverage that reaches now."""
        assert expected == covered_since(coverage, NOW)  # type: ignore[arg-type]


class TestPlanRepositories:
    def test_same_plan_as_flat_input(self) -> None:
        """Planning repository by repository gives the plan the flat lists give."""
        tags, manifests = fixture_state()
        now = max(t.last_pushed_at for t in tags) + timedelta(days=1)
        coverage = ((now - timedelta(days=9), now),)
        policies = one_policy("  delete: [{tags: ['1.0', 'multi']}]\n")
        names = sorted({t.repository for t in tags})
        repositories = [
            RepositoryState(
                name,
                [t for t in tags if t.repository == name],
                [m for m in manifests if m.repository == name],
            )
            for name in names
        ]
        expected = plan(policies, tags, manifests, coverage, now)
        assert expected == plan_repositories(policies, iter(repositories), coverage, now)

    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_order_within_a_repository_does_not_matter(self, seed: int) -> None:
        """Tags, their pulls and manifests in any order within a repository give the same
        plan (the store streams them ordered by repository alone)."""
        tags, manifests = fixture_state()
        now = max(t.last_pushed_at for t in tags) + timedelta(days=1)
        coverage = ((now - timedelta(days=9), now),)
        policies = one_policy(
            "  delete: [{tags: ['1.0', 'multi']}, {untagged: true, older_than_days: 0}]\n"
        )
        names = sorted({t.repository for t in tags} | {m.repository for m in manifests})
        shuffle = random.Random(seed).sample

        def repositories(mixed: bool) -> list[RepositoryState]:
            out = []
            for name in names:
                states = [t for t in tags if t.repository == name]
                infos = [m for m in manifests if m.repository == name]
                if mixed:
                    states = [
                        t._replace(pulls=tuple(shuffle(t.pulls, len(t.pulls))))
                        for t in shuffle(states, len(states))
                    ]
                    infos = shuffle(infos, len(infos))
                out.append(RepositoryState(name, states, infos))
            return out

        expected = plan_repositories(policies, repositories(False), coverage, now)
        assert expected.actions
        assert expected == plan_repositories(policies, repositories(True), coverage, now)

    def test_repository_twice_is_refused(self) -> None:
        """A repository handed twice is a caller error, not a silent merge."""
        state = RepositoryState("team/app", [make_tag("x")], [])
        with pytest.raises(ValueError, match="twice"):
            plan_repositories(one_policy(DELETE_ALL), [state, state], FULL_COVERAGE, NOW)


class TestGapTolerance:
    def test_short_gaps_can_be_tolerated(self) -> None:
        """With a tolerance, a gap shorter than it does not make the decision unknown."""
        coverage = ((days_ago(60), days_ago(10)), (days_ago(10) + timedelta(seconds=20), NOW))
        tags = [make_tag("x")]
        policies = one_policy("  delete: [{not_pulled_days: 30}]\n")
        strict = plan(policies, tags, [], coverage, NOW)
        tolerant = plan(policies, tags, [], coverage, NOW, gap_tolerance=timedelta(seconds=30))
        expected = (Decision.UNKNOWN, Decision.DELETE)
        assert expected == (strict.decisions[0].decision, tolerant.decisions[0].decision)
