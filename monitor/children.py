"""Child processes of `serve`: the intake applier's and the read API's.

Each first child is forked at start-up, once `serve` has built what it runs and before it has a
thread or an open store connection (a copy of a thread's held lock, or of an open SQLite
connection, would be unusable in the child), so that it shares the modules `serve` loaded and
the objects it built (copy on write) instead of importing them again.
A child started later (after one died) is a fresh interpreter (`subprocess.Popen`).
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any, Protocol


class Closable(Protocol):
    def close(self) -> None: ...


NICENESS = 10
"""The intake applier and the scheduled plan's process run at this niceness: below `serve`,
whose event loop answers the registry."""

READ_NICENESS = 15
"""The read process runs below the applier too: when both wait for the same core, the kernel
weighs the applier three times the read process (CFS weights 110 and 36), so the inbox
(bounded; full, it refuses the registry) drains first, and a read waits a little longer."""


class ChildProcess(Protocol):
    """What a supervisor needs of its child: `subprocess.Popen`'s, or a `ForkedChild`'s."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | Any: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


class ForkedChild:
    """A child this process forked (`os.fork`), with `Popen`'s ways to watch and end it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        with self._lock:
            if self.returncode is None:
                try:
                    done, status = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:  # reaped elsewhere
                    done, status = self.pid, 0
                if done:
                    self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(0.02)
        return code

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)


def fork_child(run: Callable[[], None], close: Iterable[Closable] = ()) -> ForkedChild | None:
    """Forks a child that closes what is in `close` (the parent's ends of its sockets, the
    listening socket, another child's channel), runs `run` and exits; None when this process
    already runs another thread (a copy would inherit its locks held)."""
    if threading.active_count() != 1:
        return None
    # Out of the collector, so neither process's collections write to the pages they share.
    gc.collect()
    gc.freeze()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child: runs, then exits, never returns
        code = 1
        try:
            for item in close:
                item.close()
            run()
            code = 0
        except BaseException:  # reported, then the child ends
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os._exit(code)
    return ForkedChild(pid)


def end_child(process: ChildProcess, timeout: float = 5.0) -> None:
    """Waits up to `timeout` for `process` to end, then kills it."""
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
