"""End to end: registry-monitor follows the real registry's log file."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.harness import (
    TOKEN,
    MonitorProcess,
    endpoint,
    notifying_registry_config,
    running_monitor,
    skopeo,
    wait_until,
)
from tests.registry_harness import RegistryHandle, registry_binary, running_registry


@contextmanager
def followed_registry(
    tmp_path: Path, db_url: str, version: str
) -> Iterator[tuple[MonitorProcess, RegistryHandle]]:
    """A monitor following the log file of a real registry (of `version`) that notifies it."""
    registry_dir = tmp_path / "registry"
    log = registry_dir / "registry.log"
    registry_dir.mkdir()
    log.touch()
    with running_monitor(tmp_path, db_url, REGISTRY_MONITOR_LOGS_PATHS=str(log)) as monitor:
        config = notifying_registry_config(
            registry_dir,
            endpoints=[endpoint("monitor", f"{monitor.url}/v1/notifications", token=TOKEN)],
        )
        with running_registry(
            directory=registry_dir, config=config, binary=registry_binary(version)
        ) as registry:
            yield monitor, registry


class TestFollowingTheRegistryLog:
    def test_a_wrong_password_is_an_auth_failure_in_the_events(
        self, tmp_path: Path, db_url: str, registry_version: str
    ) -> None:
        """`skopeo login` of an unknown user shows up in /v1/events with the address, and the
        user name where the registry logs it (2.8; 3.1 names no unknown user). How soon is a
        matter for the log follower's poll interval, not for this test."""
        actor = {"2.8": "mallory", "3.1": None}[registry_version]
        with followed_registry(tmp_path, db_url, registry_version) as (monitor, registry):
            failed = skopeo(
                "login",
                "--tls-verify=false",
                "-u",
                "mallory",
                "-p",
                "guess-123",
                registry.host,
                check=False,
            )
            assert 0 != failed.returncode

            def seen() -> bool:
                items = monitor.get("/v1/events", action="auth_failure").json()["items"]
                return [(actor, "127.0.0.1")] == [(e["actor"], e["remote_ip"]) for e in items]

            wait_until(seen, timeout=30.0, what="the failed login in /v1/events")
            skopeo("login", "--tls-verify=false", "-u", "alice", "-p", "alice-pw-1", registry.host)
            # The log is read in order: once a later failure shows, alice's login was read.
            later = skopeo(
                "login", "--tls-verify=false", "-u", "zed", "-p", "guess-456", registry.host,
                check=False,
            )  # fmt: skip
            assert 0 != later.returncode
            later_actor = {"2.8": "zed", "3.1": None}[registry_version]

            def actors() -> list[str | None]:
                items = monitor.get("/v1/events", action="auth_failure").json()["items"]
                return [e["actor"] for e in items]

            wait_until(lambda: len(actors()) >= 2, timeout=30, what="the later failed login")
            assert sorted([actor, later_actor], key=str) == sorted(actors(), key=str)


class TestHostileLogins:
    def test_a_login_with_a_nul_in_the_user_never_stops_log_ingestion(
        self, tmp_path: Path, db_url: str, registry_version: str
    ) -> None:
        """`Authorization: Basic base64("bo\\0b:pw")` on `/v2/`: the failed login is stored
        (the NUL written out where the registry names the user), and a later failed login is
        stored too: the follower is not stuck on it (it was, on PostgreSQL)."""
        with followed_registry(tmp_path, db_url, registry_version) as (monitor, registry):
            credentials = base64.b64encode(b"bo\x00b:pw").decode()
            answer = httpx.get(
                f"{registry.url}/v2/",
                headers={"Authorization": f"Basic {credentials}"},
                verify=False,  # noqa: S501 - the registry's self-signed test certificate
                timeout=10,
            )
            assert 401 == answer.status_code
            later = skopeo(
                "login", "--tls-verify=false", "-u", "zed", "-p", "guess-456", registry.host,
                check=False,
            )  # fmt: skip
            assert 0 != later.returncode

            def actors() -> list[str | None]:
                items = monitor.get("/v1/events", action="auth_failure").json()["items"]
                return sorted((e["actor"] for e in items), key=str)

            wait_until(lambda: len(actors()) >= 2, timeout=30, what="both failed logins")
            expected = {"2.8": ["bo\\x00b", "zed"], "3.1": [None, None]}[registry_version]
            assert expected == actors()
