"""The intake applier in a process of its own.

Parsing bodies and writing their events is pure Python: on the thread of the answering
process it takes the interpreter's lock from the event loop for most of a millisecond per
body, which at the registry's serial pace is most of what an answer costs and sets its slowest
answers (a thread waiting for the lock waits up to the switch interval). In a child process it
runs on the other core and the answering process only appends.

The first child is forked from `serve` at start-up (`fork_applier`, monitor/children.py), once
`serve` has built its services and before it has a thread or an open store connection: it
shares the pages of those modules and objects with `serve` (copy on write) instead of importing
SQLAlchemy and the store again. A child started later (after one died) cannot be forked,
`serve` having threads and connections by then: it is a fresh interpreter
(`python -m monitor.pipeline.applier_child`). Either builds its own engine, store writer and
the applying side of the inbox, and runs `IntakeApplier` exactly as in-process. Over one socket
pair (pickled messages, `multiprocessing.connection` framing), after the `ApplierConfig`:

- parent → child: `"wake"` (bodies were appended; at most one outstanding, so sending from the
  event loop never blocks on a full pipe) and `"stop"`;
- child → parent: `("applied", count, last_id, ops)` after each committed batch, with the metric
  updates it made (monitor/observability/relay.py), `("metrics", ops)` for updates between
  batches (a failed commit), and `("stopped",)`.

If the child dies, the bodies stay in the inbox; the parent counts a store error
(`operation="apply"`), logs it and starts another after a pause.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path

import structlog

from monitor.children import ChildProcess, Closable, ForkedChild, end_child, fork_child
from monitor.observability.metrics import Metrics
from monitor.observability.relay import replay
from monitor.settings.sections import (
    CleanupSettings,
    DatabaseSettings,
    DetectSettings,
    LoggingSettings,
    LogsSettings,
    ReconcileSettings,
    RetentionSettings,
)
from monitor.store.inbox import Inbox

log = structlog.get_logger("monitor.pipeline.applier_process")

RESTART_SECONDS = (1.0, 2.0, 5.0, 10.0)  # pauses before starting another child, in turn


@dataclasses.dataclass(frozen=True)
class ApplierConfig:
    """What the child needs to build its side (picklable: it crosses the process boundary).
    Each job's settings are set only when the child is to run that job
    (`monitor.main.applier_config` decides)."""

    database: DatabaseSettings
    logging: LoggingSettings
    receiver: str  # the replica whose bodies it applies (PostgreSQL's inbox)
    inbox_file: Path | None  # `notifications.inbox_file`
    batch_max: int
    quarantine_max_rows: int
    skew: timedelta
    max_events: int
    detect: DetectSettings | None = None
    """When set, the child also runs the detection passes (`serve`'s `detect` job)."""
    logs: LogsSettings | None = None
    """When set, the child also follows `logs.paths` (`serve`'s `follow-logs`
    job): parsing a log's lines is pure Python, which on a thread of the answering process
    takes the interpreter from the event loop for as long as a backfill lasts."""
    max_line_chars: int = 65_536
    """Log lines longer than this are quarantined unparsed (`input.max_line_chars`)."""
    reconcile: ReconcileSettings | None = None
    """When set, the child also runs the reconcile passes (`serve`'s
    `reconcile-events` job), which read the requests of the log and rebuild lost events."""
    cleanup: CleanupSettings | None = None
    """Where reconcile asks the registry for a tag's digest (`cleanup.registry_url` and its
    auth)."""
    retention: RetentionSettings | None = None
    """When set (`serve` sets it on SQLite), the child also expires raw events
    (`serve`'s `expire-events` job) through its writer, the one that applies the inbox: no
    second process then takes the SQLite store's write lock for expiry batches, and the
    batches wait behind the bodies to apply instead of beside them."""


@dataclasses.dataclass
class ForkedApplier:
    """The applier's first child, forked at start-up and waiting for its `ApplierConfig`."""

    process: ForkedChild
    connection: Connection

    def close(self) -> None:
        """Ends the child if no applier took it (it stops when its socket closes)."""
        self.connection.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)


def fork_applier(close: Iterable[Closable] = ()) -> ForkedApplier | None:
    """Forks the applier's first child from this process (`monitor.children.fork_child`), or
    None when this process already runs another thread. Call it with no store connection open:
    SQLite must never see a connection carried across a fork. What is in `close` (the listening
    socket) is closed in the child."""
    child_module = importlib.import_module("monitor.pipeline.applier_child")
    ours, theirs = socket.socketpair()
    process = fork_child(lambda: child_module.run(Connection(theirs.detach())), [ours, *close])
    theirs.close()
    if process is None:
        ours.close()
        return None
    return ForkedApplier(process, Connection(ours.detach()))


class ApplierProcess:
    """Same interface as `IntakeApplier`; the work happens in a child process: the one
    `adopt` was given (forked at start-up), if any, then fresh interpreters."""

    def __init__(self, config: ApplierConfig, inbox: Inbox, *, metrics: Metrics) -> None:
        self._config = config
        self._inbox = inbox
        self._metrics = metrics
        self._first: ForkedApplier | None = None
        self._send_lock = threading.Lock()
        self._connection: Connection | None = None
        self._process: ChildProcess | None = None
        self._wake_sent = False
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    def runs(self, job: str) -> bool:
        config = self._config
        handed = {
            "detect": config.detect,
            "follow-logs": config.logs,
            "reconcile-events": config.reconcile,
            "expire-events": config.retention,
        }
        return handed.get(job) is not None

    @property
    def pid(self) -> int | None:
        """The child's process id while one runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def adopt(self, first: ForkedApplier) -> None:
        """The child forked at start-up (`fork_applier`): the first to run, once started."""
        self._first = first

    def start(self) -> None:
        if self._supervisor is None:
            self._stopping.clear()
            self._supervisor = threading.Thread(
                target=self._supervise, name="intake-applier-process", daemon=True
            )
            self._supervisor.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._supervisor is None:
            return
        self.drain(timeout)
        self._stopping.set()
        self._send("stop")
        self._supervisor.join(timeout)
        self._supervisor = None
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)

    def wake(self) -> None:
        if not self._wake_sent:
            self._wake_sent = True
            self._send("wake")

    def drain(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while self._inbox.backlog() > 0:
            if time.monotonic() >= deadline or self._supervisor is None:
                return False
            time.sleep(0.02)
        return True

    def _send(self, message: str) -> None:
        connection = self._connection
        if connection is None:
            return  # the child being started gets a "wake" first thing
        with self._send_lock, contextlib.suppress(OSError, ValueError):
            connection.send(message)

    def _supervise(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            ended_cleanly = self._run_child()
            if ended_cleanly or self._stopping.is_set():
                return
            self._metrics.store_errors.labels(operation="apply").inc()
            failures = 1 if time.monotonic() - started > 60 else failures + 1
            pause = RESTART_SECONDS[min(failures, len(RESTART_SECONDS)) - 1]
            log.error(
                "intake applier process ended; starting another",
                exitcode=self._process.returncode if self._process is not None else None,
                pause_seconds=pause,
            )
            self._stopping.wait(pause)

    def _run_child(self) -> bool:
        """Starts a child and relays its reports until it ends; True when it stopped as asked."""
        process, ours = self._start_child()
        self._process = process
        try:
            ours.send(self._config)
        except OSError:
            ours.close()
            process.wait()
            return False
        self._connection = ours
        self._wake_sent = True
        self._send("wake")  # bodies waiting from before (a restart, an earlier child)
        try:
            while True:
                message = ours.recv()
                kind = message[0]
                if kind == "applied":
                    _, count, last_id, ops = message
                    self._inbox.note_applied(count, last_id)
                    replay(self._metrics, ops)
                    self._rewake()
                elif kind == "metrics":
                    replay(self._metrics, message[1])
                    self._rewake()
                elif kind == "stopped":
                    return True
        except (EOFError, OSError):
            return False
        finally:
            self._connection = None
            with contextlib.suppress(OSError):
                ours.close()
            end_child(process, 10)

    def _start_child(self) -> tuple[ChildProcess, Connection]:
        first, self._first = self._first, None
        if first is not None:
            return first.process, first.connection
        mine, theirs = socket.socketpair()
        with theirs:
            process = subprocess.Popen(
                [sys.executable, "-m", "monitor.pipeline.applier_child", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
            )
        return process, Connection(mine.detach())

    def _rewake(self) -> None:
        """After a report: the outstanding wake was taken; wake again if bodies came since."""
        self._wake_sent = False
        if self._inbox.backlog() > 0:
            self.wake()
