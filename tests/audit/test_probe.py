"""The live probe against the real registry binaries, with TLS from openssl certificates."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from monitor.audit.probe import LiveProbe
from monitor.audit.x509 import read_certificate
from tests.audit.support import make_certificate
from tests.harness import wait_for_port
from tests.paths import registry3_binary
from tests.registry_harness import (
    REGISTRY_VERSIONS,
    free_port,
    registry_binary,
    registry_config,
    registry_environment,
    running_registry,
)

BINARIES = pytest.mark.parametrize("version", REGISTRY_VERSIONS)

pytestmark = pytest.mark.registry


@BINARIES
def test_tls_handshake_reads_the_served_certificate(tmp_path: Path, version: str) -> None:
    """The probe reads the certificate the registry serves and the version it negotiated;
    both registries refuse TLS 1.0 and 1.1 by default."""
    tls = make_certificate(tmp_path / "tls", days=5)
    port = free_port()
    config = registry_config(root=tmp_path, port=port, tls=tls)
    with running_registry(directory=tmp_path / "r", config=config, binary=registry_binary(version)):
        seen = LiveProbe(timeout=5).tls("127.0.0.1", port)

    assert "" == seen.error
    assert seen.certificate is not None
    assert "127.0.0.1" == read_certificate(seen.certificate).common_name
    assert seen.version in ("TLSv1.2", "TLSv1.3")
    assert seen.legacy_tested
    assert "" == seen.legacy_accepted


def lowered_tls_config(tmp_path: Path, port: int) -> dict[str, Any]:
    tls = make_certificate(tmp_path / "tls", days=30)
    config = registry_config(root=tmp_path, port=port, tls=tls)
    config["http"]["tls"]["minimumtls"] = "tls1.0"
    config["http"]["tls"]["ciphersuites"] = [
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    ]
    return config


def test_tls_minimum_lowered_is_seen(tmp_path: Path) -> None:
    """2.8 configured with `minimumtls: tls1.0` and a CBC suite (its default suites are
    TLS 1.2-only) accepts a TLS 1.0 handshake."""
    port = free_port()
    config = lowered_tls_config(tmp_path, port)
    with running_registry(directory=tmp_path / "r", config=config):
        seen = LiveProbe(timeout=5).tls("127.0.0.1", port)

    assert "TLSv1" == seen.legacy_accepted


def test_registry3_refuses_tls_below_1_2(tmp_path: Path) -> None:
    """3.1 exits at start with `minimumtls: tls1.0`: only the 2.8 line can accept it. (It
    may open its port before it checks, so the test waits for the exit, not for the port.)"""
    config_path = tmp_path / "config.yml"
    config_path.write_text(yaml.safe_dump(lowered_tls_config(tmp_path, free_port())))
    result = subprocess.run(
        [registry3_binary(), "serve", str(config_path)],
        env=registry_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert 0 != result.returncode
    assert "unknown minimum TLS level 'tls1.0'" in result.stdout + result.stderr


@BINARIES
def test_anonymous_requests_and_reachability(tmp_path: Path, version: str) -> None:
    """Without auth the registry answers anonymous /v2/ and the catalog with 200 and starts an
    anonymous upload (which the probe cancels: no repository appears); a closed
    port is unreachable and a TLS handshake with plain HTTP fails with a reason."""
    port = free_port()
    config = registry_config(root=tmp_path, port=port)
    probe = LiveProbe(timeout=5)
    with running_registry(directory=tmp_path / "r", config=config, binary=registry_binary(version)):
        v2 = probe.get(f"http://127.0.0.1:{port}/v2/")
        catalog = probe.get(f"http://127.0.0.1:{port}/v2/_catalog")
        reachable = probe.reachable("127.0.0.1", port)
        upload = probe.start_upload(f"http://127.0.0.1:{port}", "registry-monitor-audit/probe")
        after = httpx.get(f"http://127.0.0.1:{port}/v2/_catalog", timeout=10).json()
        handshake = probe.tls("127.0.0.1", port)

    assert (200, 200, True, 202) == (v2.status, catalog.status, reachable, upload.status)
    assert {"repositories": []} == after
    assert handshake.certificate is None and "TLS handshake" in handshake.error
    assert not probe.reachable("127.0.0.1", free_port())
    assert probe.get(f"http://127.0.0.1:{free_port()}/v2/").error.startswith("GET ")


def test_server_speaking_only_tls_1_0(tmp_path: Path) -> None:
    """A server that refuses TLS 1.2 (openssl s_server -tls1) is still observed: its
    certificate comes from the TLS 1.0 handshake, which is reported as accepted."""
    cert, key = make_certificate(tmp_path, days=30)
    port = free_port()
    server = subprocess.Popen(
        [
            "openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(cert),
            "-key", str(key), "-tls1", "-cipher", "ALL:@SECLEVEL=0", "-www", "-quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, process=server, timeout=15)
        seen = LiveProbe(timeout=5).tls("127.0.0.1", port)
    finally:
        server.terminate()
        server.wait(10)

    assert ("TLSv1", "TLSv1", "") == (seen.version, seen.legacy_accepted, seen.error)
    assert seen.certificate is not None
