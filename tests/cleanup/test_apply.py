from __future__ import annotations

import dataclasses

from monitor.cleanup.apply import ApplyOptions, DeleteMode, apply, restore
from monitor.cleanup.journal import Outcome, SkipReason
from monitor.cleanup.model import TagRef, TagState
from monitor.cleanup.plan import Plan
from monitor.cleanup.planner import plan
from monitor.errors import RegistryError
from tests.cleanup.doubles import MemoryJournal, MemoryRegistry
from tests.cleanup.factories import FULL_COVERAGE, NOW, days_ago, one_policy

PR_RULE = "  delete: [{tags: ['pr-*']}]\n"
FAST = ApplyOptions(min_interval_seconds=0, max_repository_share=1.0)


def clock():
    return NOW


def snapshot(registry: MemoryRegistry) -> list[TagState]:
    return [
        TagState(repo, tag, digest, days_ago(100), days_ago(100))
        for (repo, tag), digest in sorted(registry.tag_map.items())
    ]


def make_plan(registry: MemoryRegistry, body: str = PR_RULE) -> Plan:
    return plan(one_policy(body), snapshot(registry), [], FULL_COVERAGE, NOW)


def seeded(*, tag_delete: bool = False) -> MemoryRegistry:
    registry = MemoryRegistry(tag_delete=tag_delete)
    registry.push("team/app", "pr-1", "a")
    registry.push("team/app", "pr-1b", "a")
    registry.push("team/app", "pr-2", "b")
    registry.push("team/app", "main", "b")
    registry.push("team/app", "release", "c")
    return registry


class TestApply:
    def test_deletes_exactly_the_planned_digests(self) -> None:
        """On 2.8 the shared-digest pair goes in one delete; a digest with a kept tag stays."""
        registry = seeded()
        result = apply(make_plan(registry), registry, MemoryJournal(), clock=clock, options=FAST)
        expected = ["main", "pr-2", "release"]
        assert expected == registry.tags("team/app")
        expected_deleted = {TagRef("team/app", "pr-1"), TagRef("team/app", "pr-1b")}
        assert expected_deleted == result.deleted_tags()

    def test_saves_manifest_before_delete(self) -> None:
        """The journal holds the deleted manifest's body and tags."""
        registry = seeded()
        journal = MemoryJournal()
        apply(make_plan(registry), registry, journal, clock=clock, options=FAST)
        expected = [(b"a", ("pr-1", "pr-1b"))]
        assert expected == [(m.body, m.tags) for m in journal.manifests]

    def test_moved_tag_is_skipped_and_reported(self) -> None:
        """A tag re-pointed after planning is skipped; its old digest still goes if unheld."""
        registry = seeded()
        current = make_plan(registry)
        registry.push("team/app", "pr-1", "new content")
        result = apply(current, registry, MemoryJournal(), clock=clock, options=FAST)
        skipped = [(e.tags, e.reason) for e in result.outcomes(Outcome.SKIPPED)]
        expected_skipped = [(("pr-1",), SkipReason.TAG_MOVED)]
        assert expected_skipped == skipped
        expected = ["main", "pr-1", "pr-2", "release"]
        assert expected == registry.tags("team/app")

    def test_unplanned_tag_on_digest_blocks_digest_delete(self) -> None:
        """On 2.8 a digest that gained a tag after planning is not deleted."""
        registry = seeded()
        current = make_plan(registry)
        registry.push("team/app", "hotfix", "a")
        result = apply(current, registry, MemoryJournal(), clock=clock, options=FAST)
        expected = [SkipReason.UNPLANNED_TAG_ON_DIGEST]
        assert expected == [e.reason for e in result.outcomes(Outcome.SKIPPED)]
        assert "pr-1" in registry.tags("team/app")

    def test_a_registry_that_deletes_tags_gets_one_delete_per_tag(self) -> None:
        """By default the registry is asked first; a 3.x registry gets each planned tag
        deleted by name, and the result says which mode was used and why."""
        registry = seeded(tag_delete=True)
        result = apply(make_plan(registry), registry, MemoryJournal(), clock=clock, options=FAST)
        deletes = [c for c in registry.calls if c[0] == "DELETE"]
        expected = [("DELETE", "team/app", "pr-1"), ("DELETE", "team/app", "pr-1b")]
        assert expected == deletes
        assert DeleteMode.TAG == result.delete_mode
        assert "the registry deletes single tags (distribution 3.x)" == result.delete_mode_reason

    def test_a_registry_that_cannot_delete_tags_gets_digest_deletes(self) -> None:
        """A 2.8 registry answers the probe with 400: the digest is deleted once."""
        registry = seeded()
        result = apply(make_plan(registry), registry, MemoryJournal(), clock=clock, options=FAST)
        deletes = [c for c in registry.calls if c[0] == "DELETE"]
        assert 1 == len(deletes) and deletes[0][2].startswith("sha256:")
        assert DeleteMode.DIGEST == result.delete_mode
        assert "the registry deletes by digest only (distribution 2.x)" == result.delete_mode_reason

    def test_a_configured_mode_is_used_without_asking(self) -> None:
        """cleanup.delete_mode digest on a registry that could delete tags: no probe."""
        registry = seeded(tag_delete=True)
        options = dataclasses.replace(FAST, delete_mode=DeleteMode.DIGEST)
        result = apply(make_plan(registry), registry, MemoryJournal(), clock=clock, options=options)
        assert [] == [c for c in registry.calls if c[0] == "PROBE"]
        assert DeleteMode.DIGEST == result.delete_mode
        assert "cleanup.delete_mode is digest" == result.delete_mode_reason

    def test_run_limit_aborts_before_any_delete(self) -> None:
        """A plan above max_deletions deletes nothing and says why."""
        registry = seeded()
        options = ApplyOptions(max_deletions=1, min_interval_seconds=0, max_repository_share=1.0)
        result = apply(make_plan(registry), registry, MemoryJournal(), clock=clock, options=options)
        assert result.aborted is not None
        expected = ["main", "pr-1", "pr-1b", "pr-2", "release"]
        assert expected == registry.tags("team/app")

    def test_repository_share_limit_skips_repository(self) -> None:
        """A repository losing more than the allowed share of its tags is skipped."""
        registry = seeded()
        options = ApplyOptions(max_repository_share=0.2, min_interval_seconds=0)
        result = apply(make_plan(registry), registry, MemoryJournal(), clock=clock, options=options)
        expected = [SkipReason.REPOSITORY_SHARE_EXCEEDED]
        assert expected == [e.reason for e in result.outcomes(Outcome.SKIPPED)]
        expected_count = 5
        assert expected_count == len(registry.tags("team/app"))

    def test_resumes_from_journal(self) -> None:
        """A second run of the same plan skips what the journal records as done."""
        registry = seeded()
        journal = MemoryJournal()
        current = make_plan(registry)
        apply(current, registry, journal, clock=clock, options=FAST)
        registry.calls.clear()
        second = apply(current, registry, journal, clock=clock, options=FAST)
        expected: tuple[object, ...] = ()
        assert (expected, []) == (second.entries, registry.calls)


class TestRestore:
    def test_restore_puts_back_under_each_tag(self) -> None:
        """Restore re-creates every deleted tag with the same digest."""
        registry = seeded()
        before = dict(registry.tag_map)
        journal = MemoryJournal()
        current = make_plan(registry)
        apply(current, registry, journal, clock=clock, options=FAST)
        entries = restore(registry, journal, current.plan_id, clock=clock)
        assert before == registry.tag_map
        expected = [Outcome.RESTORED, Outcome.RESTORED]
        assert expected == [e.outcome for e in entries]

    def test_restore_only_some_tags(self) -> None:
        """`only` limits the restore to the named tags."""
        registry = seeded()
        journal = MemoryJournal()
        current = make_plan(registry)
        apply(current, registry, journal, clock=clock, options=FAST)
        restore(registry, journal, current.plan_id, clock=clock, only={TagRef("team/app", "pr-1")})
        expected = ["main", "pr-1", "pr-2", "release"]
        assert expected == registry.tags("team/app")


class TimingOutRegistry(MemoryRegistry):
    """Deletes, then answers as if the request had timed out."""

    def delete_manifest(self, repository: str, digest: str) -> None:
        super().delete_manifest(repository, digest)
        raise RegistryError("DELETE timed out")


class FailingRegistry(MemoryRegistry):
    """Refuses every delete."""

    def delete_manifest(self, repository: str, digest: str) -> None:
        raise RegistryError("DELETE answered 500")


class TestApplyErrors:
    def test_timeout_after_delete_is_verified(self) -> None:
        """A delete that errs but did happen is recorded as deleted after a HEAD confirms it."""
        registry = TimingOutRegistry()
        registry.push("team/app", "pr-1", "a")
        registry.push("team/app", "main", "b")
        result = apply(make_plan(registry), registry, MemoryJournal(), clock=clock, options=FAST)
        expected = [(("pr-1",), "confirmed gone after: DELETE timed out")]
        assert expected == [(e.tags, e.detail) for e in result.outcomes(Outcome.DELETED)]

    def test_failed_delete_is_reported(self) -> None:
        """A delete the registry refuses is recorded as failed, and the tag stays."""
        registry = FailingRegistry()
        registry.push("team/app", "pr-1", "a")
        registry.push("team/app", "main", "b")
        result = apply(make_plan(registry), registry, MemoryJournal(), clock=clock, options=FAST)
        expected = ([(("pr-1",), "DELETE answered 500")], ["main", "pr-1"])
        actual = [(e.tags, e.detail) for e in result.outcomes(Outcome.FAILED)]
        assert expected == (actual, registry.tags("team/app"))
