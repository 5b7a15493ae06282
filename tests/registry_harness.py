"""Run the real CNCF distribution registry in tests, build deterministic images, push them.

Everything listens on 127.0.0.1 only. `running_registry` always terminates the process.
A missing tool fails the test with a clear message; nothing is skipped silently.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.paths import registry3_binary

REGISTRY_BINARY = "/usr/bin/docker-registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


REGISTRY_VERSIONS = ("2.8", "3.1")


def registry_binary(version: str) -> str:
    """The registry binary of one line: Debian's 2.8, or the 3.1 binary named by
    REGISTRY_MONITOR_TEST_REGISTRY3 (`tests.paths.registry3_binary`, which fails when unset).
    Parametrize tests over `REGISTRY_VERSIONS` and resolve the binary inside the test."""
    if version == "2.8":
        return REGISTRY_BINARY
    if version == "3.1":
        return registry3_binary()
    raise ValueError(f"unknown registry version {version!r}; known: {REGISTRY_VERSIONS}")


class ToolMissing(RuntimeError):
    """A program the registry tests need is not installed."""


def require_tools(*names: str) -> None:
    """Raise ToolMissing naming every program in `names` that is not on PATH."""
    missing = [n for n in names if shutil.which(n) is None and not Path(n).is_file()]
    if missing:
        raise ToolMissing(
            f"registry tests need {', '.join(missing)}; install them "
            "(Debian: apt-get install docker-registry skopeo apache2-utils openssl)"
        )


# Ports handed out for servers the tests start: below Linux's ephemeral range (32768 and up),
# so an outgoing connection never takes one between `free_port` and the server binding it.
# Under pytest-xdist each worker (PYTEST_XDIST_WORKER "gwN" of PYTEST_XDIST_WORKER_COUNT) draws
# from a slice of its own, so two workers never hand out the same port.
PORT_RANGE = range(10000, 32768)
_ports: list[int] = []


def port_slice(worker: str | None, count: int) -> range:
    """The ports of one pytest-xdist worker ("gwN" of `count`; None outside xdist)."""
    index = int(worker.removeprefix("gw")) if worker else 0
    size = len(PORT_RANGE) // max(count, 1)
    return range(PORT_RANGE.start + index * size, PORT_RANGE.start + (index + 1) * size)


def _worker_ports() -> list[int]:
    ports = list(
        port_slice(
            os.environ.get("PYTEST_XDIST_WORKER"),
            int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")),
        )
    )
    # An order of its own (not the `random` module, which pytest-randomly reseeds per test), so
    # test runs of different checkouts side by side rarely try the same ports at once.
    random.Random(os.urandom(8)).shuffle(ports)
    return ports


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now, not handed out before by this process
    (until its slice of ports is used up): the caller's server binds it next."""
    for _ in range(len(PORT_RANGE)):
        if not _ports:
            _ports.extend(_worker_ports())
        port = _ports.pop()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port on 127.0.0.1 in {PORT_RANGE}")


def make_tls_cert(*, directory: Path, name: str = "registry") -> tuple[Path, Path]:
    """A self-signed RSA certificate for 127.0.0.1 (also usable as its own CA): (cert, key)."""
    require_tools("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-sha256",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def write_htpasswd(*, path: Path, users: Mapping[str, str]) -> Path:
    """An htpasswd file (bcrypt) with `users` (name → password)."""
    require_tools("htpasswd")
    lines = []
    for user, password in users.items():
        out = subprocess.run(
            ["htpasswd", "-Bbn", user, password],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        lines.append(out.stdout.strip())
    path.write_text("\n".join(lines) + "\n")
    return path


def registry_config(
    *,
    root: Path,
    port: int,
    tls: tuple[Path, Path] | None = None,
    htpasswd: Path | None = None,
    token: Mapping[str, str] | None = None,
    delete_enabled: bool = True,
    notifications_url: str | None = None,
    notifications: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A registry config: filesystem storage under `root`, on 127.0.0.1:`port`.

    `token` holds the `auth.token` keys (realm, service, issuer, rootcertbundle).
    """
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text"},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "storage")},
            "delete": {"enabled": delete_enabled},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": "registry-harness-secret"},
    }
    if tls is not None:
        config["http"]["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "harness-realm", "path": str(htpasswd)}}
    if token is not None:
        config["auth"] = {"token": dict(token)}
    if notifications_url is not None:
        config["notifications"] = {
            "endpoints": [{"name": "monitor", "url": notifications_url, "timeout": "1s"}]
        }
    if notifications is not None:
        config["notifications"] = dict(notifications)
    return config


@dataclasses.dataclass(frozen=True)
class RegistryHandle:
    url: str
    host: str
    process: subprocess.Popen[bytes]
    config_path: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def registry_environment() -> dict[str, str]:
    """This process's environment for a registry: without `REGISTRY_*` variables (every
    registry reads them as configuration overrides, and 3.x warns about unknown ones), with
    3.x's OpenTelemetry trace export off as the official image has it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env["OTEL_TRACES_EXPORTER"] = "none"
    return env


@contextmanager
def running_registry(
    *,
    directory: Path,
    config: Mapping[str, Any],
    binary: str = REGISTRY_BINARY,
    startup_timeout: float = 15.0,
    overrides: Mapping[str, str] | None = None,
    append_log: bool = False,
) -> Iterator[RegistryHandle]:
    """Start the registry with `config` (written to `directory`); yield a handle; stop it.

    `binary` is Debian's 2.8 by default; pass `tests.paths.registry3_binary()` for 3.x.
    `overrides` are `REGISTRY_<SECTION>_<KEY>` variables the registry reads over the file
    (`REGISTRY_HTTP_ADDR` decides where it listens and what the handle's URL is).
    `append_log` keeps what an earlier run wrote to `registry.log` (a restarted registry
    writing on, as `docker logs` keeps a container's output across restarts)."""
    require_tools(binary)
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "config.yml"
    config_path.write_text(yaml.safe_dump(dict(config)))
    log_path = directory / "registry.log"
    addr = (overrides or {}).get("REGISTRY_HTTP_ADDR", config["http"]["addr"])
    port = int(addr.rsplit(":", 1)[1])
    scheme = "https" if "tls" in config["http"] else "http"
    with log_path.open("ab" if append_log else "wb") as log:
        process = subprocess.Popen(
            [binary, "serve", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**registry_environment(), **(overrides or {})},
        )
        try:
            if not _wait_listening(port, process, startup_timeout):
                raise RuntimeError(f"registry did not start:\n{log_path.read_text()[-3000:]}")
            yield RegistryHandle(f"{scheme}://{addr}", addr, process, config_path, log_path)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


# --- deterministic OCI images -----------------------------------------------------------------


def _put_blob(blobs: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _layer(blobs: Path, files: Mapping[str, str]) -> tuple[dict[str, Any], str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, content in sorted(files.items()):
            data = content.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), 1700000000, 0o644
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    desc = {
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        **_put_blob(blobs, packed.getvalue()),
    }
    return desc, diff_id


def build_oci_layout(
    *,
    directory: Path,
    images: Mapping[str, Sequence[Mapping[str, str]]],
    indexes: Mapping[str, Sequence[tuple[str, str]]] | None = None,
) -> dict[str, str]:
    """An OCI layout with `images` (name → layers, each path → content) and `indexes`
    (name → [(architecture, image name)]); returns name → manifest digest. Deterministic."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    top: list[dict[str, Any]] = []
    digests: dict[str, str] = {}
    descs: dict[tuple[str, str], dict[str, Any]] = {}

    def image(name: str, arch: str) -> dict[str, Any]:
        layers, diff_ids = zip(*(_layer(blobs, files) for files in images[name]), strict=True)
        config = {
            "architecture": arch,
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {"Labels": {"harness": name}},
            "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        }
        cfg = _put_blob(blobs, json.dumps(config, sort_keys=True).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
            "layers": list(layers),
        }
        return {"mediaType": OCI_MANIFEST, **_put_blob(blobs, json.dumps(manifest).encode())}

    for name in images:
        desc = image(name, "amd64")
        digests[name] = desc["digest"]
        top.append({**desc, "annotations": {"org.opencontainers.image.ref.name": name}})
    for name, members in (indexes or {}).items():
        children = []
        for arch, member in members:
            desc = descs.setdefault((arch, member), image(member, arch))
            children.append({**desc, "platform": {"architecture": arch, "os": "linux"}})
        body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}
        desc = {"mediaType": OCI_INDEX, **_put_blob(blobs, json.dumps(body).encode())}
        digests[name] = desc["digest"]
        top.append({**desc, "annotations": {"org.opencontainers.image.ref.name": name}})
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": top}))
    (directory / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    return digests


def skopeo_copy(
    *,
    source: str,
    destination: str,
    credentials: str | None = None,
    cert_dir: Path | None = None,
    all_images: bool = False,
    timeout: float = 120,
) -> None:
    """`skopeo copy` (e.g. `oci:DIR:name` → `docker://127.0.0.1:PORT/repo:tag`)."""
    require_tools("skopeo")
    args = ["skopeo", "--insecure-policy", "copy", "--retry-times", "0"]
    if all_images:
        args.append("--all")
    if credentials is not None:
        args += ["--dest-creds", credentials]
    if cert_dir is not None:
        args += ["--dest-cert-dir", str(cert_dir)]
    elif destination.startswith("docker://"):
        args.append("--dest-tls-verify=false")
    result = subprocess.run(
        [*args, source, destination], capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"skopeo copy {source} {destination} failed:\n{result.stderr}")


def cert_dir_for(*, cert: Path, directory: Path) -> Path:
    """A directory holding `cert` as `ca.crt`, as skopeo's --cert-dir expects."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(cert, directory / "ca.crt")
    return directory
