"""End-to-end helpers on top of tests.registry_harness: notifying registries, skopeo pushes
and pulls, a capture endpoint, and registry-monitor as a real process.

Every process listens on 127.0.0.1 with a free port and is always terminated. A missing
program is a test failure with a clear message, never a skip.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.registry_harness import (
    build_oci_layout,
    free_port,
    registry_config,
    require_tools,
    write_htpasswd,
)

USERS = {"alice": "alice-pw-1", "bob": "bob-pw-2", "dave": "dave-pw-4"}
TOKEN = "s3cret"
# The fields of a stored event that a notification sets: what the end-to-end tests compare
# between what a registry sent and what the monitor stored.
NOTIFIED_FIELDS = (
    "event_id",
    "action",
    "target_kind",
    "repository",
    "tag",
    "digest",
    "media_type",
    "size",
    "from_repository",
    "actor",
    "remote_ip",
    "user_agent",
    "http_method",
    "request_id",
    "client",
    "instance",
)


def wait_for_port(
    port: int, *, timeout: float = 15.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# --- images -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Images:
    """An OCI layout with `hello` (1 layer), `app` (2 layers), `multi` (amd64 + arm64 index)."""

    layout: Path
    digests: dict[str, str]


def build_images(root: Path, *, salt: str = "") -> Images:
    """Deterministic images; `salt` changes every digest, so a test's images are its own."""
    digests = build_oci_layout(
        directory=root,
        images={
            "hello": [{"hello.txt": f"hello {salt}\n"}],
            "app": [{"etc/app.conf": f"mode=prod {salt}\n"}, {"app/run.sh": "echo app\n"}],
            "multi-amd64": [{"bin/tool": f"tool amd64 {salt}\n"}],
            "multi-arm64": [{"bin/tool": f"tool arm64 {salt}\n"}],
        },
        indexes={"multi": [("amd64", "multi-amd64"), ("arm64", "multi-arm64")]},
    )
    return Images(root, digests)


# --- skopeo ------------------------------------------------------------------------------


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    require_tools("skopeo")
    command = ["skopeo", "--insecure-policy", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} failed: {result.stderr.strip()[-800:]}")
    return result


def push(
    images: Images, image: str, dest: str, *, user: str = "alice", extra: tuple[str, ...] = ()
) -> None:
    skopeo(
        "copy",
        *extra,
        "--dest-tls-verify=false",
        "--dest-creds",
        f"{user}:{USERS[user]}",
        f"oci:{images.layout}:{image}",
        f"docker://{dest}",
    )


def pull(source: str, target: Path, *, user: str = "bob") -> None:
    skopeo(
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        f"{user}:{USERS[user]}",
        f"docker://{source}",
        f"dir:{target}",
    )


MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)


def end_marker(registry_url: str, repository: str, reference: str) -> str:
    """HEAD a manifest with a user agent of its own, and return that user agent.

    The registry queues each endpoint's events in the order its requests made them, so once
    this request's pull event has reached an endpoint, every event of an earlier request has
    reached it too. Counting events cannot tell that: the last ones may be missing on both
    sides at once.
    """
    agent = f"end-marker/{uuid.uuid4()}"
    response = httpx.head(
        f"{registry_url}/v2/{repository}/manifests/{reference}",
        auth=("bob", USERS["bob"]),
        headers={"User-Agent": agent, "Accept": MANIFEST_TYPES},
    )
    assert 200 == response.status_code, response.text
    return agent


# --- capture server ----------------------------------------------------------------------


@dataclass
class Capture:
    """Every notification body the registry sent to a second endpoint, as the truth to compare."""

    url: str
    bodies: list[bytes] = field(default_factory=list)

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for body in list(self.bodies):
            out.extend(json.loads(body)["events"])
        return out


@contextmanager
def capture_server() -> Iterator[Capture]:
    capture = Capture(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with lock:
                capture.bodies.append(body)
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    capture.url = f"http://127.0.0.1:{server.server_address[1]}/events"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield capture
    finally:
        server.shutdown()
        server.server_close()


# --- the registry -------------------------------------------------------------------------


def endpoint(name: str, url: str, *, token: str | None = None) -> dict[str, Any]:
    """A notification endpoint that retries quickly (threshold 3, backoff 1 s)."""
    entry: dict[str, Any] = {
        "name": name,
        "url": url,
        "timeout": "3s",
        "threshold": 3,
        "backoff": "1s",
    }
    if token is not None:
        entry["headers"] = {"Authorization": [f"Bearer {token}"]}
    return entry


def notifying_registry_config(root: Path, *, endpoints: list[dict[str, Any]]) -> dict[str, Any]:
    """htpasswd users USERS, delete enabled, notifications (with references) to `endpoints`."""
    root.mkdir(parents=True, exist_ok=True)
    return registry_config(
        root=root,
        port=free_port(),
        htpasswd=write_htpasswd(path=root / "htpasswd", users=USERS),
        notifications={"events": {"includereferences": True}, "endpoints": endpoints},
    )


# --- registry-monitor as a real process ---------------------------------------------------


@dataclass
class MonitorProcess:
    """`registry-monitor serve` in its own process, stoppable and restartable on one port."""

    port: int
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "monitor", "serve"], env=self.env, stdout=out, stderr=out
            )
        wait_for_port(self.port, process=self.process, timeout=30)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def get(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, timeout=10)

    def all_events(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(100):
            params = {"limit": "1000", "order": "asc"}
            if cursor:
                params["cursor"] = cursor
            page = self.get("/v1/events", **params).json()
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                return items
        raise AssertionError("more than 100 pages of events")


@contextmanager
def running_monitor(tmp: Path, db_url: str, **env: str) -> Iterator[MonitorProcess]:
    port = free_port()
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_MONITOR_")},
        "REGISTRY_MONITOR_DATABASE_URL": db_url,
        "REGISTRY_MONITOR_HTTP_ADDR": f"127.0.0.1:{port}",
        "REGISTRY_MONITOR_NOTIFICATIONS_TOKENS": TOKEN,
        "REGISTRY_MONITOR_NOTIFICATIONS_HEARTBEAT_SECONDS": "1",
        **env,
    }
    monitor = MonitorProcess(port=port, env=environ, log=tmp / "monitor.log")
    monitor.start()
    try:
        yield monitor
    finally:
        monitor.stop()
