"""Detection passes: stored events → detector → alerts and outbox rows.

A pass reads the detector's saved state and the events after its cursor (only those received at
least `settle` ago, so a lower id still committing is not skipped), `SLICE_EVENTS` at a time,
and judges them (`Detector.judge`) outside any transaction, so judging a large batch never
holds the store's write lock (SQLite has one for the whole file, which intake needs for every
commit). It then writes the outcome in one short transaction: it locks the detector's row and,
only if the cursor and state are still the ones it read (no other replica ran a pass
meanwhile), saves the new state and cursor with the alerts and the outbox rows they cause,
each kind in a few statements; otherwise it writes nothing.

A detection job (`detection_job`) keeps its state and cursor between passes (`Progress`) and
saves them (the parts that changed, `pipeline.detector_saves`) only with a pass that changes an
alert, or `SAVE_SECONDS` after the last save: its next pass checks the row's cursor and time.

A restart therefore resumes with the same open windows. Shadow alerts are stored but never
queued for Slack. A firing alert resolves once its incident has ended and nothing was seen for
the rule's window and cooldown (`quiet_period`).

`catch_up` runs passes back to back while they come back full, doubling the batch up to a cap
(`BATCH_CAP`, `BATCH_CAP_APART` in the applier's process), so a backlog (a log backfill, a
restart after an outage) is judged as fast as detection runs rather than one small batch per
interval.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from monitor.alerting.outbox import Kind
from monitor.alerts import Alert, Digest, Mode
from monitor.clock import Clock
from monitor.detect.config import load_detect_config
from monitor.detect.engine import Detector
from monitor.detect.findings import coalesce
from monitor.detect.roles import load_roles
from monitor.detect.state import DetectorState
from monitor.observability.metrics import Metrics
from monitor.pipeline.detector_saves import Digests, load_state, save_state
from monitor.pipeline.scheduler import Job
from monitor.runtime import Services
from monitor.settings import DetectSettings
from monitor.store.alerts import evidence_rows_many, resolve_quiet, upsert_alerts
from monitor.store.detector_state import (
    DEFAULT_DETECTOR,
    SavedDetector,
    detector_position,
    events_after,
    lock_detector,
    lock_detector_position,
)
from monitor.store.engine import SessionFactory
from monitor.store.outbox import enqueue_many

DETECTOR_NAME = DEFAULT_DETECTOR
BATCH_MAX = 1000
"""Events in one pass when detection keeps up (and the first pass of a catch-up)."""
BATCH_CAP = 4_000
"""Most events in one pass while catching up, where its outcome is written in a transaction of
the intake writer: catching up on 100k events of the `bench.scale` history, passes of 32,000
stalled intake for up to 9 s and took `serve` to 240 MiB; passes of 4,000 caught up within 40 s,
with stalls under 0.6 s and 160 MiB."""
BATCH_CAP_APART = 16_000
"""The cap where passes run in the intake applier's process (`serve`'s default), apart from the
answering one: a pass there delays only the applying of bodies already answered. Every pass has
a cost of its own (its transaction, the alerts it upserts, the state saved with them); judging
a 200k backlog of the 10M-event store, passes of 16,000 judged 11,434 (SQLite) and 10,049
(PostgreSQL) events a second against 9,696 and 7,036 with passes of 4,000."""

SLICE_EVENTS = 1_000
"""Events a pass reads and judges at a time, each slice let go before the next is read (the
sweep and the save once a pass). What slices allocate stays with the process: pymalloc keeps a
1 MiB arena while one object made meanwhile lives in it. Over 100k events of `bench.scale`'s
stores one process grew by 10.8-12.1 MiB with slices of 1,000, 15.8-17.0 with 4,000."""

Transact = Callable[[Callable[[Session], "DetectionReport"]], "DetectionReport"]


@dataclasses.dataclass(frozen=True, slots=True)
class DetectionReport:
    """What one pass did. `superseded`: another pass moved the detector first; nothing was
    written and the events are judged by the next pass."""

    processed: int
    cursor: int
    newest_occurred_at: datetime | None
    raised: tuple[Alert, ...]
    repeated: tuple[Alert, ...]
    resolved: tuple[Alert, ...]
    queued: int
    superseded: bool = False
    dropped: int = 0  # windows and incidents dropped beyond the cap (`detect.state.bound`)


def quiet_period(detector: Detector, rule: str) -> timedelta:
    """How long a rule must stay silent before its alert resolves: max(window, cooldown)."""
    config = detector.config.rules.get(rule)
    if config is None:
        return timedelta(0)
    return max(config.window, config.cooldown)


def _hits(found: Alert, counts: dict[str, int]) -> int:
    """Occurrences detection's alert adds to its stored alert (`counts`: the count of each
    incident open before the pass)."""
    before = counts.get(found.fingerprint)
    if found.repeat and before is not None:
        return max(found.count - before, 0)
    return found.count


def _judge_slices(
    session: Session,
    detector: Detector,
    state: DetectorState,
    start: int,
    *,
    now: datetime,
    settle: timedelta,
    batch_max: int,
) -> tuple[list[Alert], int, int, datetime | None, int]:
    """Reads up to `batch_max` events after `start`, `SLICE_EVENTS` at a time, each slice
    judged onto `state` and let go before the next is read; then the sweep at the newest
    event's time (at most `now`). Returns the alerts (one per incident), the events judged,
    the last one's id, the newest `occurred_at` and what the sweep dropped beyond the cap."""
    found: list[Alert] = []
    processed, cursor, newest = 0, start, None
    while processed < batch_max:
        limit = min(SLICE_EVENTS, batch_max - processed)
        stored = events_after(session, cursor, received_before=now - settle, limit=limit)
        session.close()  # no read transaction held while judging; the next slice begins one
        if not stored:
            break
        events = [s.event for s in stored]
        found = coalesce(found + detector.judge(events, state, now))
        processed, cursor = processed + len(stored), stored[-1].id
        latest = max(e.occurred_at for e in events)
        newest = latest if newest is None else max(newest, latest)
        if len(stored) < limit:
            break
        del stored, events
    dropped = detector.settle(state, min(now, newest) if newest is not None else now)
    return found, processed, cursor, newest, dropped


def _queue(session: Session, queued: list[tuple[Kind, Alert]], now: datetime) -> None:
    rows = evidence_rows_many(session, [alert.evidence.event_ids for _, alert in queued])
    messages: list[tuple[Kind, Alert | Digest]] = [
        (kind, alert.with_rows(sample)) for (kind, alert), sample in zip(queued, rows, strict=True)
    ]
    enqueue_many(session, messages, now=now)


@dataclasses.dataclass(slots=True)
class Progress:
    """A detection job's state and cursor between two saves, kept by the process that runs its
    passes (see `SAVE_SECONDS`). `row` is the detector row's (cursor, updated_at) as this job
    last saved or read it: while the row still holds it, no other replica ran a pass, and the
    next pass goes on from `state` and `cursor` instead of reading and parsing the saved state
    (1.4 MB of JSON on the `bench.scale` store). `parts`: the digests of the parts saved."""

    state: DetectorState | None = None
    cursor: int = 0
    row: tuple[int, datetime] | None = None
    parts: Digests = dataclasses.field(default_factory=dict)

    def forget(self) -> None:
        self.state, self.row, self.parts = None, None, {}


SAVE_SECONDS = 30.0
"""Longest a detection job keeps its progress unsaved while its passes change no alert (a pass
that changes one saves: the alerts and the state that made them commit together), so a restart
re-judges at most this much of quiet traffic, from a state that raised every alert stored."""


def detect_pass(
    session_factory: SessionFactory,
    detector: Detector,
    *,
    now: datetime,
    settle: timedelta,
    batch_max: int = BATCH_MAX,
    name: str = DETECTOR_NAME,
    transact: Transact | None = None,
    progress: Progress | None = None,
    save_every: timedelta = timedelta(0),
) -> DetectionReport:
    """One detection pass at `now`. The outcome is written by `transact` when given (serve
    passes the intake writer's, so the short write takes turns with notifications), else in a
    transaction of its own. With `progress` (a job's own), the pass goes on from it while the
    detector's row is unchanged, and saves the state and cursor only when it changes an alert
    or the row was saved `save_every` ago or more; without, it reads and saves them every
    pass."""
    with session_factory() as session:
        if (
            progress is not None
            and progress.state is not None
            and progress.row is not None
            and progress.row == detector_position(session, name)
        ):
            saved = SavedDetector(None, *progress.row)
            state, start, parts = progress.state, progress.cursor, progress.parts
        else:
            saved, state, parts = load_state(session, name, now=now)
            start = saved.cursor
        # Judged in place: `state` is this pass's own (parsed now, or the job's progress,
        # forgotten if the pass fails or is superseded); the counts are all `_hits` needs.
        counts = {key: incident.count for key, incident in state.incidents.items()}
        try:
            found_alerts, processed, cursor, newest, dropped = _judge_slices(
                session, detector, state, start, now=now, settle=settle, batch_max=batch_max
            )
        except BaseException:
            if progress is not None:
                progress.forget()
            raise
    at = min(now, newest) if newest is not None else now
    quiet = {rule: quiet_period(detector, rule) for rule in detector.config.rules}
    written: list[tuple[int, datetime, Digests]] = []

    def moved(session: Session) -> int | None:
        """The row's cursor when another pass saved it since this one read it, else None."""
        if progress is None:
            current = lock_detector(session, name, now=now)
            return None if current == saved else current.cursor
        position = lock_detector_position(session, name, now=now)
        return None if position == (saved.cursor, saved.updated_at) else position[0]

    def write(session: Session) -> DetectionReport:
        written.clear()
        if (other := moved(session)) is not None:
            return DetectionReport(0, other, None, (), (), (), 0, superseded=True)
        upserted = upsert_alerts(session, [(found, _hits(found, counts)) for found in found_alerts])
        raised: list[Alert] = []
        repeated: list[Alert] = []
        queue: list[tuple[Kind, Alert]] = []
        for found, done in zip(found_alerts, upserted, strict=True):
            fresh = done.created or done.refired
            (raised if fresh else repeated).append(done.alert)
            if found.mode is not Mode.SHADOW:
                queue.append((Kind.NEW if fresh else Kind.REPEAT, done.alert))
        resolved = resolve_quiet(session, quiet=quiet, ongoing=state.incidents, at=at)
        queue.extend((Kind.RESOLVE, alert) for alert in resolved if alert.mode is not Mode.SHADOW)
        _queue(session, queue, now)
        if progress is None or found_alerts or resolved or now - saved.updated_at >= save_every:
            saving = save_state(session, name, state, cursor=cursor, now=now, saved=parts)
            written.append((cursor, now, saving))
        return DetectionReport(
            processed=processed,
            cursor=cursor,
            newest_occurred_at=newest,
            raised=tuple(raised),
            repeated=tuple(repeated),
            resolved=tuple(resolved),
            queued=len(queue),
            dropped=dropped,
        )

    try:
        if transact is not None:
            report = transact(write)
        else:
            with session_factory() as session, session.begin():
                report = write(session)
    except BaseException:
        if progress is not None:
            progress.forget()
        raise
    if progress is not None:
        if report.superseded:
            progress.forget()
        else:
            progress.state, progress.cursor = state, cursor
            row_cursor, row_time, progress.parts = (
                written[-1] if written else (saved.cursor, saved.updated_at, parts)
            )
            progress.row = (row_cursor, row_time)
    return report


@dataclasses.dataclass(frozen=True, slots=True)
class CatchUpReport:
    """Passes run by `catch_up`; `behind` when it stopped at its time budget with more to do."""

    passes: int
    processed: int
    behind: bool


def catch_up(
    session_factory: SessionFactory,
    detector: Detector,
    *,
    clock: Clock,
    settle: timedelta,
    budget_seconds: float = 30.0,
    on_pass: Callable[[DetectionReport, datetime], None] | None = None,
    name: str = DETECTOR_NAME,
    transact: Transact | None = None,
    progress: Progress | None = None,
    save_every: timedelta = timedelta(0),
    batch_cap: int = BATCH_CAP,
) -> CatchUpReport:
    """Passes until one comes back short of its batch (caught up) or `budget_seconds` ran out.
    The batch doubles after each full pass, from BATCH_MAX up to `batch_cap`."""
    started = time.monotonic()
    batch, passes, processed = BATCH_MAX, 0, 0
    while True:
        now = clock()
        report = detect_pass(
            session_factory,
            detector,
            now=now,
            settle=settle,
            batch_max=batch,
            name=name,
            transact=transact,
            progress=progress,
            save_every=save_every,
        )
        passes += 1
        processed += report.processed
        if on_pass is not None:
            on_pass(report, now)
        if report.processed < batch and not report.superseded:
            return CatchUpReport(passes, processed, behind=False)
        if time.monotonic() - started >= budget_seconds:
            return CatchUpReport(passes, processed, behind=True)
        if not report.superseded:
            batch = min(batch * 2, batch_cap)


def record_detection(metrics: Metrics, report: DetectionReport, now: datetime) -> None:
    """Count raised alerts and dropped windows, and set the detection lag."""
    metrics.detect_dropped.inc(report.dropped)
    for alert in report.raised:
        metrics.alerts.labels(
            rule=alert.rule, severity=alert.severity.value, mode=alert.mode.value
        ).inc()
    if report.newest_occurred_at is not None:
        metrics.detect_lag.set(max((now - report.newest_occurred_at).total_seconds(), 0.0))


def detect_once(services: Services) -> None:
    """One detection pass at the services' clock, counted in the metrics."""
    now = services.clock()
    report = detect_pass(
        services.session_factory,
        services.detector,
        now=now,
        settle=timedelta(seconds=services.settings.detect.settle_seconds),
        transact=services.writer.transact,
    )
    record_detection(services.metrics, report, now)


def build_detector(settings: DetectSettings) -> Detector:
    """The detector the `detect` settings describe (rules and roles files read now)."""
    config = load_detect_config(settings.rules_file, allow_cidrs=settings.allow_cidrs)
    return Detector(config, load_roles(settings.roles_file))


def detection_job(
    settings: DetectSettings,
    *,
    session_factory: SessionFactory,
    detector: Detector,
    clock: Clock,
    metrics: Metrics,
    transact: Transact | None,
    batch_cap: int = BATCH_CAP,
) -> Job:
    """The `detect` row of a job table: passes every `interval_seconds` once caught up, back to
    back (at most 30 s each run, passes of at most `batch_cap` events) while behind a backlog.
    `serve` runs it in the intake applier's process when that is apart (with
    `BATCH_CAP_APART`), else on a thread of its own."""
    settle = timedelta(seconds=settings.settle_seconds)
    progress = Progress()

    def run() -> float | None:
        report = catch_up(
            session_factory,
            detector,
            clock=clock,
            settle=settle,
            on_pass=lambda pass_report, now: record_detection(metrics, pass_report, now),
            transact=transact,
            progress=progress,
            save_every=timedelta(seconds=SAVE_SECONDS),
            batch_cap=batch_cap,
        )
        return 0.0 if report.behind else None

    return Job("detect", run, interval=settings.interval_seconds, errors="detect")
