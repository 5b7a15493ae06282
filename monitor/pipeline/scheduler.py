"""What a job is, and the runner that `serve` runs the job table with (monitor.pipeline.jobs).

A `Job` is one long-running loop or scheduled job. The runner gives each interval job its own
thread and the cron jobs to one APScheduler `BackgroundScheduler` (UTC, `coalesce`, one
instance at a time, five minutes of misfire grace). A failed run is logged and counted, and
the job runs again at its next time. `stop()` lets a run in progress finish.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from monitor.clock import Clock
from monitor.observability.metrics import Metrics
from monitor.pipeline.leases import run_locked
from monitor.store.engine import SessionFactory

log = structlog.get_logger("monitor.pipeline.scheduler")

MISFIRE_GRACE_SECONDS = 300
STOP_TIMEOUT_SECONDS = 30.0


@dataclasses.dataclass(frozen=True)
class Job:
    """One row of the job table.

    `run` does one run. An `interval` job runs at start (or, with `first_after_interval`, one
    interval later) and then `interval` seconds after each run ends; a run may return another
    wait in seconds (0: run again at once). A `cron` job
    runs at the times of its crontab, in UTC. With a `lease`, a run happens only on the replica
    that takes the store lease named `name`; it is renewed while the run lasts and then kept
    until the next run is due (interval: `lease` after the run started; cron: one second
    before the next firing), so each firing runs once across replicas. `errors` is the
    operation label of `registry_monitor_store_errors_total` a failed run counts under.
    `close` releases what the job holds, once, after its last run.
    """

    name: str
    run: Callable[[], float | None]
    interval: float | None = None
    cron: str | None = None
    lease: timedelta | None = None
    errors: str | None = None
    close: Callable[[], None] | None = None
    first_after_interval: bool = False

    def __post_init__(self) -> None:
        if (self.interval is None) == (self.cron is None):
            raise ValueError(f"job {self.name}: give either an interval or a cron schedule")
        if self.interval is not None and self.interval <= 0:
            raise ValueError(f"job {self.name}: the interval must be positive")

    @property
    def schedule(self) -> str:
        """`every <n>s` or `cron <crontab>`."""
        if self.interval is not None:
            return f"every {self.interval:g}s"
        return f"cron {self.cron}"


def run_job(
    job: Job,
    *,
    session_factory: SessionFactory,
    holder: str,
    clock: Clock,
    next_fire: datetime | None = None,
) -> tuple[bool, float | None]:
    """One run of `job`, under its lease when it has one: (ran, the wait it asked for).

    `next_fire` is when a cron job fires next; the lease is kept until a second before it
    (without it, released at once).
    """
    if job.lease is None:
        return True, job.run()
    hold: datetime | None = None
    if next_fire is not None:
        hold = next_fire - timedelta(seconds=1)
    elif job.interval is not None:
        hold = clock() + job.lease
    return run_locked(
        session_factory,
        name=job.name,
        holder=holder,
        clock=clock,
        ttl=job.lease,
        work=job.run,
        hold_until=hold,
    )


class JobRunner:
    """Runs `jobs` from `start()` until `stop()`; `stopping` is set when they should stop."""

    def __init__(
        self,
        jobs: Sequence[Job],
        *,
        session_factory: SessionFactory,
        holder: str,
        clock: Clock,
        metrics: Metrics,
        stopping: threading.Event | None = None,
    ) -> None:
        self.jobs = tuple(jobs)
        self.stopping = stopping if stopping is not None else threading.Event()
        self._session_factory = session_factory
        self._holder = holder
        self._clock = clock
        self._metrics = metrics
        self._threads: list[threading.Thread] = []
        self._scheduler: BackgroundScheduler | None = None

    def start(self) -> None:
        crons = [job for job in self.jobs if job.cron is not None]
        if crons:
            self._scheduler = BackgroundScheduler(timezone="UTC")
            for job in crons:
                trigger = CronTrigger.from_crontab(str(job.cron), timezone="UTC")
                self._scheduler.add_job(
                    self._fire,
                    trigger,
                    args=(job, trigger),
                    id=job.name,
                    coalesce=True,
                    max_instances=1,
                    misfire_grace_time=MISFIRE_GRACE_SECONDS,
                )
            self._scheduler.start()
        for job in self.jobs:
            if job.interval is not None:
                thread = threading.Thread(
                    target=self._loop,
                    args=(job, job.interval),
                    name=f"job-{job.name}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Stop every job; a run in progress finishes (each waited for up to `timeout`)."""
        self.stopping.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        for thread in self._threads:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("job still running at stop", thread=thread.name)
        self._threads.clear()
        for job in self.jobs:
            if job.close is not None:
                job.close()

    def _loop(self, job: Job, interval: float) -> None:
        wait = interval if job.first_after_interval else 0.0
        while not self.stopping.wait(max(wait, 0.0)):
            wait = interval
            try:
                _, asked = self._run(job)
                if asked is not None:
                    wait = asked
            except Exception as exc:
                self._failed(job, exc)

    def _fire(self, job: Job, trigger: CronTrigger) -> None:
        try:
            self._run(job, next_fire=trigger.get_next_fire_time(None, self._clock()))
        except Exception as exc:
            self._failed(job, exc)

    def _run(self, job: Job, next_fire: datetime | None = None) -> tuple[bool, float | None]:
        return run_job(
            job,
            session_factory=self._session_factory,
            holder=self._holder,
            clock=self._clock,
            next_fire=next_fire,
        )

    def _failed(self, job: Job, exc: Exception) -> None:
        if job.errors is not None:
            self._metrics.store_errors.labels(operation=job.errors).inc()
        log.warning("job failed", job=job.name, error=type(exc).__name__, detail=str(exc)[:300])
