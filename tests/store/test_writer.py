"""The intake writer: group commit, duplicates, and failures isolated per submission."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.orm import Session

from monitor.errors import StoreUnavailable
from monitor.ingest.tailer import Checkpoint
from monitor.main import build_services
from monitor.runtime import Services
from monitor.store.checkpoints import load_checkpoint
from monitor.store.inventory import list_manifests, record_tag_seen
from monitor.store.quarantine import Quarantined
from monitor.store.rollups import daily_counts, newest_per_source
from monitor.store.tags import list_tag_pulls, list_tags
from tests.conftest import make_settings, store_refusing
from tests.fixture_events import make_event, scenario_events


def stored_state(services: Services) -> tuple[object, ...]:
    """Tag state, pulls, daily counts, newest per source, blob sizes and manifests."""
    with services.session_factory() as session:
        return (
            list_tags(session),
            sorted(
                list_tag_pulls(session),
                key=lambda p: (p.repository, p.tag, p.http_method, p.client),
            ),
            daily_counts(session, since=date(2000, 1, 1), until=date(2100, 1, 1)),
            newest_per_source(session),
            list_manifests(session),
            session.execute(
                text("SELECT repository, digest, size FROM blob_sizes ORDER BY 1, 2")
            ).all(),
            session.execute(text("SELECT event_id FROM events ORDER BY event_id")).all(),
        )


def commits(services: Services) -> float:
    value = services.metrics.registry.get_sample_value(
        "registry_monitor_store_commit_seconds_count"
    )
    return value or 0.0


class TestStoreWriter:
    def test_concurrent_submissions_share_commits(self, services: Services) -> None:
        """Submissions that queue while a commit runs go into the next one: fewer commits."""
        base = scenario_events()[0]
        before = commits(services)
        futures = [
            services.writer.submit([dataclasses.replace(base, event_id=f"e-{i}")])
            for i in range(300)
        ]
        results = [f.result(timeout=60) for f in futures]
        assert [1] * 300 == [len(r.inserted) for r in results]
        assert commits(services) - before < 300

    def test_duplicates_within_and_across_submissions(self, services: Services) -> None:
        """The same id twice in one submission, or again later, is stored once."""
        event = scenario_events()[0]
        first = services.writer.submit([event, event]).result(timeout=30)
        second = services.writer.submit([event]).result(timeout=30)
        assert (1, 1, 0, 1) == (
            len(first.inserted),
            first.duplicates,
            len(second.inserted),
            second.duplicates,
        )

    def test_a_failing_submission_does_not_fail_its_group(self, services: Services) -> None:
        """One submission whose checkpoint the store refuses gets StoreUnavailable; the others
        commit.

        Its event is stored all the same (the store took it), so a retry finds it stored.
        """
        events = scenario_events()

        # An offset no BIGINT column holds: both stores refuse the row.
        broken = Checkpoint("/var/log/registry.log", 1, 2, 2**64, 0, "")
        futures = [services.writer.submit([e]) for e in events[:20]]
        bad = services.writer.submit([events[20]], checkpoint=broken)
        futures += [services.writer.submit([e]) for e in events[21:40]]
        assert [1] * 39 == [len(f.result(timeout=30).inserted) for f in futures]
        with pytest.raises(StoreUnavailable):
            bad.result(timeout=30)
        again = services.writer.submit([events[20]]).result(timeout=30)
        assert (0, 1) == (len(again.inserted), again.duplicates)

    def test_background_work_waits_for_queued_intake(self, services: Services) -> None:
        """While the writer is busy, a background piece (expiry, detection) queued before a
        notification still commits after it, alone: intake never waits behind queued jobs."""
        release, started = threading.Event(), threading.Event()
        order: list[str] = []

        def hold(_session: Session) -> None:
            order.append("busy")
            started.set()
            release.wait(30)

        busy = services.writer.submit((), also=hold, background=True)
        assert started.wait(30)
        job = services.writer.submit((), also=lambda _s: order.append("job"), background=True)
        intake = services.writer.submit(
            scenario_events()[:1], also=lambda _s: order.append("intake")
        )
        release.set()
        for future in (busy, job, intake):
            future.result(timeout=30)
        assert ["busy", "intake", "job"] == order

    def test_a_group_stores_what_its_submissions_would_store_one_by_one(
        self, services: Services, tmp_path: Path
    ) -> None:
        """Submissions queued behind a busy writer commit as one group, written at once: tag
        state, pulls and daily counts are those of committing them one by one, and an event
        id sent by two submissions of the group is stored for the first one only."""
        events = scenario_events()
        release, started = threading.Event(), threading.Event()

        def hold(_session: Session) -> None:
            started.set()
            release.wait(30)

        busy = services.writer.submit((), also=hold, background=True)
        assert started.wait(30)
        before = commits(services)
        futures = [services.writer.submit([e]) for e in events]
        again = services.writer.submit([events[0], events[1]])
        release.set()
        busy.result(timeout=30)
        results = [f.result(timeout=30) for f in futures]
        repeated = again.result(timeout=30)
        assert 2 == commits(services) - before  # the busy piece, then the whole group
        assert [(1, 0)] * len(events) == [(len(r.inserted), r.duplicates) for r in results]
        assert (0, 2) == (len(repeated.inserted), repeated.duplicates)

        alone = build_services(
            make_settings(f"sqlite:///{tmp_path / 'alone.db'}", tmp_path),
            registry=CollectorRegistry(),
            migrate=True,
        )
        alone.writer.start()
        try:
            for event in [*events, events[0], events[1]]:
                alone.writer.submit([event]).result(timeout=30)
            assert stored_state(alone) == stored_state(services)
        finally:
            alone.writer.stop()
            alone.engine.dispose()

    def test_transact_returns_what_the_work_returns(self, services: Services) -> None:
        def count(session: Session) -> int:
            return int(session.execute(text("SELECT COUNT(*) FROM events")).scalar_one())

        services.writer.submit(scenario_events()).result(timeout=30)
        assert len(scenario_events()) == services.writer.transact(count)

    def test_a_checkpoint_is_committed_with_its_events(self, services: Services) -> None:
        """A followed file's checkpoint is stored in the transaction of its batch's events."""
        checkpoint = Checkpoint("/var/log/registry.log", 1, 2, 4096, 10, "ab" * 32)
        result = services.writer.submit(scenario_events()[:3], checkpoint=checkpoint)
        result.result(timeout=30)
        with services.session_factory() as session:
            assert checkpoint == load_checkpoint(session, checkpoint.path)

    def test_a_stopped_writer_refuses_instead_of_dropping(self, services: Services) -> None:
        """After stop, a submission fails at once; nothing is silently lost."""
        services.writer.stop()
        with pytest.raises(StoreUnavailable):
            services.writer.submit(scenario_events()[:1]).result(timeout=5)


class TestRefusedBatches:
    def test_a_refused_batch_is_split_stored_and_the_rest_quarantined(
        self, services: Services
    ) -> None:
        """3 events the store refuses among 100: 97 stored, one quarantine row counting 3,
        and the submission's checkpoint and its own work committed once."""
        with store_refusing(services.engine, "repository", "poison"):
            base = scenario_events()[0]
            events = [
                dataclasses.replace(
                    base, event_id=f"e-{i}", repository="poison" if i in (5, 50, 99) else "ok/app"
                )
                for i in range(100)
            ]
            checkpoint = Checkpoint("/var/log/registry.log", 1, 2, 4096, 10, "ab" * 32)
            calls: list[int] = []

            def also(session: Session) -> None:
                calls.append(1)

            result = services.writer.submit(events, checkpoint=checkpoint, also=also).result(
                timeout=60
            )
            assert (97, 0, 3) == (len(result.inserted), result.duplicates, result.quarantined)
            assert 1 == sum(calls)
            with services.session_factory() as session:
                assert checkpoint == load_checkpoint(session, checkpoint.path)
            with services.engine.connect() as connection:
                rows = connection.execute(text("SELECT reason, count, body FROM quarantine")).all()
            ((reason, count, body),) = rows
            assert ("store_refused", 3) == (reason, count)
            assert {"e-5", "e-50", "e-99"} == {
                json.loads(line)["event_id"] for line in bytes(body).splitlines()
            }
            assert 3.0 == services.metrics.registry.get_sample_value(
                "registry_monitor_quarantined_total",
                {"source": base.source.value, "reason": "store_refused"},
            )

    def test_the_quarantine_keeps_at_most_its_cap(self, db_url: str, tmp_path: Path) -> None:
        """With a cap of 5 rows, 12 quarantined bodies leave the newest 5; 7 counted expired."""
        settings = make_settings(db_url, tmp_path, REGISTRY_MONITOR_INPUT_QUARANTINE_MAX_ROWS="5")
        services = build_services(settings, registry=CollectorRegistry(), migrate=True)
        services.writer.start()
        try:
            for n in range(12):
                item = Quarantined("notification", "invalid_json", "x", str(n).encode())
                services.writer.submit([], [item]).result(timeout=30)
            with services.engine.connect() as connection:
                bodies = connection.execute(text("SELECT body FROM quarantine ORDER BY id")).all()
            assert [str(n).encode() for n in range(7, 12)] == [bytes(b[0]) for b in bodies]
            assert 7.0 == services.metrics.registry.get_sample_value(
                "registry_monitor_quarantine_expired_total"
            )
        finally:
            services.writer.stop()
            services.engine.dispose()


def _waiting_on_a_lock(services: Services) -> int:
    """Sessions of this database waiting on a lock (read in a transaction of its own:
    PostgreSQL keeps one snapshot of pg_stat_activity for a whole transaction)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    with services.session_factory() as session:
        return int(session.scalar(query) or 0)


class TestConflicts:
    @pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
    def test_a_group_broken_off_in_a_deadlock_commits_again(self, services: Services) -> None:
        """Reconciliation holds tag b and goes on to tag a while the writer's group holds a
        (pulled first) and waits for b. PostgreSQL ends the writer's transaction (it waited
        first); the writer commits the group again once reconciliation committed: the
        submission succeeds, and no store error is counted."""
        seen = datetime(2026, 11, 1, tzinfo=UTC)
        pulls = [make_event(tag=tag, seconds=i) for i, tag in enumerate("ab")]
        with services.session_factory() as other, other.begin():
            for tag in "ba":
                record_tag_seen(
                    other,
                    repository="team/app",
                    tag=tag,
                    digest=str(pulls[0].digest),
                    media_type=None,
                    seen_at=seen,
                )
                if tag == "b":
                    submitted = services.writer.submit(pulls)
                    deadline = time.monotonic() + 30
                    while _waiting_on_a_lock(services) < 1:
                        assert time.monotonic() < deadline, "the writer never waited for tag b"
                        time.sleep(0.01)
        assert 2 == len(submitted.result(timeout=60).inserted)
        errors = services.metrics.registry.get_sample_value(
            "registry_monitor_store_errors_total", {"operation": "commit"}
        )
        assert not errors
        with services.session_factory() as session:
            pulled = {t.tag: t.pull_count for t in list_tags(session, repository="team/app")}
        assert {"a": 1, "b": 1} == pulled
