"""How the command line is put together: commands, their help, logging, what start-up loads."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from monitor.cli.app import CLI_LOGGING, logging_for
from monitor.cli.parser import build_parser, commands
from monitor.settings import LoggingSettings, load_settings
from tests.cli.console import run

HEAVY = {"sqlalchemy", "alembic", "starlette", "uvicorn", "slack_sdk", "apscheduler", "httpx"}


def parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found.extend(parsers(child))
    return found


def imported(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> set[str]:
    """The top-level packages a run of the console script imported (PYTHONPROFILEIMPORTTIME)."""
    done = run(*argv, cwd=cwd, env={"PYTHONPROFILEIMPORTTIME": "1", **(env or {})})
    return {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }


class TestCommands:
    def test_every_command_runs_a_function_that_exists(self) -> None:
        """Each command's handler names a module of monitor.cli and a function in it."""
        missing = []
        for name, handler in commands().items():
            module, function = handler.split(":")
            if not callable(getattr(importlib.import_module(f"monitor.cli.{module}"), function)):
                missing.append(name)
        assert [] == missing

    def test_every_option_has_a_description(self) -> None:
        """No option of any command is left without help text."""
        bare = [
            f"{parser.prog} {action.dest}"
            for parser in parsers(build_parser())
            for action in parser._actions
            if not action.help and not isinstance(action, argparse._SubParsersAction)
        ]
        assert [] == bare

    def test_one_plan_is_a_command(self) -> None:
        """`cleanup plans show PLAN` is there beside `cleanup plans`."""
        expected = {"cleanup plans": "cleanup:plans", "cleanup plans show": "cleanup:show_plan"}
        assert expected == {k: v for k, v in commands().items() if k.startswith("cleanup plans")}


class TestLogging:
    def test_commands_log_warnings_readably_by_default(self) -> None:
        """With the logging settings untouched, commands log warnings and up to the console."""
        settings = load_settings({})
        assert (CLI_LOGGING, LoggingSettings(level="warning", format="console")) == (
            logging_for("events", settings),
            CLI_LOGGING,
        )

    def test_serve_logs_as_configured(self) -> None:
        """`serve` keeps the configured logging (JSON lines at info by default)."""
        settings = load_settings({})
        assert settings.logging == logging_for("serve", settings)

    def test_configured_logging_is_kept(self) -> None:
        """Logging settings changed from their defaults apply to every command."""
        settings = load_settings({"REGISTRY_MONITOR_LOGGING_LEVEL": "debug"})
        assert LoggingSettings(level="debug", format="json") == logging_for("events", settings)


class TestStartup:
    def test_help_loads_no_heavy_library(self, tmp_path: Path) -> None:
        """`--help` imports neither the store, the web stack, the scheduler nor Slack."""
        assert set() == imported("--help", cwd=tmp_path) & HEAVY

    def test_a_read_command_loads_only_the_store(self, tmp_path: Path) -> None:
        """`events` imports SQLAlchemy and nothing else of the heavy libraries (no alembic)."""
        env = {"REGISTRY_MONITOR_DATABASE_URL": f"sqlite:///{tmp_path}/m.db"}
        assert 0 == run("db", "upgrade", cwd=tmp_path, env=env).returncode
        assert {"sqlalchemy"} == imported("events", cwd=tmp_path, env=env) & HEAVY

    def test_db_upgrade_loads_alembic(self, tmp_path: Path) -> None:
        """`db upgrade` is where alembic is imported (the check above can fail)."""
        env = {"REGISTRY_MONITOR_DATABASE_URL": f"sqlite:///{tmp_path}/m.db"}
        assert "alembic" in imported("db", "upgrade", cwd=tmp_path, env=env)
