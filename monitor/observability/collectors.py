"""Gauges derived from the store, computed when Prometheus scrapes (a stateless Collector).

The tag gauges are the exception: counting live and unused tags is one pass over the tag state
(26-31 ms at 87,312 tags, growing with them), so `TagGauges` counts them off the scrape, on
`serve`'s job `tag-gauges` every `TAG_GAUGES_SECONDS`, and the scrape exports the last count
(none before the first).

The cleanup gauges come from the store rather than from the process that ran the job, so every
replica exports the same values whether the run was scheduled here, on another replica, or
made with the CLI.

When the store does not answer, the scrape exports none of them and counts a store error
(operation `scrape`); the other metrics are still served.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from monitor.clock import Clock
from monitor.store.detector_state import oldest_unjudged
from monitor.store.engine import SessionFactory
from monitor.store.outbox import outbox_depth
from monitor.store.requestlog import registry_start_summary
from monitor.store.stats import (
    cleanup_successes,
    newest_events,
    newest_plan_counts,
    tag_counts,
)

UNUSED_DAYS = (30, 90)
PREFIX = "registry_monitor_"
TAG_GAUGES_SECONDS = 60.0
"""How often `serve` counts the tags for the tag gauges (the age of `tags_unused` is in days)."""


@dataclasses.dataclass(frozen=True, slots=True)
class TagCounts:
    tracked: int
    unused: dict[int, int]  # days → live tags not used for more than that
    counted_at: datetime


class TagGauges:
    """The last count of live and unused tags (`UNUSED_DAYS`), made by `refresh`."""

    def __init__(self, session_factory: SessionFactory, *, clock: Clock) -> None:
        self._session_factory = session_factory
        self._clock = clock
        self._counts: TagCounts | None = None  # replaced whole (one reference), never changed

    def refresh(self) -> None:
        """Counts the tags now (one pass over the tag state); raises what the store raises."""
        now = self._clock()
        with self._session_factory() as session:
            tracked, unused = tag_counts(session, now=now, unused_days=UNUSED_DAYS)
        self._counts = TagCounts(tracked, unused, now)

    def last(self) -> TagCounts | None:
        return self._counts


class StoreReadingCollector(Collector):
    """A collector whose families are read from the store at each scrape (described as none,
    so registering it reads nothing); a failed read counts in `store_errors`."""

    def __init__(
        self,
        session_factory: SessionFactory,
        *,
        clock: Clock,
        store_errors: Counter,
    ) -> None:
        self._session_factory = session_factory
        self._clock = clock
        self._store_errors = store_errors

    def describe(self) -> list[GaugeMetricFamily]:
        return []


class StoreCollector(StoreReadingCollector):
    def __init__(
        self,
        session_factory: SessionFactory,
        *,
        clock: Clock,
        store_errors: Counter,
        tag_gauges: TagGauges,
    ) -> None:
        super().__init__(session_factory, clock=clock, store_errors=store_errors)
        self._tag_gauges = tag_gauges

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        try:
            with self._session_factory() as session:
                depth = outbox_depth(session)
                newest = newest_events(session)
                plan_counts = newest_plan_counts(session)
                successes = cleanup_successes(session)
                unjudged = oldest_unjudged(session)
                starts, last_start = registry_start_summary(session)
        except SQLAlchemyError:
            self._store_errors.labels(operation="scrape").inc()
            return
        outbox = GaugeMetricFamily(
            f"{PREFIX}alert_outbox_depth", "Alert outbox rows by state.", labels=["state"]
        )
        for state, count in sorted(depth.items()):
            outbox.add_metric([state], count)
        yield outbox
        yield from _tag_families(self._tag_gauges.last())
        age = GaugeMetricFamily(
            f"{PREFIX}newest_event_age_seconds",
            "Seconds since the newest stored event occurred, by source.",
            labels=["source"],
        )
        for source, at in sorted(newest.items()):
            moment = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
            age.add_metric([source], max((now - moment).total_seconds(), 0.0))
        yield age
        yield GaugeMetricFamily(
            f"{PREFIX}detection_lag_seconds",
            "Seconds since the oldest event detection has not judged yet was received "
            "(0 when detection is caught up).",
            value=0.0 if unjudged is None else max((now - unjudged).total_seconds(), 0.0),
        )
        plan = GaugeMetricFamily(
            f"{PREFIX}cleanup_plan_tags",
            "Tags per decision (delete, keep, protected, unknown) in the newest stored plan.",
            labels=["decision"],
        )
        for decision, count in plan_counts.items():
            plan.add_metric([decision], count)
        yield plan
        success = GaugeMetricFamily(
            f"{PREFIX}cleanup_last_success_timestamp_seconds",
            "Unix time of the last successful cleanup run, by kind, as recorded in the store.",
            labels=["kind"],
        )
        for kind, at in sorted(successes.items()):
            success.add_metric([kind], at.timestamp())
        yield success
        yield CounterMetricFamily(
            f"{PREFIX}registry_starts",
            "Registry processes seen starting in its log (each a new instance id); a restart "
            "loses the notifications it still queued.",
            value=starts,
        )
        started = GaugeMetricFamily(
            f"{PREFIX}registry_last_start_timestamp_seconds",
            "Unix time of the newest registry start seen in its log.",
        )
        if last_start is not None:
            moment = last_start if last_start.tzinfo is not None else last_start.replace(tzinfo=UTC)
            started.add_metric([], moment.timestamp())
        yield started


def _tag_families(counts: TagCounts | None) -> Iterator[Metric]:
    """The tag gauges from the last count (empty families before the first)."""
    tracked = GaugeMetricFamily(
        f"{PREFIX}tags_tracked", "Live (not deleted) tags in the tag state, counted each minute."
    )
    unused = GaugeMetricFamily(
        f"{PREFIX}tags_unused",
        "Live tags not pulled for more than `days` days (never pulled: since first seen), "
        "counted each minute.",
        labels=["days"],
    )
    if counts is not None:
        tracked.add_metric([], counts.tracked)
        for days, count in counts.unused.items():
            unused.add_metric([str(days)], count)
    yield tracked
    yield unused
