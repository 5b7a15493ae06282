"""The registry-monitor command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.runtime import Services
from monitor.store.migrate import head_revision
from tests.fixture_events import scenario_events


def run(
    capsys: pytest.CaptureFixture[str], environ: dict[str, str], *argv: str
) -> tuple[int, str, str]:
    code = main(list(argv), environ)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def environ(db_url: str) -> dict[str, str]:
    return {"REGISTRY_MONITOR_DATABASE_URL": db_url, "REGISTRY_MONITOR_LOGGING_LEVEL": "error"}


@pytest.fixture
def stored(services: Services) -> Services:
    services.writer.submit(scenario_events()).result(timeout=30)
    return services


class TestCommands:
    def test_serve_refuses_to_start_without_a_token(
        self, capsys: pytest.CaptureFixture[str], environ: dict[str, str]
    ) -> None:
        """No notification token and no insecure flag: exit 2 with the reason."""
        code, _, err = run(capsys, environ, "serve")
        assert 2 == code
        assert "refusing to start without a notification token" in err

    def test_check_config_prints_masked_settings(
        self, capsys: pytest.CaptureFixture[str], environ: dict[str, str]
    ) -> None:
        """The effective settings as YAML, tokens masked."""
        code, out, _ = run(
            capsys, {**environ, "REGISTRY_MONITOR_NOTIFICATIONS_TOKENS": "hunter2"}, "check-config"
        )
        assert 0 == code
        assert "hunter2" not in out
        assert "- '***'" in out

    def test_check_config_names_an_invalid_key(self, capsys: pytest.CaptureFixture[str]) -> None:
        """An invalid setting exits 2 and names the key."""
        code, _, err = run(capsys, {"REGISTRY_MONITOR_HTTP_ADDR": "x"}, "check-config")
        assert (2, True) == (code, "invalid setting http.addr" in err)

    def test_db_upgrade_then_current(
        self, capsys: pytest.CaptureFixture[str], empty_db_url: str
    ) -> None:
        """`db upgrade` migrates an empty store; `db current` shows it at head."""
        environ = {
            "REGISTRY_MONITOR_DATABASE_URL": empty_db_url,
            "REGISTRY_MONITOR_LOGGING_LEVEL": "error",
        }
        code, out, _ = run(capsys, environ, "db", "upgrade")
        assert (0, True) == (code, out.startswith("schema at revision"))
        code, out, _ = run(capsys, environ, "db", "current")
        current, head = out.split()[1], out.split()[3]
        assert (0, head) == (code, current)

    def test_db_downgrade_goes_back_to_an_older_revision_only(
        self, capsys: pytest.CaptureFixture[str], empty_db_url: str
    ) -> None:
        """`db downgrade 0014` undoes the newer migrations; a revision that is not older than
        the store's, or none at all, exits 2 and changes nothing."""
        environ = {
            "REGISTRY_MONITOR_DATABASE_URL": empty_db_url,
            "REGISTRY_MONITOR_LOGGING_LEVEL": "error",
        }
        run(capsys, environ, "db", "upgrade")
        head = str(head_revision())
        refused = [
            run(capsys, environ, "db", "downgrade", revision)[0] for revision in (head, "base", "x")
        ]
        code, out, _ = run(capsys, environ, "db", "downgrade", "0014")
        _, current, _ = run(capsys, environ, "db", "current")
        assert ([2, 2, 2], 0, "schema at revision 0014", "0014") == (
            refused,
            code,
            out.strip(),
            current.split()[1],
        )

    def test_events_as_a_table_and_as_json(
        self, capsys: pytest.CaptureFixture[str], environ: dict[str, str], stored: Services
    ) -> None:
        """`events` prints a readable table, or JSON with the same items."""
        code, out, _ = run(capsys, environ, "events", "--action", "delete")
        lines = out.splitlines()
        assert 0 == code
        assert lines[0].split()[:4] == ["time", "(UTC)", "action", "kind"]
        assert 3 == len(lines) - 1
        code, out, _ = run(capsys, environ, "events", "--action", "delete", "--json")
        document = json.loads(out)
        assert ["delete"] * 3 == [e["action"] for e in document["items"]]

    def test_events_pages_with_a_cursor(
        self, capsys: pytest.CaptureFixture[str], environ: dict[str, str], stored: Services
    ) -> None:
        """A page that is not the last prints the cursor of the next one."""
        _, out, _ = run(capsys, environ, "events", "--limit", "40")
        cursor = out.splitlines()[-1].split()[-1]
        _, out, _ = run(capsys, environ, "events", "--limit", "40", "--cursor", cursor, "--json")
        assert 3 == len(json.loads(out)["items"])

    def test_tags(
        self, capsys: pytest.CaptureFixture[str], environ: dict[str, str], stored: Services
    ) -> None:
        """`tags --live` hides the deleted hello tags."""
        _, out, _ = run(capsys, environ, "tags", "--live", "--json")
        assert {("mirror/hello", "1.0"), ("team/app", "multi"), ("team/app", "v1")} == {
            (t["repository"], t["tag"]) for t in json.loads(out)["items"]
        }
        _, out, _ = run(capsys, environ, "tags")
        assert "deleted" in out

    def test_bad_filters_are_errors_not_crashes(
        self, capsys: pytest.CaptureFixture[str], environ: dict[str, str], stored: Services
    ) -> None:
        """An invalid --since is a one-line error and exit 2."""
        code, _, err = run(capsys, environ, "events", "--since", "yesterday")
        expected = (
            "registry-monitor events: argument --since: must be an RFC 3339 time such as "
            "2026-11-27T04:52:00Z, got 'yesterday' (see `registry-monitor events --help`)\n"
        )
        assert (2, expected) == (code, err)

    def test_a_config_file_from_the_environment(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path, db_url: str
    ) -> None:
        """REGISTRY_MONITOR_CONFIG names the YAML file when --config is not given."""
        config = tmp_path / "c.yml"
        config.write_text(
            f"database:\n  url: {db_url}\nhttp:\n  addr: 127.0.0.1:7777\n"
            "notifications:\n  tokens: [t]\n"
        )
        _, out, _ = run(capsys, {"REGISTRY_MONITOR_CONFIG": str(config)}, "check-config")
        assert "addr: 127.0.0.1:7777" in out
