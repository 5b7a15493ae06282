"""The error a command raises when it cannot run: the problem and the fix, in one line."""

from __future__ import annotations

from monitor.errors import MonitorError


class CommandError(MonitorError):
    """The store, a file or an argument is not usable; the message says how to fix it.

    `status` is the exit status: 2 (could not run) unless the command says otherwise.
    """

    code = "command_error"

    def __init__(self, message: str, *, status: int = 2) -> None:
        super().__init__(message)
        self.status = status
