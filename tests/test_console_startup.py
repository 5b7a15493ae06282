"""Starting registry-monitor as an operator does: the installed console script, in a folder of
its own. Refusals are one line with the problem and the fix, and exit status 2."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import httpx
import pytest

from tests.console import run_console, serving
from tests.paths import fixture_file
from tests.registry_harness import free_port

TOKEN = "s3cret"
NO_TOKEN = (
    "registry-monitor: refusing to start without a notification token: set notifications.tokens "
    "(REGISTRY_MONITOR_NOTIFICATIONS_TOKENS) or pass --insecure-no-token\n"
)


def store(tmp_path: Path) -> dict[str, str]:
    return {"REGISTRY_MONITOR_DATABASE_DATA_DIR": str(tmp_path / "data")}


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


class TestNotificationToken:
    @pytest.mark.parametrize("command", ["serve", "check-config"])
    def test_without_a_token_both_refuse_alike(self, tmp_path: Path, command: str) -> None:
        """check-config fails exactly as serve does: the same line, exit 2, nothing printed,
        no store created."""
        done = run_console(command, cwd=tmp_path, env=store(tmp_path))
        assert (2, "", NO_TOKEN, False) == (
            done.returncode,
            done.stdout,
            done.stderr,
            (tmp_path / "data").exists(),
        )

    def test_notifications_without_a_token_can_be_declared(self, tmp_path: Path) -> None:
        """notifications.insecure_no_token makes check-config pass, as it lets serve start."""
        env = {**store(tmp_path), "REGISTRY_MONITOR_NOTIFICATIONS_INSECURE_NO_TOKEN": "true"}
        done = run_console("check-config", cwd=tmp_path, env=env)
        assert (0, "") == (done.returncode, done.stderr)


class TestUnknownVariables:
    def test_a_misspelt_variable_is_named_with_the_closest_one(self, tmp_path: Path) -> None:
        """`…_NOTIFICATION_TOKENS` (no S) is not silently ignored: one warning names it and
        REGISTRY_MONITOR_NOTIFICATIONS_TOKENS; the command still runs."""
        env = {
            **store(tmp_path),
            "REGISTRY_MONITOR_NOTIFICATIONS_TOKENS": TOKEN,
            "REGISTRY_MONITOR_NOTIFICATION_TOKENS": "other",
        }
        done = run_console("check-config", cwd=tmp_path, env=env)
        (line,) = done.stderr.splitlines()
        assert 0 == done.returncode
        assert re.fullmatch(
            r"\S+ \[warning\s*\] unknown environment variable ignored\s+"
            r"did_you_mean=REGISTRY_MONITOR_NOTIFICATIONS_TOKENS "
            r"variable=REGISTRY_MONITOR_NOTIFICATION_TOKENS",
            line,
        ), line

    def test_known_variables_raise_no_warning(self, tmp_path: Path) -> None:
        """Settings, a secret's _FILE form and REGISTRY_MONITOR_CONFIG are all known."""
        secret = tmp_path / "token"
        secret.write_text(TOKEN)
        config = tmp_path / "c.yml"
        config.write_text("http:\n  addr: 127.0.0.1:5081\n")
        env = {
            **store(tmp_path),
            "REGISTRY_MONITOR_NOTIFICATIONS_TOKENS_FILE": str(secret),
            "REGISTRY_MONITOR_CONFIG": str(config),
        }
        done = run_console("check-config", cwd=tmp_path, env=env)
        assert (0, "") == (done.returncode, done.stderr)


class TestListening:
    def test_a_busy_port_is_one_line_and_nothing_starts(self, tmp_path: Path) -> None:
        """Another process holds the port: `address … in use`, exit 2, no "started", no store."""
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            other.listen()
            port = other.getsockname()[1]
            env = {
                **store(tmp_path),
                "REGISTRY_MONITOR_HTTP_ADDR": f"127.0.0.1:{port}",
                "REGISTRY_MONITOR_NOTIFICATIONS_TOKENS": TOKEN,
            }
            done = run_console("serve", cwd=tmp_path, env=env)
        assert (2, "", f"registry-monitor: address 127.0.0.1:{port} in use\n", False) == (
            done.returncode,
            done.stdout,
            done.stderr,
            (tmp_path / "data").exists(),
        )

    def test_the_startup_log_says_where_it_listens(self, tmp_path: Path) -> None:
        """The "started" record carries the URL the service answers on."""
        port = free_port()
        env = {**store(tmp_path), "REGISTRY_MONITOR_NOTIFICATIONS_TOKENS": TOKEN}
        with serving(cwd=tmp_path, port=port, env=env) as served:
            assert 200 == httpx.get(f"{served.url}/healthz", timeout=10).status_code
        started = [
            r for r in json_lines(served.stderr()) if r["event"] == "registry-monitor started"
        ]
        assert [f"http://127.0.0.1:{port}"] == [r["listening"] for r in started]


class TestAuthFailureCounter:
    def test_a_log_shipped_twice_counts_its_failed_logins_once(self, tmp_path: Path) -> None:
        """registry_monitor_auth_failures_total counts stored events: the captured log's 4 failed
        logins, posted twice to /v1/logs, count 4 (a re-read file must not look like a burst)."""
        lines = fixture_file("registry-text.log").read_text(encoding="utf-8")
        env = {**store(tmp_path), "REGISTRY_MONITOR_NOTIFICATIONS_TOKENS": TOKEN}
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"}
        with serving(cwd=tmp_path, port=free_port(), env=env) as served:
            answers = [
                httpx.post(f"{served.url}/v1/logs", content=lines, headers=headers, timeout=30)
                for _ in range(2)
            ]
            metrics = httpx.get(f"{served.url}/metrics", timeout=10).text
        counted = re.findall(r"^registry_monitor_auth_failures_total (\S+)$", metrics, re.M)
        assert ([11, 0], ["4.0"]) == ([a.json()["accepted"] for a in answers], counted)
