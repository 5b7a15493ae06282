"""Registry log lines → events in the store: backfill, following files, and shipped batches.

Each stream of lines (a file, stdin, one `POST /v1/logs`) has its own `LogClassifier`, which
joins the app lines of one request. Events go through the store writer like notifications,
so they are deduplicated on their deterministic `event_id`: ingesting the same file twice adds
nothing. A followed file's checkpoint is saved in the same transaction as the events its lines
produced (`StoreWriter.submit(..., checkpoint=)`), so a restart neither loses nor repeats lines.
`FollowJob` is the `follow-logs` row of the job table (monitor.pipeline.jobs); `serve` runs it
in the intake applier's process when that is apart (`following`, monitor/pipeline/applier_child.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta

import orjson
import structlog
from sqlalchemy.orm import Session

from monitor.clock import Clock, utc_now
from monitor.errors import StoreUnavailable
from monitor.events import Event
from monitor.ingest.boundary import Window, screen_events, screen_lines
from monitor.ingest.logclassify import LogClassifier
from monitor.ingest.logcounters import LogCounters
from monitor.ingest.requestlog import RegistryStart, RequestRecord, screen_records
from monitor.ingest.tailer import Checkpoint, Follower
from monitor.observability.metrics import Metrics
from monitor.pipeline.scheduler import Job
from monitor.settings import InputSettings
from monitor.store.checkpoints import StoreCheckpoints
from monitor.store.coverage import extend_log_coverage
from monitor.store.engine import SessionFactory
from monitor.store.quarantine import Quarantined, combine
from monitor.store.requestlog import record_requests, record_starts
from monitor.store.writer import CommitResult, StoreWriter

log = structlog.get_logger("monitor.pipeline.log_ingest")


@dataclasses.dataclass
class IngestTotals:
    lines: int = 0
    events: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class LineLimits:
    """The input boundary's settings for log lines."""

    clock: Clock
    skew: timedelta = timedelta(minutes=15)
    max_line_chars: int = 65_536

    @classmethod
    def of(cls, settings: InputSettings, clock: Clock) -> LineLimits:
        return cls(clock, timedelta(seconds=settings.clock_skew_seconds), settings.max_line_chars)


@dataclasses.dataclass(frozen=True, slots=True)
class Fed:
    """What a batch of lines gave: safe events, and `(reason, message, raw)` for the rest."""

    events: list[Event]
    rejected: list[tuple[str, str, bytes]]
    records: list[RequestRecord] = dataclasses.field(default_factory=list)
    starts: list[RegistryStart] = dataclasses.field(default_factory=list)
    # the stream's coverage key and the span of log time this batch read without a gap
    coverage: tuple[str, datetime, datetime] | None = None

    def save_records(self, session: Session) -> None:
        """Keep the batch's request records, registry starts and log coverage (in the events'
        transaction)."""
        record_requests(session, self.records)
        record_starts(session, self.starts)
        if self.coverage is not None:
            key, since, until = self.coverage
            extend_log_coverage(session, key=key, since=since, until=until)

    @property
    def quarantined(self) -> list[Quarantined]:
        """One quarantine row for everything set aside, or none."""
        row = combine("log", self.rejected)
        return [row] if row is not None else []


class LogStream:
    """One stream's classifier, and what of its counters has been exported to metrics.

    Every line and event passes the input boundary: a line longer than `max_line_chars` is not
    parsed, an event that cannot be made safe is not stored; both go to quarantine.
    """

    def __init__(
        self, metrics: Metrics, limits: LineLimits, *, coverage_key: str | None = None
    ) -> None:
        """`coverage_key` names a stream read without gaps (a followed file, a whole file):
        the log time it spans is recorded as log coverage."""
        self.coverage_key = coverage_key
        self.classifier = LogClassifier()
        self._metrics = metrics
        self._limits = limits
        self._seen = LogCounters()

    def feed(self, lines: list[str]) -> list[Event]:
        """The safe events of `lines`; what was set aside is in `feed_screened`."""
        return self.feed_screened(lines).events

    def feed_screened(self, lines: list[str]) -> Fed:
        limits = self._limits
        short, long = screen_lines(lines, limits.max_line_chars)
        before = self.classifier.last_time()
        events = self.classifier.feed_many(short)
        after = self.classifier.last_time()
        self._export()
        if long:
            self._metrics.log_lines.labels(result="malformed").inc(len(long))
        safe, unsafe = screen_events(events, Window(limits.clock(), limits.skew))
        parts = [
            (
                "line_too_long",
                f"a line of {len(line)} characters (at most {limits.max_line_chars})",
                line[: limits.max_line_chars].encode("utf-8", "backslashreplace"),
            )
            for line in long
        ]
        parts += [(u.reason, u.message, _event_json(u.event)) for u in unsafe]
        records, starts = self.classifier.take_records()
        window = Window(limits.clock(), limits.skew)
        kept = screen_records(records, window)
        coverage = None
        if self.coverage_key is not None and after is not None and after <= window.latest:
            first = before or min([r.occurred_at for r in kept] + [after])
            coverage = (self.coverage_key, first, after)
        return Fed(safe, parts, kept, starts, coverage)

    def _export(self) -> None:
        now, seen, metrics = self.classifier.counters, self._seen, self._metrics
        for result, count in now.lines_by_result.items():
            delta = count - seen.lines_by_result.get(result, 0)
            if delta:
                metrics.log_lines.labels(result=result).inc(delta)
        # failed logins and denials are counted by the store writer, once per stored event
        delta = now.anonymous_challenges - seen.anonymous_challenges
        if delta:
            metrics.anonymous_challenges.inc(delta)
        for (status_class, route), count in now.responses.items():
            delta = count - seen.responses.get((status_class, route), 0)
            if delta:
                metrics.registry_responses.labels(status_class=status_class, route=route).inc(delta)
        self._seen = dataclasses.replace(
            now,
            lines_by_result=dict(now.lines_by_result),
            responses=dict(now.responses),
        )


def _event_json(event: Event) -> bytes:
    try:
        return orjson.dumps(event.to_dict())
    except orjson.JSONEncodeError:  # a lone surrogate
        return repr(event).encode("utf-8", "backslashreplace")


def followed_key(path: str) -> str:
    """The coverage key of a followed file (the same across restarts: reading resumes at the
    checkpoint, so its coverage continues)."""
    digest = hashlib.blake2b(path.encode("utf-8", "surrogatepass"), digest_size=16)
    return "log:" + digest.hexdigest()


def chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def backfill(
    lines: Iterable[str],
    *,
    writer: StoreWriter,
    metrics: Metrics,
    limits: LineLimits | None = None,
    chunk_lines: int = 20_000,
    progress: Callable[[IngestTotals], None] | None = None,
    coverage_key: str | None = None,
) -> IngestTotals:
    """Ingest a whole stream (a file or stdin) once; safe to repeat (deduplicated).

    The log time it spans counts as covered (under `coverage_key`, by default one of its own).
    """
    key = coverage_key or f"log:backfill:{uuid.uuid4()}"
    stream = LogStream(metrics, limits or LineLimits(utc_now), coverage_key=key)
    totals = IngestTotals()
    for chunk in chunks(lines, chunk_lines):
        fed = stream.feed_screened(chunk)
        events = fed.events
        result = writer.submit(events, fed.quarantined, also=fed.save_records).result()
        totals.lines += len(chunk)
        totals.events += len(events)
        totals.stored += len(result.inserted)
        totals.duplicates += result.duplicates
        totals.quarantined += result.quarantined
        if progress is not None:
            progress(totals)
    return totals


class FollowJob:
    """Follows log files, committing each batch's events with the file's checkpoint.

    `run` is one run of the `follow-logs` job; `stopping` ends the wait of a batch the store
    cannot take yet (it is retried every second until then).
    """

    def __init__(
        self,
        follower: Follower,
        *,
        writer: StoreWriter,
        metrics: Metrics,
        limits: LineLimits,
        stopping: threading.Event | None = None,
    ) -> None:
        self._follower = follower
        self._writer = writer
        self._metrics = metrics
        self._limits = limits
        self._stopping = stopping if stopping is not None else threading.Event()
        self._streams: dict[str, LogStream] = {}
        self.totals = IngestTotals()

    def run(self) -> float | None:
        """Poll once; after lines were read, ask to run again at once (else the interval)."""
        return 0.0 if self.poll_once() else None

    def close(self) -> None:
        """Close the files; a later poll opens them again from the committed checkpoints."""
        self._follower.close()

    def poll_once(self) -> bool:
        """One poll; True when lines were read. Returns False early when stopping."""
        batches = self._follower.poll()
        for batch in batches:
            stream = self._streams.get(batch.path)
            if stream is None:
                stream = self._streams[batch.path] = LogStream(
                    self._metrics, self._limits, coverage_key=followed_key(batch.path)
                )
            fed = stream.feed_screened(list(batch.lines))
            result = self._commit(fed, batch.checkpoint)
            if result is None:
                return False
            self.totals.lines += len(batch.lines)
            self.totals.events += len(fed.events)
            self.totals.stored += len(result.inserted)
            self.totals.duplicates += result.duplicates
            self.totals.quarantined += result.quarantined
        return bool(batches)

    def _commit(self, fed: Fed, checkpoint: Checkpoint) -> CommitResult | None:
        """Commit until stored; only a store outage is retried (the writer salvages the rest)."""
        quarantined = fed.quarantined
        while True:
            try:
                future = self._writer.submit(
                    fed.events, quarantined, checkpoint=checkpoint, also=fed.save_records
                )
                return future.result()
            except StoreUnavailable:
                log.warning("log batch not stored; retrying", path=checkpoint.path)
                if self._stopping.wait(1.0):
                    return None


def following(
    paths: Sequence[str],
    *,
    start_at_end: bool,
    session_factory: SessionFactory,
    writer: StoreWriter,
    metrics: Metrics,
    limits: LineLimits,
    stopping: threading.Event | None = None,
) -> FollowJob:
    """The follower of the files matching `paths` (globs), checkpointed in the store."""
    follower = Follower(paths, StoreCheckpoints(session_factory), start_at_end=start_at_end)
    return FollowJob(follower, writer=writer, metrics=metrics, limits=limits, stopping=stopping)


def follow_logs_job(follow: FollowJob, *, poll_seconds: float) -> Job:
    """The `follow-logs` row of a job table: polls every `poll_seconds` (at once again after a
    poll that read lines), closes the files at stop."""
    return Job("follow-logs", follow.run, interval=poll_seconds, close=follow.close)
