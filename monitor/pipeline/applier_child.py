"""The intake applier's child process (see applier_process.py): `python -m
monitor.pipeline.applier_child FD`, FD its end of the socket pair to the answering process.

It imports what applying needs (the store, the parsers and the writer) and, when `serve` asks
for it, runs the detection passes (`ApplierConfig.detect`), follows the registry's log files
(`ApplierConfig.logs`), expires raw events (`ApplierConfig.retention`) and reconciles the log's
requests with the notifications (`ApplierConfig.reconcile`) too, so that neither judging
events, parsing a log's lines, expiry batches nor rebuilding lost events takes the answering
process's interpreter or a write lock of its own."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from monitor.allocator import FreeMemoryRelease, tune_allocator
from monitor.children import NICENESS
from monitor.clock import utc_now
from monitor.observability.logs import configure_logging
from monitor.observability.metrics import Metrics
from monitor.observability.relay import Op, relay_metrics, take
from monitor.pacer import Pacer
from monitor.pipeline.applier import IntakeApplier
from monitor.pipeline.applier_process import ApplierConfig
from monitor.pipeline.detection import BATCH_CAP_APART, build_detector, detection_job
from monitor.pipeline.housekeeping import expire_job
from monitor.pipeline.log_ingest import LineLimits, follow_logs_job, following
from monitor.pipeline.reconcile import reconcile_job, registry_tag_digest
from monitor.pipeline.scheduler import Job, JobRunner
from monitor.store.engine import SessionFactory, make_engine, make_session_factory
from monitor.store.inbox import InboxItem
from monitor.store.inboxes import make_inbox
from monitor.store.writer import StoreWriter

FLUSH_SECONDS = 1.0  # metric updates made between batches reach the parent this often


def main(fd: int) -> None:
    tune_allocator()  # as in `serve`: it parses bodies of up to a MiB
    run(Connection(fd))


def run(connection: Connection) -> None:
    """Applies the inbox until told to stop or until the answering process is gone."""
    # Ctrl-C in a terminal reaches the whole process group: the parent stops its child.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        config: ApplierConfig = connection.recv()
    except (EOFError, OSError):
        return  # forked at start-up, and `serve` ended before starting its applier
    # Answers first: when the two processes want the same core, the kernel runs the answering
    # one; the applier catches up in the gaps (the inbox holds what waits).
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    configure_logging(config.logging)
    ops: deque[Op] = deque()
    metrics = relay_metrics(ops)
    send_lock = threading.Lock()

    def send(message: tuple[Any, ...]) -> None:
        with send_lock:
            connection.send(message)

    def report(items: list[InboxItem]) -> None:
        send(("applied", len(items), max(item.id for item in items), take(ops)))

    engine = make_engine(config.database)
    session_factory = make_session_factory(engine)
    writer = StoreWriter(
        session_factory,
        metrics=metrics,
        clock=utc_now,
        batch_max=config.batch_max,
        quarantine_max_rows=config.quarantine_max_rows,
    )
    inbox = make_inbox(
        engine,
        session_factory,
        synchronous=config.database.sqlite_synchronous,
        receiver=config.receiver,
        inbox_file=config.inbox_file,
    )
    applier = IntakeApplier(
        inbox,
        writer,
        metrics=metrics,
        clock=utc_now,
        skew=config.skew,
        max_events=config.max_events,
        on_applied=report,
    )
    stopping = threading.Event()
    jobs = child_jobs(
        config,
        session_factory=session_factory,
        writer=writer,
        metrics=metrics,
        stopping=stopping,
        intake_behind=applier.behind,
    )
    runner = None
    if jobs:
        runner = JobRunner(
            jobs,
            session_factory=session_factory,
            holder=config.receiver,
            clock=utc_now,
            metrics=metrics,
            stopping=stopping,
        )
    # While `serve` answers, this process leaves its core every half millisecond: the
    # answers' wake-ups are not queued behind its batches (monitor/pacer.py).
    pacer = Pacer()
    pacer.start()
    writer.start()
    inbox.open_applying()
    applier.start()
    if runner is not None:
        runner.start()
    release = FreeMemoryRelease()
    try:
        while True:
            if connection.poll(FLUSH_SECONDS):
                message = connection.recv()
                if message == "stop":
                    break
                pacer.answering()
                applier.wake()
            if ops:
                send(("metrics", take(ops)))
            release.release()  # what the batches and detection passes freed
    except (EOFError, OSError):
        pass  # the parent is gone: stop as asked
    finally:
        if runner is not None:
            # a pass cut short is rolled back, a log batch not committed is read again: the
            # next process resumes both from the store
            runner.stop(timeout=2.0)
        applier.stop()
        pacer.stop()
        inbox.close()
        writer.stop()
        engine.dispose()
        with contextlib.suppress(OSError, ValueError):
            send(("metrics", take(ops)))
            send(("stopped",))


def child_jobs(
    config: ApplierConfig,
    *,
    session_factory: SessionFactory,
    writer: StoreWriter,
    metrics: Metrics,
    stopping: threading.Event,
    intake_behind: Callable[[], bool] | None = None,
) -> list[Job]:
    """The jobs of `serve`'s table that `config` hands to this process, built as `serve` builds
    them but on this process's store writer (detection with the larger passes of
    `BATCH_CAP_APART`); `stopping` ends the ones that run long."""
    jobs: list[Job] = []
    if config.detect is not None:
        jobs.append(
            detection_job(
                config.detect,
                session_factory=session_factory,
                detector=build_detector(config.detect),
                clock=utc_now,
                metrics=metrics,
                transact=writer.transact,
                batch_cap=BATCH_CAP_APART,
            )
        )
    if config.logs is not None:
        follow = following(
            config.logs.paths,
            start_at_end=config.logs.start_at_end,
            session_factory=session_factory,
            writer=writer,
            metrics=metrics,
            limits=LineLimits(utc_now, config.skew, config.max_line_chars),
            stopping=stopping,
        )
        jobs.append(follow_logs_job(follow, poll_seconds=config.logs.poll_seconds))
    if config.retention is not None:
        jobs.append(
            expire_job(
                writer.transact,
                config.retention,
                clock=utc_now,
                stopping=stopping,
                intake_behind=intake_behind,
            )
        )
    if config.reconcile is not None:
        jobs.append(
            reconcile_job(
                session_factory,
                writer,
                clock=utc_now,
                settle_seconds=config.reconcile.settle_seconds,
                interval_seconds=config.reconcile.interval_seconds,
                metrics=metrics,
                open_lookup=None if config.cleanup is None else registry_tag_digest(config.cleanup),
            )
        )
    return jobs


if __name__ == "__main__":
    main(int(sys.argv[1]))
