"""The `registry-monitor` command line: one module per command group.

`parser` declares every command and option (cheap to import, so `--help` is fast); `app` parses,
loads the settings and runs the command's module, imported only when that command runs.
"""

from monitor.cli.app import main

__all__ = ["main"]
