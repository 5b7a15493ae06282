"""Real outside programs for end-to-end tests: the registry binary, skopeo, registry-monitor.

Every process is started on 127.0.0.1 with a free port and always terminated. A missing
program is a test failure with a clear message, never a skip.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

REGISTRY_BIN = "/usr/bin/docker-registry"
USERS = {"alice": "alice-pw-1", "bob": "bob-pw-2", "dave": "dave-pw-4"}
TOKEN = "s3cret"


def require(program: str) -> str:
    path = shutil.which(program) or (program if Path(program).is_file() else None)
    if path is None:
        raise RuntimeError(
            f"{program} is required by this test and is not installed "
            "(apt-get install docker-registry skopeo apache2-utils)"
        )
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def _put(blobs: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _layer(blobs: Path, files: dict[str, str]) -> tuple[dict[str, Any], str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            data = content.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1700000000, 0o644
            tar.addfile(info, io.BytesIO(data))
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    descriptor = _put(blobs, packed.getvalue())
    return {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **descriptor}, diff_id


def _image(blobs: Path, layers: list[dict[str, str]], arch: str = "amd64") -> dict[str, Any]:
    built = [_layer(blobs, files) for files in layers]
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["/run"]},
        "rootfs": {"type": "layers", "diff_ids": [d for _, d in built]},
    }
    config_desc = _put(blobs, json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
        "layers": [desc for desc, _ in built],
    }
    return {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **_put(blobs, json.dumps(manifest, sort_keys=True).encode()),
        "platform": {"architecture": arch, "os": "linux"},
    }


def build_images(root: Path, *, salt: str = "") -> Path:
    """An OCI layout with `hello` (1 layer), `app` (2 layers) and `multi` (amd64 + arm64 index).

    `salt` changes every digest, so tests can make images no other test pushed.
    """
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    hello = _image(blobs, [{"hello.txt": f"hello {salt}\n"}])
    app = _image(blobs, [{"etc/app.conf": f"mode=prod {salt}\n"}, {"app/run.sh": "echo app\n"}])
    children = [
        _image(blobs, [{"bin/tool": f"tool {arch} {salt}\n"}], arch) for arch in ("amd64", "arm64")
    ]
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": children,
    }
    multi = {
        "mediaType": "application/vnd.oci.image.index.v1+json",
        **_put(blobs, json.dumps(index, sort_keys=True).encode()),
    }
    refs = []
    for name, desc in (("hello", hello), ("app", app), ("multi", multi)):
        entry = {k: v for k, v in desc.items() if k != "platform"}
        entry["annotations"] = {"org.opencontainers.image.ref.name": name}
        refs.append(entry)
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": refs}))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return root


def oci_digest(layout: Path, name: str) -> str:
    index = json.loads((layout / "index.json").read_text())
    for entry in index["manifests"]:
        if entry["annotations"]["org.opencontainers.image.ref.name"] == name:
            return str(entry["digest"])
    raise KeyError(name)


# --- skopeo ------------------------------------------------------------------------------


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [require("skopeo"), "--insecure-policy", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} failed: {result.stderr.strip()[-800:]}")
    return result


def push(
    layout: Path, image: str, dest: str, *, user: str = "alice", extra: tuple[str, ...] = ()
) -> None:
    skopeo(
        "copy",
        *extra,
        "--dest-tls-verify=false",
        "--dest-creds",
        f"{user}:{USERS[user]}",
        f"oci:{layout}:{image}",
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


# --- the registry ------------------------------------------------------------------------


@dataclass
class Registry:
    host: str
    url: str
    root: Path
    process: subprocess.Popen[bytes]
    log: Path
    config: Path


def write_htpasswd(path: Path) -> Path:
    lines = []
    for user, password in USERS.items():
        result = subprocess.run(
            [require("htpasswd"), "-Bbn", user, password],
            capture_output=True,
            text=True,
            check=True,
        )
        lines.append(result.stdout.strip())
    path.write_text("\n".join(lines) + "\n")
    return path


def registry_config(
    root: Path,
    port: int,
    *,
    endpoints: list[dict[str, Any]],
    formatter: str = "text",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": formatter},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "storage")},
            "delete": {"enabled": True},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": "e2e-secret"},
        "auth": {
            "htpasswd": {"realm": "e2e-realm", "path": str(write_htpasswd(root / "htpasswd"))}
        },
        "notifications": {"events": {"includereferences": True}, "endpoints": endpoints},
    }
    config.update(extra or {})
    return config


def endpoint(name: str, url: str, *, token: str | None = None) -> dict[str, Any]:
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


@contextmanager
def running_registry(root: Path, config: dict[str, Any]) -> Iterator[Registry]:
    """Start the real registry binary with `config` until the block ends."""
    binary = require(REGISTRY_BIN)
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / "config.yml"
    config_path.write_text(yaml.safe_dump(config))
    log = root / "registry.log"
    port = int(str(config["http"]["addr"]).rsplit(":", 1)[1])
    with log.open("ab") as out:
        process = subprocess.Popen([binary, "serve", str(config_path)], stdout=out, stderr=out)
    try:
        wait_for_port(port, process=process)
        host = f"127.0.0.1:{port}"
        yield Registry(host, f"http://{host}", root, process, log, config_path)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


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
