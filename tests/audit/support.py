"""Real registry configs from the captures (and variants of them), certificates from openssl."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import yaml

from monitor.audit.registry_config import RegistryConfig, parse_registry_config
from tests.paths import fixtures
from tests.registry_harness import require_tools

VERSIONS = ("distribution-2.8", "distribution-3.1")


def capture_dir(version: str) -> Path:
    return fixtures().parent / version


def capture_document(version: str) -> dict[str, Any]:
    """The registry config the capture of `version` ran with."""
    loaded: dict[str, Any] = yaml.safe_load((capture_dir(version) / "config-text.yml").read_text())
    return loaded


def variant(document: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`document` with dotted keys set (`{"http.debug.addr": ":5001"}`); None deletes the key."""
    out = copy.deepcopy(document)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return out


def config_of(document: dict[str, Any]) -> RegistryConfig:
    """The document as the registry would read it from a file."""
    return parse_registry_config(yaml.safe_dump(document), source="config.yml")


def make_certificate(
    directory: Path, *, days: int, key: str = "rsa:2048", name: str = "registry"
) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 valid for `days` from now, usable as its own
    CA: (cert, key)."""
    require_tools("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    cert, private = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", key, "-nodes", "-sha256",
            "-days", str(days), "-subj", "/CN=127.0.0.1",
            "-keyout", str(private), "-out", str(cert),
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext", "basicConstraints=critical,CA:TRUE",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, private


def htpasswd_line(user: str, password: str, *flags: str) -> str:
    """One entry made by Apache's htpasswd (`-B -C 12` bcrypt, `-m` MD5, `-s` SHA1)."""
    require_tools("htpasswd")
    out = subprocess.run(
        ["htpasswd", "-nb", *flags, user, password],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip()
