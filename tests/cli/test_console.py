"""The installed `registry-monitor` console script, run as a user runs it (a new process each
time): what it prints when it cannot run, with the fix, and its exit status. Never a traceback.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from monitor.events import Action
from monitor.runtime import Services
from tests.cli.console import run
from tests.fixture_events import scenario_events
from tests.registry_harness import free_port

UPGRADE = "run `registry-monitor db upgrade`"
TOKEN = "notifications:\n  tokens: [t]\n"  # check-config, like serve, needs one


def shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


READ_COMMANDS = [
    ["events"],
    ["tags"],
    ["alerts"],
    ["quarantine"],
    ["cleanup", "plans"],
    ["db", "current"],
    ["detect", "replay", "--since", "2026-11-27T00:00:00Z", "--until", "2026-11-28T00:00:00Z"],
]


class TestConfigOption:
    @pytest.mark.parametrize(
        "argv",
        [["--config", "c.yml", "check-config"], ["check-config", "--config", "c.yml"]],
        ids=["before", "after"],
    )
    def test_config_before_or_after_the_command(self, tmp_path: Path, argv: list[str]) -> None:
        """`--config F COMMAND` and `COMMAND --config F` read the same file."""
        (tmp_path / "c.yml").write_text(f"http:\n  addr: 127.0.0.1:7777\n{TOKEN}")
        done = run(*argv, cwd=tmp_path)
        assert (0, "", True) == (
            done.returncode,
            done.stderr,
            "addr: 127.0.0.1:7777" in done.stdout,
        )

    def test_the_command_overrides_the_top_level(self, tmp_path: Path) -> None:
        """Given both, the --config after the command wins."""
        (tmp_path / "a.yml").write_text(f"http:\n  addr: 127.0.0.1:7001\n{TOKEN}")
        (tmp_path / "b.yml").write_text(f"http:\n  addr: 127.0.0.1:7002\n{TOKEN}")
        done = run("--config", "a.yml", "check-config", "--config", "b.yml", cwd=tmp_path)
        assert (0, True) == (done.returncode, "addr: 127.0.0.1:7002" in done.stdout)


class TestNoUsableStore:
    @pytest.mark.parametrize("argv", READ_COMMANDS, ids=" ".join)
    def test_read_commands_never_create_the_default_store(
        self, tmp_path: Path, argv: list[str]
    ) -> None:
        """With the default relative data_dir and nothing there: the resolved path and the fix,
        exit 2, and no ./data left behind."""
        done = run(*argv, cwd=tmp_path)
        expected: tuple[object, ...] = (
            2,
            "",
            f"registry-monitor: no schema in sqlite:///{tmp_path}/data/registry-monitor.db: "
            f"{UPGRADE}\n",
            [],
        )
        assert expected == (done.returncode, done.stdout, done.stderr, list(tmp_path.iterdir()))

    def test_an_empty_database_has_no_schema(self, tmp_path: Path, empty_db_url: str) -> None:
        """An empty SQLite file or PostgreSQL database: no schema, run `db upgrade`."""
        if empty_db_url.startswith("sqlite"):
            Path(make_url(empty_db_url).database or "").touch()
        done = run("events", cwd=tmp_path, env={"REGISTRY_MONITOR_DATABASE_URL": empty_db_url})
        expected = (2, f"registry-monitor: no schema in {shown(empty_db_url)}: {UPGRADE}\n")
        assert expected == (done.returncode, done.stderr)

    def test_unreachable_postgresql(self, tmp_path: Path) -> None:
        """Nothing listening at the PostgreSQL address: the URL (password hidden), the reason
        and what to check."""
        port = free_port()
        url = f"postgresql+psycopg://monitor:s3cret@127.0.0.1:{port}/monitor"
        done = run("alerts", cwd=tmp_path, env={"REGISTRY_MONITOR_DATABASE_URL": url})
        expected = (
            2,
            f"registry-monitor: cannot use the store at "
            f"postgresql+psycopg://monitor:***@127.0.0.1:{port}/monitor: connection failed: "
            f'connection to server at "127.0.0.1", port {port} failed: Connection refused: '
            "check that PostgreSQL is running and database.url "
            "(REGISTRY_MONITOR_DATABASE_URL) is right\n",
        )
        assert expected == (done.returncode, done.stderr)

    @pytest.mark.parametrize(
        "argv",
        [["db", "upgrade"], ["ingest-log", "-"], ["serve", "--insecure-no-token"]],
        ids=" ".join,
    )
    def test_a_data_dir_that_cannot_be_created(self, tmp_path: Path, argv: list[str]) -> None:
        """Commands that write say which directory they cannot create, and why."""
        (tmp_path / "file").write_text("")
        data = tmp_path / "file" / "data"
        env = {"REGISTRY_MONITOR_DATABASE_DATA_DIR": str(data)}
        done = run(*argv, cwd=tmp_path, env=env)
        expected = (
            2,
            f"registry-monitor: cannot create the data directory {data}: Not a directory: "
            "set database.data_dir (REGISTRY_MONITOR_DATABASE_DATA_DIR) to a writable directory\n",
        )
        assert expected == (done.returncode, done.stderr)

    def test_a_schema_that_is_not_current(self, tmp_path: Path) -> None:
        """A store missing a table the command reads: which one, and `db upgrade`."""
        url = f"sqlite:///{tmp_path}/m.db"
        env = {"REGISTRY_MONITOR_DATABASE_URL": url}
        assert 0 == run("db", "upgrade", cwd=tmp_path, env=env).returncode
        with sqlite3.connect(tmp_path / "m.db") as connection:
            connection.execute("DROP TABLE tag_state")
        done = run("tags", cwd=tmp_path, env=env)
        expected = (
            2,
            f"registry-monitor: the schema in {url} is not current "
            f"(no such table: tag_state): {UPGRADE}\n",
        )
        assert expected == (done.returncode, done.stderr)

    def test_a_file_that_is_not_a_store(self, tmp_path: Path) -> None:
        """A database.url pointing at some other file: what SQLite said, and what to check."""
        (tmp_path / "m.db").write_bytes(b"not a database, but long enough to be read" * 100)
        url = f"sqlite:///{tmp_path}/m.db"
        done = run("events", cwd=tmp_path, env={"REGISTRY_MONITOR_DATABASE_URL": url})
        expected = (
            2,
            f"registry-monitor: cannot use {url}: file is not a database: check that "
            f"{tmp_path} is writable and the file is a registry-monitor store\n",
        )
        assert expected == (done.returncode, done.stderr)

    def test_a_plan_that_does_not_exist(self, tmp_path: Path) -> None:
        """`cleanup plans show` and `cleanup apply` of an unknown id: one line, exit 2."""
        env = {"REGISTRY_MONITOR_DATABASE_URL": f"sqlite:///{tmp_path}/m.db"}
        assert 0 == run("db", "upgrade", cwd=tmp_path, env=env).returncode
        shown = run("cleanup", "plans", "show", "nope", cwd=tmp_path, env=env)
        applied = run("cleanup", "apply", "nope", cwd=tmp_path, env=env)
        expected = [(2, "registry-monitor: no cleanup plan 'nope'\n")] * 2
        assert expected == [(d.returncode, d.stderr) for d in (shown, applied)]


class TestArguments:
    def test_a_log_file_that_does_not_exist(self, tmp_path: Path) -> None:
        """`ingest-log` names the missing file before it opens or creates a store."""
        done = run("ingest-log", "nowhere.log", cwd=tmp_path)
        expected: tuple[object, ...] = (
            2,
            "registry-monitor: no such file: nowhere.log (give log files, or - for stdin)\n",
            [],
        )
        assert expected == (done.returncode, done.stderr, list(tmp_path.iterdir()))

    def test_limit_zero(self, tmp_path: Path) -> None:
        """`--limit 0` names the option and its range, and points to --help."""
        done = run("events", "--limit", "0", cwd=tmp_path)
        expected = (
            2,
            "registry-monitor events: argument --limit: must be a whole number from 1 to 1000, "
            "got '0' (see `registry-monitor events --help`)\n",
        )
        assert expected == (done.returncode, done.stderr)

    def test_no_command(self, tmp_path: Path) -> None:
        """Without a command: one line saying it is required."""
        done = run(cwd=tmp_path)
        expected = (
            2,
            "registry-monitor: the following arguments are required: COMMAND "
            "(see `registry-monitor --help`)\n",
        )
        assert expected == (done.returncode, done.stderr)

    def test_help_lists_allowed_values(self, tmp_path: Path) -> None:
        """`events --help` describes each option and lists the actions and sources."""
        done = run("events", "--help", cwd=tmp_path)
        text = " ".join(done.stdout.split())
        expected = (0, True, True, True)
        actual = (
            done.returncode,
            "--action {" + ",".join(a.value for a in Action) + "}" in text,
            "--source {notification,log}" in text,
            "--limit N at most N events, 1 to 1000 (default: 50)" in text,
        )
        assert expected == actual


class TestOutput:
    def test_output_closed_early(self, tmp_path: Path) -> None:
        """A reader that went away (`alerts | head`) is one line and exit 2, not a traceback."""
        env = {"REGISTRY_MONITOR_DATABASE_URL": f"sqlite:///{tmp_path}/m.db"}
        assert 0 == run("db", "upgrade", cwd=tmp_path, env=env).returncode
        reader, writer = os.pipe()
        os.close(reader)
        try:
            done = run("alerts", cwd=tmp_path, env=env, stdout=writer)
        finally:
            os.close(writer)
        expected = (
            2,
            "registry-monitor: the output was closed before it ended (broken pipe): "
            "use --limit to print fewer rows\n",
        )
        assert expected == (done.returncode, done.stderr)

    def test_control_characters_print_escaped(
        self, tmp_path: Path, db_url: str, services: Services
    ) -> None:
        """A repository named `evil\\r\\n\\x1b[31mred` is one row, its characters escaped."""
        event = next(e for e in scenario_events() if e.repository and e.tag)
        hostile = dataclasses.replace(event, repository="evil\r\n\x1b[31mred")
        services.writer.submit([hostile]).result(timeout=30)
        env = {"REGISTRY_MONITOR_DATABASE_URL": db_url}
        done = run("events", "--limit", "5", cwd=tmp_path, env=env)
        rows = done.stdout.splitlines()
        expected = (0, "", 2, True, False)
        actual = (
            done.returncode,
            done.stderr,
            len(rows),
            "evil\\r\\n\\x1b[31mred" in rows[1],
            "\x1b" in done.stdout,
        )
        assert expected == actual
