"""Registry log lines → events in the store: backfill, following files, and shipped batches.

Each stream of lines (a file, stdin, one `POST /v1/logs`) has its own `LogClassifier`, which
joins the app lines of one request. Events go through the store writer like notifications,
so they are deduplicated on their deterministic `event_id`: ingesting the same file twice adds
nothing. A followed file's checkpoint is saved in the same transaction as the events its lines
produced, so a restart neither loses nor repeats lines.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

import structlog
from sqlalchemy.orm import Session

from monitor.errors import StoreUnavailable
from monitor.events import Event
from monitor.ingest.logclassify import LogClassifier, LogCounters
from monitor.ingest.tailer import Checkpoint, Follower
from monitor.observability.metrics import Metrics
from monitor.store.checkpoints import save_checkpoint
from monitor.store.writer import CommitResult, StoreWriter

log = structlog.get_logger("monitor.log_ingest")

Clock = Callable[[], datetime]


@dataclasses.dataclass
class IngestTotals:
    lines: int = 0
    events: int = 0
    stored: int = 0
    duplicates: int = 0


class LogStream:
    """One stream's classifier, and what of its counters has been exported to metrics."""

    def __init__(self, metrics: Metrics) -> None:
        self.classifier = LogClassifier()
        self._metrics = metrics
        self._seen = LogCounters()

    def feed(self, lines: list[str]) -> list[Event]:
        events = self.classifier.feed_many(lines)
        self._export()
        return events

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
    chunk_lines: int = 20_000,
    progress: Callable[[IngestTotals], None] | None = None,
) -> IngestTotals:
    """Ingest a whole stream (a file or stdin) once; safe to repeat (deduplicated)."""
    stream = LogStream(metrics)
    totals = IngestTotals()
    for chunk in chunks(lines, chunk_lines):
        events = stream.feed(chunk)
        result = writer.submit(events).result()
        totals.lines += len(chunk)
        totals.events += len(events)
        totals.stored += len(result.inserted)
        totals.duplicates += result.duplicates
        if progress is not None:
            progress(totals)
    return totals


class FollowJob:
    """Follows log files until stopped, committing events and checkpoints together."""

    def __init__(
        self,
        follower: Follower,
        *,
        writer: StoreWriter,
        metrics: Metrics,
        clock: Clock,
        poll_seconds: float,
    ) -> None:
        self._follower = follower
        self._writer = writer
        self._metrics = metrics
        self._clock = clock
        self._poll_seconds = poll_seconds
        self._streams: dict[str, LogStream] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.totals = IngestTotals()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="log-follower", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (it closes the files), or close them when polled without one."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        else:
            self._follower.close()

    def run(self) -> None:
        """Poll, ingest, commit; until `stop()`. Lines not committed are read again next run."""
        try:
            while not self._stop.is_set():
                if not self.poll_once():
                    self._stop.wait(self._poll_seconds)
        finally:
            self._follower.close()

    def poll_once(self) -> bool:
        """One poll; True when lines were read. Returns False early when stopping."""
        batches = self._follower.poll()
        for batch in batches:
            stream = self._streams.setdefault(batch.path, LogStream(self._metrics))
            events = stream.feed(list(batch.lines))
            result = self._commit(events, batch.checkpoint)
            if result is None:
                return False
            self._follower.commit(batch)
            self.totals.lines += len(batch.lines)
            self.totals.events += len(events)
            self.totals.stored += len(result.inserted)
            self.totals.duplicates += result.duplicates
        return bool(batches)

    def _commit(self, events: list[Event], checkpoint: Checkpoint) -> CommitResult | None:
        def save(session: Session) -> None:
            save_checkpoint(session, checkpoint, now=self._clock())

        while True:
            try:
                return self._writer.submit(events, also=save).result()
            except StoreUnavailable:
                log.warning("log batch not stored; retrying", path=checkpoint.path)
                if self._stop.wait(1.0):
                    return None
