"""`registry-monitor ingest-log`: backfill registry logs from files or stdin, or follow files."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import TextIO

from sqlalchemy.exc import SQLAlchemyError

from monitor.cli.errors import CommandError
from monitor.cli.session import prepare_directory, problem
from monitor.ingest.tailer import read_lines
from monitor.main import build_services
from monitor.pipeline.jobs import build_follow_job
from monitor.pipeline.log_ingest import IngestTotals, LineLimits, backfill, follow_logs_job
from monitor.pipeline.scheduler import JobRunner
from monitor.settings import Settings


class Progress:
    """A progress line on stderr: lines, lines/s, events; redrawn at most every 0.5 s."""

    def __init__(self, out: TextIO, *, enabled: bool) -> None:
        self._out = out
        self._enabled = enabled
        self._started = time.monotonic()
        self._last = 0.0

    def line(self, totals: IngestTotals) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        return (
            f"{totals.lines:,} lines  {totals.lines / elapsed:,.0f} lines/s  "
            f"{totals.events:,} events ({totals.stored:,} new, "
            f"{totals.duplicates:,} already stored)"
        )

    def __call__(self, totals: IngestTotals) -> None:
        now = time.monotonic()
        if self._enabled and now - self._last >= 0.5:
            self._last = now
            self._out.write("\r" + self.line(totals))
            self._out.flush()

    def done(self, totals: IngestTotals) -> None:
        if self._enabled:
            self._out.write("\r")
        self._out.write(self.line(totals) + "\n")


def _lines(paths: list[str]) -> Iterator[str]:
    for path in paths:
        if path == "-":
            yield from read_lines(sys.stdin.buffer)
            continue
        with Path(path).open("rb") as stream:
            yield from read_lines(stream)


def run(args: argparse.Namespace, settings: Settings) -> int:
    missing = [p for p in args.paths if p != "-" and not Path(p).is_file()]
    if missing and not args.follow:  # checked before the store is opened or created
        raise CommandError(f"no such file: {missing[0]} (give log files, or - for stdin)")
    prepare_directory(settings.database)
    try:
        services = build_services(settings)
    except SQLAlchemyError as exc:
        raise problem(exc, settings.database) from exc
    services.writer.start()
    progress = Progress(sys.stderr, enabled=not args.quiet and sys.stderr.isatty())
    try:
        if not args.follow:
            totals = backfill(
                _lines(list(args.paths)),
                writer=services.writer,
                metrics=services.metrics,
                limits=LineLimits.of(settings.input, services.clock),
                progress=progress,
            )
            progress.done(totals)
            return 0
        stopping = threading.Event()
        job = build_follow_job(services, list(args.paths), stopping=stopping)
        if job is None:
            raise CommandError("--follow needs at least one path")
        runner = JobRunner(
            [follow_logs_job(job, poll_seconds=services.settings.logs.poll_seconds)],
            session_factory=services.session_factory,
            holder=services.replica,
            clock=services.clock,
            metrics=services.metrics,
            stopping=stopping,
        )
        stopped = threading.Event()

        def interrupt(_signum: int, _frame: FrameType | None) -> None:
            stopped.set()

        with ExitStack() as stack:
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous = signal.signal(signum, interrupt)
                stack.callback(signal.signal, signum, previous)
            runner.start()
            while not stopped.wait(0.5):
                progress(job.totals)
            runner.stop()
        progress.done(job.totals)
        return 0
    finally:
        services.writer.stop()
        services.engine.dispose()
