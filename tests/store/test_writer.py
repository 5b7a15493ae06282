"""The intake writer: group commit, duplicates, and failures isolated per submission."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy.orm import Session

from monitor.errors import StoreUnavailable
from monitor.runtime import Services
from tests.fixture_events import scenario_events


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
        """One submission whose work fails gets StoreUnavailable; the others commit."""
        events = scenario_events()

        def broken(_session: Session) -> None:
            raise RuntimeError("disk full")

        futures = [services.writer.submit([e]) for e in events[:20]]
        bad = services.writer.submit([events[20]], also=broken)
        futures += [services.writer.submit([e]) for e in events[21:40]]
        assert [1] * 39 == [len(f.result(timeout=30).inserted) for f in futures]
        with pytest.raises(StoreUnavailable):
            bad.result(timeout=30)
        again = services.writer.submit([events[20]]).result(timeout=30)
        assert 1 == len(again.inserted)

    def test_a_stopped_writer_refuses_instead_of_dropping(self, services: Services) -> None:
        """After stop, a submission fails at once; nothing is silently lost."""
        services.writer.stop()
        with pytest.raises(StoreUnavailable):
            services.writer.submit(scenario_events()[:1]).result(timeout=5)
