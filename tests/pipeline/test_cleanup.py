"""Cleanup runs on the store: plan, apply with a resumable journal, leased scheduled jobs."""

from __future__ import annotations

import dataclasses
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitor.cleanup.apply import ApplyOptions, ApplyResult
from monitor.cleanup.journal import JournalEntry, Outcome
from monitor.cleanup.plan import Plan
from monitor.cleanup.planner import plan_repositories
from monitor.cleanup.stored_plan import as_stored
from monitor.errors import ConfigError
from monitor.main import build_services
from monitor.pipeline import plan_child
from monitor.pipeline.cleanup import (
    PolicySet,
    apply_plan,
    apply_summary,
    load_policy_set,
    make_plan,
)
from monitor.pipeline.cleanup_jobs import cleanup_job
from monitor.pipeline.plan_child import PlanRequest, plan_apart
from monitor.pipeline.plan_processes import PlanningError
from monitor.pipeline.scheduler import run_job
from monitor.runtime import Services
from monitor.settings import CleanupSettings, Settings
from monitor.store.cleanup_plans import PlanState, load_plan, query_plans
from monitor.store.coverage import record_heartbeat
from monitor.store.inventory import record_tag_seen
from monitor.store.journal import list_journal
from monitor.store.planner_input import planner_input
from tests.cleanup.doubles import MemoryRegistry

NOW = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)
REPO = "team/app"
POLICY = """
- name: ci
  repositories: ["team/**"]
  protect: {tags: ["main"], grace_hours: 0, min_tags: 1}
  delete: [{name: prs, tags: ["pr-*"], not_pulled_days: 7}]
"""
OPTIONS = ApplyOptions(min_interval_seconds=0, max_repository_share=1.0)


def clock() -> datetime:
    return NOW


def seed(services: Services, registry: MemoryRegistry) -> None:
    """Tags in the registry and in the store, first seen 30 days ago, with full coverage."""
    past = NOW - timedelta(days=30)
    with services.session_factory() as session, session.begin():
        for at in (past, NOW):
            record_heartbeat(
                session, replica="t", source="notification", now=at, max_gap=timedelta(days=31)
            )
        for tag, content in (("pr-1", "one"), ("pr-2", "two"), ("main", "main")):
            digest = registry.push(REPO, tag, content)
            record_tag_seen(
                session, repository=REPO, tag=tag, digest=digest, media_type=None, seen_at=past
            )


def policies(tmp_path: Path) -> PolicySet:
    path = tmp_path / "policies.yml"
    path.write_text(POLICY)
    return load_policy_set(CleanupSettings(policies_file=path))


class CrashingRegistry(MemoryRegistry):
    """Dies (not a registry error: the process goes away) on the DELETE number `crash_at`."""

    def __init__(self, crash_at: int) -> None:
        super().__init__()
        self.crash_at = crash_at
        self.deletes = 0

    def delete_manifest(self, repository: str, digest: str) -> None:
        self.deletes += 1
        if self.deletes == self.crash_at:
            raise KeyboardInterrupt
        super().delete_manifest(repository, digest)


class TestMakePlan:
    def test_plan_is_stored_with_counts(self, services: Services, tmp_path: Path) -> None:
        """The stored plan is the planner's plan over the store's input, as stored (no digest
        on the tags it keeps); the gauge shows its decisions per decision."""
        seed(services, MemoryRegistry())
        chosen = policies(tmp_path)
        outcome = make_plan(
            services.session_factory, policies=chosen, now=NOW, metrics=services.metrics
        )
        with services.session_factory() as session:
            summary, stored = load_plan(session, outcome.summary.id)
            repositories, coverage = planner_input(session, now=NOW)
        expected = ({"delete": 2, "keep": 0, "protected": 1, "unknown": 0}, PlanState.PLANNED)
        assert expected == (summary.counts, summary.state)
        planned = plan_repositories(chosen.policies, repositories, coverage, NOW)
        assert (as_stored(planned), planned.plan_id) == (stored, summary.id)
        sample = services.metrics.registry.get_sample_value(
            "registry_monitor_cleanup_plan_tags", {"decision": "delete"}
        )
        assert 2.0 == sample

    def test_missing_policies_file_is_a_config_error(self) -> None:
        """Without cleanup.policies_file there is nothing to plan with."""
        with pytest.raises(ConfigError) as caught:
            load_policy_set(CleanupSettings())
        assert "cleanup.policies_file" == caught.value.key


class TestApplyPlan:
    def test_apply_deletes_and_marks_applied(self, services: Services, tmp_path: Path) -> None:
        """Apply deletes the planned tags, journals them and marks the plan applied."""
        registry = MemoryRegistry()
        seed(services, registry)
        outcome = make_plan(services.session_factory, policies=policies(tmp_path), now=NOW)
        apply_plan(
            services.session_factory, registry, outcome.summary.id, clock=clock,
            options=OPTIONS, metrics=services.metrics,
        )  # fmt: skip
        with services.session_factory() as session:
            state = load_plan(session, outcome.summary.id)[0].state
            journal = list_journal(session, plan_id=outcome.summary.id)
        assert (PlanState.APPLIED, ["main"]) == (state, registry.tags(REPO))
        assert [("pr-1", "deleted"), ("pr-2", "deleted")] == sorted(
            (r.tag, r.outcome) for r in journal
        )
        deleted = services.metrics.registry.get_sample_value(
            "registry_monitor_cleanup_deletions_total", {"result": "deleted"}
        )
        assert 2.0 == deleted

    def test_resume_after_a_crash_mid_apply(self, services: Services, tmp_path: Path) -> None:
        """A crash on the second delete leaves `applying`; a new apply never repeats the first."""
        registry = CrashingRegistry(crash_at=2)
        seed(services, registry)
        outcome = make_plan(services.session_factory, policies=policies(tmp_path), now=NOW)
        one_worker = dataclasses.replace(OPTIONS, concurrency=1)
        with pytest.raises(KeyboardInterrupt):
            apply_plan(
                services.session_factory, registry, outcome.summary.id, clock=clock,
                options=one_worker,
            )  # fmt: skip
        with services.session_factory() as session:
            crashed_state = load_plan(session, outcome.summary.id)[0].state
        registry.crash_at = 0
        apply_plan(
            services.session_factory, registry, outcome.summary.id, clock=clock, options=one_worker
        )
        deletes = [c for c in registry.calls if c[0] == "DELETE"]
        with services.session_factory() as session:
            final_state = load_plan(session, outcome.summary.id)[0].state
        expected = (PlanState.APPLYING, PlanState.APPLIED, ["main"], 2)
        assert expected == (crashed_state, final_state, registry.tags(REPO), len(deletes))

    def test_summary_is_sent_escaped(self, services: Services, tmp_path: Path) -> None:
        """The Slack summary goes to the sender given, with client-controlled text escaped."""
        registry = MemoryRegistry()
        seed(services, registry)
        outcome = make_plan(services.session_factory, policies=policies(tmp_path), now=NOW)
        sent: list[str] = []
        apply_plan(
            services.session_factory, registry, outcome.summary.id, clock=clock,
            options=OPTIONS, send_summary=sent.append,
        )  # fmt: skip
        assert 1 == len(sent)
        assert f"`{REPO}:pr-1`" in sent[0]


class TestApplySummary:
    def test_repository_and_tag_are_escaped(self) -> None:
        """`<`, `>` and `&` in a tag reach Slack as entities, never as markup."""
        entry = JournalEntry("p1", "evil<@here>", "sha256:" + "a" * 64, ("x&y",),
                             Outcome.DELETED, "delete_rule", NOW)  # fmt: skip
        plan = Plan(NOW, (), (), 10)
        text = apply_summary(plan, ApplyResult("p1", (entry,)))
        assert "• deleted `evil&lt;@here&gt;:x&amp;y`" in text.splitlines()
        assert "<@here>" not in text


def second_services(settings: Settings) -> Services:
    return build_services(settings, registry=CollectorRegistry(), migrate=False)


class TestScheduledJobs:
    def test_two_replicas_run_a_firing_once(self, services: Services, tmp_path: Path) -> None:
        """Two Services on one store fire the plan job at once: one plan, one run."""
        seed(services, MemoryRegistry())
        other = second_services(services.settings)
        path = tmp_path / "policies.yml"
        path.write_text(POLICY)
        cleanup = CleanupSettings(policies_file=path)
        ran: list[bool] = []
        barrier = threading.Barrier(2)
        lock = threading.Lock()

        def fire(replica: Services) -> None:
            barrier.wait(timeout=10)
            job = cleanup_job(
                "plan", session_factory=replica.session_factory, settings=cleanup,
                clock=clock, metrics=replica.metrics, database=replica.settings.database,
            )  # fmt: skip
            result, _ = run_job(
                job, session_factory=replica.session_factory, holder=replica.replica,
                clock=clock, next_fire=NOW + timedelta(days=1),
            )  # fmt: skip
            with lock:
                ran.append(result)

        try:
            threads = [threading.Thread(target=fire, args=(s,)) for s in (services, other)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            job = cleanup_job(
                "plan", session_factory=other.session_factory, settings=cleanup,
                clock=clock, metrics=other.metrics, database=other.settings.database,
            )  # fmt: skip
            late, _ = run_job(
                job, session_factory=other.session_factory, holder=other.replica, clock=clock
            )
        finally:
            other.engine.dispose()
        with services.session_factory() as session:
            plans, _ = query_plans(session)
        assert ([False, True], False, 1) == (sorted(ran), late, len(plans))

    def test_plan_job_plans_in_a_process_of_its_own(
        self, services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The scheduled plan is made by another process (planning here would fail): the plan
        stored is the one `make_plan` makes here (the same id, so stored once), and the run is
        counted."""
        seed(services, MemoryRegistry())
        path = tmp_path / "policies.yml"
        path.write_text(POLICY)
        cleanup = CleanupSettings(policies_file=path)
        done = plan_apart(PlanRequest(services.settings.database, cleanup, NOW))
        here = make_plan(services.session_factory, policies=load_policy_set(cleanup), now=NOW)

        def not_here(*args: object, **kwargs: object) -> None:
            raise AssertionError("planned in serve's process")

        monkeypatch.setattr("monitor.pipeline.cleanup.make_plan", not_here)
        job = cleanup_job(
            "plan", session_factory=services.session_factory, settings=cleanup, clock=clock,
            metrics=services.metrics, database=services.settings.database,
        )  # fmt: skip
        ran, _ = run_job(job, session_factory=services.session_factory, holder="a", clock=clock)
        with services.session_factory() as session:
            plans, _ = query_plans(session)
        runs = services.metrics.registry.get_sample_value(
            "registry_monitor_cleanup_runs_total", {"kind": "plan", "result": "ok"}
        )
        assert (done.plan_id, here.summary.counts, True, 1, 1.0) == (
            here.summary.id, done.counts, ran, len(plans), runs,
        )  # fmt: skip
        assert done.pid != os.getpid()

    def test_a_plan_process_that_fails_says_why(
        self, services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A plan's process that cannot plan (its policies file gone), or runs over its time
        limit, fails the job with why; nothing is stored."""
        cleanup = CleanupSettings(policies_file=tmp_path / "gone.yml")
        with pytest.raises(PlanningError, match=r"cleanup\.policies_file.*cannot read"):
            plan_apart(PlanRequest(services.settings.database, cleanup, NOW))
        monkeypatch.setattr(plan_child, "TIME_LIMIT_SECONDS", 0.01)
        with pytest.raises(PlanningError, match=r"ran over 0\.01 s"):
            plan_apart(PlanRequest(services.settings.database, cleanup, NOW))
        with services.session_factory() as session:
            assert query_plans(session)[0] == []

    def test_apply_job_is_a_dry_run_by_default(self, services: Services, tmp_path: Path) -> None:
        """Without apply_on_schedule the apply job deletes nothing and the plan stays planned."""
        registry = MemoryRegistry()
        seed(services, registry)
        outcome = make_plan(services.session_factory, policies=policies(tmp_path), now=NOW)
        job = cleanup_job(
            "apply", session_factory=services.session_factory, settings=CleanupSettings(),
            clock=clock, metrics=services.metrics, database=services.settings.database,
        )  # fmt: skip
        ran, _ = run_job(job, session_factory=services.session_factory, holder="a", clock=clock)
        with services.session_factory() as session:
            state = load_plan(session, outcome.summary.id)[0].state
        runs = services.metrics.registry.get_sample_value(
            "registry_monitor_cleanup_runs_total", {"kind": "apply", "result": "ok"}
        )
        assert (True, PlanState.PLANNED, ["main", "pr-1", "pr-2"], 1.0) == (
            ran, state, registry.tags(REPO), runs,
        )  # fmt: skip
