"""The registry log counts as coverage for cleanup's "unused" decisions once every request it
holds was matched against notifications or rebuilt (a monitor outage no longer means unknown)."""

from __future__ import annotations

from datetime import datetime, timedelta

from monitor.ingest.logclassify import LogClassifier
from monitor.ingest.requestlog import RequestRecord
from monitor.pipeline.log_ingest import backfill
from monitor.pipeline.reconcile import reconcile_events
from monitor.runtime import Services
from monitor.store.planner_input import planning_coverage
from tests.request_captures import log_lines

LINES = log_lines("3.1", "registry-text.log")


def spans() -> tuple[list[RequestRecord], datetime | None]:
    classifier = LogClassifier()
    classifier.feed_many(LINES)
    records = classifier.take_records()[0]
    return records, classifier.last_time()


class TestLogCoverage:
    def test_covered_up_to_the_oldest_unreconciled_request(self, services: Services) -> None:
        """Before the reconcile pass the log covers nothing (its first request is pending);
        after it, from its first request to its last line, without any notification."""
        records, last_line = spans()
        first = min(r.occurred_at for r in records)
        now = max(r.occurred_at for r in records) + timedelta(minutes=5)
        backfill(LINES, writer=services.writer, metrics=services.metrics)
        with services.session_factory() as session:
            assert [] == planning_coverage(session, now=now)
        reconcile_events(services.session_factory, services.writer, now=now, settle_seconds=120)
        with services.session_factory() as session:
            assert [(first, last_line)] == planning_coverage(session, now=now)

    def test_a_backfill_run_again_keeps_one_span(self, services: Services) -> None:
        """The same log ingested twice covers the same span (intervals merge)."""
        records, last_line = spans()
        now = max(r.occurred_at for r in records) + timedelta(minutes=5)
        for _ in range(2):
            backfill(LINES, writer=services.writer, metrics=services.metrics)
        reconcile_events(services.session_factory, services.writer, now=now, settle_seconds=120)
        with services.session_factory() as session:
            assert [(min(r.occurred_at for r in records), last_line)] == planning_coverage(
                session, now=now
            )
