"""The first hour of a new operator, as the README tells it, with the installed console script in
an empty folder and the default settings: create the store, run the service, point a real
registry at it and replay the real capture, then read events, tags and alerts and plan a
cleanup. Every command ends with exit status 0 and no traceback."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.console import run_console, serving
from tests.fixture_events import iter_posts
from tests.harness import TOKEN, USERS, build_images, endpoint, push, wait_until
from tests.paths import REPO
from tests.registry_harness import (
    free_port,
    registry_config,
    running_registry,
    write_htpasswd,
)

pytestmark = pytest.mark.registry


def readme_policy() -> str:
    """The README's example `cleanup.policies_file`, as a newcomer would copy it."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks: list[str] = re.findall(r"```yaml\n(# cleanup\.policies_file\n.*?)```", readme, re.S)
    (block,) = blocks
    return block


def ok(done: subprocess.CompletedProcess[str]) -> tuple[int, bool]:
    """(exit status, whether stderr is free of tracebacks) of a finished command."""
    return done.returncode, "Traceback" not in done.stderr


class TestFirstHour:
    def test_from_an_empty_folder_to_a_cleanup_plan(self, tmp_path: Path) -> None:
        home = tmp_path / "home"
        home.mkdir()
        policies = home / "policies.yml"
        policies.write_text(readme_policy())
        env = {"REGISTRY_MONITOR_NOTIFICATIONS_TOKENS": TOKEN}

        upgraded = run_console("db", "upgrade", cwd=home, env=env)
        assert ((0, True), True) == (ok(upgraded), (home / "data").is_dir())

        port = free_port()
        htpasswd = write_htpasswd(path=tmp_path / "htpasswd", users=USERS)
        config = registry_config(root=tmp_path / "registry", port=free_port(), htpasswd=htpasswd)
        config["notifications"] = {
            "events": {"includereferences": True},
            "endpoints": [
                endpoint("monitor", f"http://127.0.0.1:{port}/v1/notifications", token=TOKEN)
            ],
        }
        images = build_images(tmp_path / "oci", salt=tmp_path.name)
        with (
            serving(cwd=home, port=port, env=env) as served,
            running_registry(directory=tmp_path / "registry", config=config) as registry,
        ):
            # the real capture, as the registry posted it
            statuses = {
                httpx.post(
                    f"{served.url}/v1/notifications",
                    content=body,
                    headers={
                        "Content-Type": headers["Content-Type"],
                        "Authorization": f"Bearer {TOKEN}",
                    },
                    timeout=30,
                ).status_code
                for _, headers, body in iter_posts()
            }
            # and the live registry's own notifications
            push(images, "hello", f"{registry.host}/team/app:pr-1")
            push(images, "app", f"{registry.host}/team/app:latest")

            def settled() -> bool:
                tags = httpx.get(f"{served.url}/v1/tags", timeout=10).json()["items"]
                alerts = httpx.get(f"{served.url}/v1/alerts", timeout=10).json()["items"]
                rules = {a["rule"] for a in alerts}
                return {"pr-1", "latest"} <= {t["tag"] for t in tags} and (
                    "delete_outside_cleanup" in rules
                )

            wait_until(settled, timeout=60, what="the pushes stored and the delete alerted")

            events = run_console("events", "--limit", "100", cwd=home)
            tags = run_console("tags", cwd=home)
            alerts = run_console("alerts", cwd=home)
            cleanup = {
                "REGISTRY_MONITOR_CLEANUP_REGISTRY_URL": registry.url,
                "REGISTRY_MONITOR_CLEANUP_USERNAME": "alice",
                "REGISTRY_MONITOR_CLEANUP_PASSWORD": USERS["alice"],
                "REGISTRY_MONITOR_CLEANUP_POLICIES_FILE": str(policies),
            }
            reconciled = run_console("cleanup", "reconcile", cwd=home, env=cleanup)
            planned = run_console("cleanup", "plan", cwd=home, env=cleanup)

        assert {200} == statuses
        assert [(0, True)] * 6 == [
            ok(done) for done in (events, tags, alerts, reconciled, planned, upgraded)
        ]
        assert [True, True, True, True] == [
            "library/hello" in events.stdout and "team/app" in events.stdout,
            "library/hello" in tags.stdout and "pr-1" in tags.stdout,
            "delete_outside_cleanup" in alerts.stdout,
            "team/app" in planned.stdout and " stored (" in planned.stdout,
        ]
        assert "Traceback" not in served.stderr()
