"""Cleanup wired end to end: the real registry (TLS, htpasswd or token auth, delete enabled)
notifies registry-monitor (a real process), skopeo pushes and pulls, and the CLI plans,
applies and restores. "Not pulled for 7 days" becomes plannable by recording coverage and
first-seen times in the past through the store API.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from monitor import cli
from monitor.cleanup.registry_client import Credentials, HttpRegistryClient, make_http_client
from monitor.store.coverage import record_heartbeat
from monitor.store.inventory import record_tag_seen
from tests.cli.console import run as run_console
from tests.harness import (
    TOKEN,
    USERS,
    Images,
    MonitorProcess,
    build_images,
    endpoint,
    pull,
    push,
    running_monitor,
    wait_until,
)
from tests.registry_harness import (
    RegistryHandle,
    free_port,
    make_tls_cert,
    registry_binary,
    registry_config,
    running_registry,
    write_htpasswd,
)
from tests.token_server import running_token_server

pytestmark = pytest.mark.registry

REPO = "team/app"
POLICY = """
- name: e2e
  repositories: ["team/**"]
  protect: {tags: ["release"], grace_hours: 0, min_tags: 1}
  keep: {pulled_within_days: 7}
  delete:
    - name: unused
      tags: ["*"]
      not_pulled_days: 7
"""
EXPECTED_DELETED = ["pr-1", "pr-1b", "pr-3"]
TAG_IMAGES = {
    "pr-1": "hello",
    "pr-1b": "hello",
    "main": "app",
    "pr-2": "app",
    "pr-3": "multi",
    "release": "multi-amd64",
}


@dataclasses.dataclass
class Stack:
    registry: RegistryHandle
    monitor: MonitorProcess
    images: Images
    cert: Path
    db_url: str
    environ: dict[str, str]

    def client(self, http: Any) -> HttpRegistryClient:
        return HttpRegistryClient(
            self.registry.url, http=http, credentials=Credentials("alice", USERS["alice"])
        )

    def tags(self) -> list[str]:
        with make_http_client(ca_file=self.cert) as http:
            return sorted(self.client(http).tags(REPO))

    def digest(self, tag: str) -> str | None:
        with make_http_client(ca_file=self.cert) as http:
            head = self.client(http).head_manifest(REPO, tag)
            return head.digest if head else None

    def cli(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
        """The command's exit code and output; a failed command's error output is written
        again, so that a failing test shows it."""
        capsys.readouterr()
        code = cli.main(list(argv), environ=self.environ)
        captured = capsys.readouterr()
        if code != 0:
            sys.stderr.write(f"{' '.join(argv)} exited {code}:\n{captured.err}")
        return code, captured.out


def populate(stack: Stack) -> None:
    """Two tags on one digest, a kept digest with two tags, an index whose child carries the
    protected `release`; `main` pulled."""
    host, images = stack.registry.host, stack.images
    push(images, "hello", f"{host}/{REPO}:pr-1")
    push(images, "hello", f"{host}/{REPO}:pr-1b")
    push(images, "app", f"{host}/{REPO}:main")
    push(images, "app", f"{host}/{REPO}:pr-2")
    push(images, "multi", f"{host}/{REPO}:pr-3", extra=("--all",))
    push(images, "multi-amd64", f"{host}/{REPO}:release")
    pull(f"{host}/{REPO}:main", stack.monitor.log.parent / "pulled")

    def stored() -> bool:
        items = stack.monitor.get("/v1/tags", repository=REPO).json()["items"]
        pulled = [t for t in items if t["tag"] == "main" and t["pull_count"] >= 1]
        return len(items) == 6 and bool(pulled)

    wait_until(stored, timeout=60, what="the monitor to store the pushes and the pull")


def backdate(stack: Stack, *, days: int = 30) -> None:
    """Coverage since `days` ago and every tag first seen then, through the store API."""
    now = datetime.now(UTC)
    past = now - timedelta(days=days)
    engine = create_engine(stack.db_url)
    try:
        with sessionmaker(engine)() as session, session.begin():
            for at in (past, now):
                record_heartbeat(
                    session,
                    replica="test-history",
                    source="notification",
                    now=at,
                    max_gap=timedelta(days=days + 1),
                )
            for tag, image in TAG_IMAGES.items():
                digest = stack.images.digests[image]
                record_tag_seen(
                    session, repository=REPO, tag=tag, digest=digest, media_type=None, seen_at=past
                )
    finally:
        engine.dispose()


def deleted_in(plan: dict[str, Any]) -> list[str]:
    return sorted(d["tag"] for d in plan["decisions"] if d["decision"] == "delete")


def make_environ(
    stack_dir: Path, db_url: str, registry: RegistryHandle, cert: Path
) -> dict[str, str]:
    policies = stack_dir / "policies.yml"
    policies.write_text(POLICY)
    return {
        "REGISTRY_MONITOR_DATABASE_URL": db_url,
        "REGISTRY_MONITOR_CLEANUP_REGISTRY_URL": registry.url,
        "REGISTRY_MONITOR_CLEANUP_USERNAME": "alice",
        "REGISTRY_MONITOR_CLEANUP_PASSWORD": USERS["alice"],
        "REGISTRY_MONITOR_CLEANUP_CA_FILE": str(cert),
        "REGISTRY_MONITOR_CLEANUP_POLICIES_FILE": str(policies),
        "REGISTRY_MONITOR_CLEANUP_MIN_INTERVAL_SECONDS": "0.05",
        "REGISTRY_MONITOR_CLEANUP_MAX_REPOSITORY_SHARE": "1.0",
        "REGISTRY_MONITOR_LOGGING_LEVEL": "warning",
    }


def _stack(tmp_path: Path, db_url: str, auth: dict[str, Any], version: str) -> Iterator[Stack]:
    cert, key = make_tls_cert(directory=tmp_path / "tls")
    images = build_images(tmp_path / "oci", salt=tmp_path.name)
    with running_monitor(tmp_path, db_url) as monitor:
        config = registry_config(root=tmp_path / "registry", port=free_port(), tls=(cert, key))
        config.update(auth)
        config["notifications"] = {
            "events": {"includereferences": True},
            "endpoints": [endpoint("monitor", f"{monitor.url}/v1/notifications", token=TOKEN)],
        }
        with running_registry(
            directory=tmp_path / "registry", config=config, binary=registry_binary(version)
        ) as registry:
            environ = make_environ(tmp_path, db_url, registry, cert)
            stack = Stack(registry, monitor, images, cert, db_url, environ)
            populate(stack)
            backdate(stack)
            yield stack


@pytest.fixture
def stack(tmp_path: Path, db_url: str, registry_version: str) -> Iterator[Stack]:
    htpasswd = write_htpasswd(path=tmp_path / "htpasswd", users=USERS)
    auth = {"auth": {"htpasswd": {"realm": "harness-realm", "path": str(htpasswd)}}}
    yield from _stack(tmp_path, db_url, auth, registry_version)


@pytest.fixture
def token_stack(tmp_path: Path, db_url: str, registry_version: str) -> Iterator[Stack]:
    with running_token_server(directory=tmp_path / "token", users=USERS) as tokens:
        auth = {"auth": {"token": tokens.registry_auth()}}
        yield from _stack(tmp_path, db_url, auth, registry_version)


class TestCleanupThroughTheCli:
    def test_plan_apply_restore(self, stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
        """Plan selects the unused tags, apply deletes exactly them, restore brings one back."""
        assert 0 == stack.cli(capsys, "cleanup", "reconcile")[0]
        code, out = stack.cli(capsys, "cleanup", "plan", "--json")
        plan = json.loads(out)
        assert (0, EXPECTED_DELETED) == (code, deleted_in(plan))
        reasons = {d["tag"]: d["reason"] for d in plan["decisions"]}
        expected_reasons = {
            "main": "keep_pulled_within",
            "pr-2": "shares_digest_with_kept",
            "release": "pinned",
        }
        assert expected_reasons == {t: reasons[t] for t in expected_reasons}
        assert plan["bytes_freed"] > 0
        code, out = stack.cli(capsys, "cleanup", "apply", plan["id"], "--json")
        applied = json.loads(out)
        deleted = sorted(
            t for e in applied["entries"] if e["outcome"] == "deleted" for t in e["tags"]
        )
        assert (0, EXPECTED_DELETED) == (code, deleted)
        assert ["main", "pr-2", "release"] == stack.tags()
        code, _ = stack.cli(capsys, "cleanup", "restore", plan["id"], "--tag", f"{REPO}:pr-1")
        expected = (0, stack.images.digests["hello"], None)
        assert expected == (code, stack.digest("pr-1"), stack.digest("pr-1b"))

    def test_second_plan_shows_the_diff(
        self, stack: Stack, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A plan after a pull of pr-3 reports pr-3 as no longer selected."""
        code, out = stack.cli(capsys, "cleanup", "plan", "--json")
        first = json.loads(out)
        pull(f"{stack.registry.host}/{REPO}:pr-3", stack.monitor.log.parent / "pr-3")

        def pulled() -> bool:
            items = stack.monitor.get("/v1/tags", repository=REPO).json()["items"]
            return any(t["tag"] == "pr-3" and t["pull_count"] >= 1 for t in items)

        wait_until(pulled, timeout=60, what="the pull of pr-3 to be stored")
        code, out = stack.cli(capsys, "cleanup", "plan", "--json")
        diff = json.loads(out)["diff"]
        expected: tuple[object, ...] = (0, first["id"], [], [f"{REPO}:pr-3"])
        actual = (code, diff["previous_id"], diff["newly_selected"], diff["no_longer_selected"])
        assert expected == actual
        listed = stack.monitor.get("/v1/cleanup/plans").json()["items"]
        assert 2 == len(listed)

    def test_moved_tag_is_skipped_and_reported(
        self, stack: Stack, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A tag pushed to another digest between plan and apply is skipped with tag_moved."""
        _, out = stack.cli(capsys, "cleanup", "plan", "--json")
        plan = json.loads(out)
        push(stack.images, "app", f"{stack.registry.host}/{REPO}:pr-1")
        _, out = stack.cli(capsys, "cleanup", "apply", plan["id"], "--json")
        skipped = [
            (e["tags"], e["reason"])
            for e in json.loads(out)["entries"]
            if e["outcome"] == "skipped"
        ]
        assert [(["pr-1"], "tag_moved")] == skipped
        expected = (["main", "pr-1", "pr-2", "release"], stack.images.digests["app"])
        assert expected == (stack.tags(), stack.digest("pr-1"))

    def test_plan_detail_in_the_api(self, stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
        """GET /v1/cleanup/plans/{id} shows the decisions and, after apply, the journal."""
        _, out = stack.cli(capsys, "cleanup", "plan", "--json")
        plan_id = json.loads(out)["id"]
        stack.cli(capsys, "cleanup", "apply", plan_id)
        detail = stack.monitor.get(f"/v1/cleanup/plans/{plan_id}").json()
        journal = sorted(r["tag"] for r in detail["journal"] if r["outcome"] == "deleted")
        assert ("applied", EXPECTED_DELETED, 6) == (
            detail["state"],
            journal,
            len(detail["decisions"]),
        )

    def test_apply_twice_and_show_the_plan(self, stack: Stack, tmp_path: Path) -> None:
        """Through the console script: apply prints its table and no log lines; applying again
        says when the plan was applied and does nothing; `plans show` prints the plan and its
        journal."""
        # logging left at its defaults: a command logs warnings only
        env = {k: v for k, v in stack.environ.items() if k != "REGISTRY_MONITOR_LOGGING_LEVEL"}
        done = run_console("cleanup", "plan", "--json", cwd=tmp_path, env=env)
        plan_id = json.loads(done.stdout)["id"]
        first = run_console("cleanup", "apply", plan_id, cwd=tmp_path, env=env)
        again = run_console("cleanup", "apply", plan_id, cwd=tmp_path, env=env)
        shown = run_console("cleanup", "plans", "show", plan_id, "--json", cwd=tmp_path, env=env)
        detail = json.loads(shown.stdout)
        table = run_console("cleanup", "plans", "show", plan_id, cwd=tmp_path, env=env)
        at = detail["applied_at"][:19].replace("T", " ")
        expected = (
            (0, ""),
            (
                0,
                f"plan {plan_id} was applied at {at} UTC; nothing to do "
                f"(its journal: registry-monitor cleanup plans show {plan_id})\n",
                "",
            ),
            ("applied", EXPECTED_DELETED, 6),
            (0, f"plan {plan_id}, created", f"applied at {at}"),
        )
        journal = sorted(r["tag"] for r in detail["journal"] if r["outcome"] == "deleted")
        actual = (
            (first.returncode, first.stderr),
            (again.returncode, again.stdout, again.stderr),
            (detail["state"], journal, len(detail["decisions"])),
            (
                table.returncode,
                table.stdout[: len(f"plan {plan_id}, created")],
                table.stdout.splitlines()[0].split(": ", 1)[1],
            ),
        )
        assert expected == actual


class TestCleanupWithTokenAuth:
    def test_plan_and_apply(self, token_stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
        """With a token-auth registry the CLI reconciles, plans and applies the same way."""
        stack = token_stack
        assert 0 == stack.cli(capsys, "cleanup", "reconcile")[0]
        _, out = stack.cli(capsys, "cleanup", "plan", "--json")
        plan = json.loads(out)
        code, _ = stack.cli(capsys, "cleanup", "apply", plan["id"])
        assert (0, EXPECTED_DELETED, ["main", "pr-2", "release"]) == (
            code,
            deleted_in(plan),
            stack.tags(),
        )
