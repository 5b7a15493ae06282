"""`registry-monitor`: parse, load the settings, run the command, turn failures into one line.

Exit status: 0 done, 1 the command ran and something it did failed (a delete, a registry
call), 2 it could not run (bad arguments or settings, no usable store, output closed).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from monitor.cli.errors import CommandError
from monitor.cli.parser import build_parser
from monitor.errors import ConfigError, MonitorError, NotFound, ParseError
from monitor.settings import LoggingSettings, Settings, load_settings, unknown_variables

Handler = Callable[[argparse.Namespace, Settings], int]
PROG = "registry-monitor"
# what commands other than `serve` log unless logging is configured: warnings, readable
CLI_LOGGING = LoggingSettings(level="warning", format="console")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    env = dict(os.environ if environ is None else environ)
    try:
        status = _run(args, env)
        if sys.stdout is not None:  # None when started with stdout closed
            sys.stdout.flush()
    except BrokenPipeError:
        # the reader went away (`| head`): write nothing more, and do not fail again at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return _fail("the output was closed before it ended (broken pipe): use --limit "
                     "to print fewer rows")  # fmt: skip
    except KeyboardInterrupt:
        return _fail("interrupted", status=130)
    except ConfigError as exc:
        return _fail(f"invalid setting {exc.key}: {exc.reason}")
    except CommandError as exc:
        return _fail(exc.message, status=exc.status)
    except (ParseError, NotFound) as exc:
        return _fail(exc.message)
    except MonitorError as exc:
        return _fail(exc.message, status=1)
    return status


def _fail(message: str, *, status: int = 2) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return status


def _run(args: argparse.Namespace, env: dict[str, str]) -> int:
    config = args.config or (
        Path(env["REGISTRY_MONITOR_CONFIG"]) if env.get("REGISTRY_MONITOR_CONFIG") else None
    )
    settings = load_settings(env, config)
    # deliberately lazy: each command imports only what it needs (start-up time)
    from monitor.observability.logs import configure_logging

    configure_logging(logging_for(args.command, settings))
    warn_unknown_variables(env)
    module, function = args.handler.split(":")
    handler: Handler = getattr(importlib.import_module(f"monitor.cli.{module}"), function)
    return handler(args, settings)


def warn_unknown_variables(env: Mapping[str, str]) -> None:
    """A warning for each REGISTRY_MONITOR_* variable no setting reads, naming the closest."""
    # deliberately lazy: `--help` and `--version` never load structlog (start-up time)
    import structlog

    log = structlog.get_logger("monitor.cli")
    for name, closest in unknown_variables(env):
        log.warning("unknown environment variable ignored", variable=name, did_you_mean=closest)


def logging_for(command: str, settings: Settings) -> LoggingSettings:
    """`serve` logs as configured; other commands log warnings and up, readable, unless the
    logging settings were changed from their defaults."""
    if command == "serve" or settings.logging != LoggingSettings():
        return settings.logging
    return CLI_LOGGING
