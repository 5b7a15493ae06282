"""`registry-monitor audit` against the real 2.8 and 3.1 registries, with TLS from openssl.

The registries listen on 127.0.0.1 only: a config file that says 0.0.0.0 is started with
`REGISTRY_HTTP_ADDR` and `REGISTRY_HTTP_DEBUG_ADDR` overrides, which the registry reads over
the file (and which a file cannot show: the audit judges the file).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from monitor.cli import main
from tests.audit.support import htpasswd_line, make_certificate
from tests.harness import wait_until
from tests.registry_harness import (
    REGISTRY_VERSIONS,
    free_port,
    registry_binary,
    registry_config,
    running_registry,
)

pytestmark = pytest.mark.registry


def audit(capsys: pytest.CaptureFixture[str], tmp_path: Path, *argv: str) -> tuple[int, str, str]:
    environ = {
        "REGISTRY_MONITOR_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "REGISTRY_MONITOR_LOGGING_LEVEL": "error",
    }
    code = main(["audit", *argv], environ)
    out, err = capsys.readouterr()
    return code, out, err


def write_htpasswd(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("version", REGISTRY_VERSIONS)
def test_badly_configured_registry_fails_exactly_those_checks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, version: str
) -> None:
    """TLS from a certificate expiring in 5 days, http.addr and the debug listener on 0.0.0.0,
    no http.secret and an MD5 htpasswd entry: exit 1 and exactly tls_cert_expiry,
    debug_exposed, http_secret_missing and htpasswd_weak fail. listen_all_interfaces passes:
    it is 0.0.0.0 *without* TLS that fails, and this registry serves TLS."""
    port, debug_port = free_port(), free_port()
    htpasswd = write_htpasswd(
        tmp_path / "htpasswd",
        htpasswd_line("alice", "alice-password", "-B", "-C", "10"),
        htpasswd_line("bob", "bob-password", "-m"),
    )
    config = registry_config(
        root=tmp_path,
        port=port,
        tls=make_certificate(tmp_path / "tls", days=5),
        htpasswd=htpasswd,
    )
    config["http"]["addr"] = f"0.0.0.0:{port}"
    config["http"]["debug"] = {"addr": f"0.0.0.0:{debug_port}"}
    del config["http"]["secret"]
    overrides = {
        "REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}",
        "REGISTRY_HTTP_DEBUG_ADDR": f"127.0.0.1:{debug_port}",
    }
    with running_registry(
        directory=tmp_path / "registry",
        config=config,
        binary=registry_binary(version),
        overrides=overrides,
    ) as registry:
        # the registry may accept connections a moment before it logs where it listens
        wait_until(
            lambda: f"listening on 127.0.0.1:{port}" in registry.log(),
            timeout=10,
            what="the registry to log where it listens",
        )
        code, out, err = audit(
            capsys,
            tmp_path,
            "--registry-config",
            str(registry.config_path),
            "--url",
            registry.url,
            "--json",
        )

    report = json.loads(out)
    statuses = {c["id"]: c["status"] for c in report["checks"]}
    assert (1, "") == (code, err)
    assert ["tls_cert_expiry", "htpasswd_weak", "debug_exposed", "http_secret_missing"] == report[
        "failed"
    ]
    assert {
        "tls_disabled": "pass",
        "tls_weak": "pass",
        "auth_disabled": "pass",
        "anonymous_catalog": "pass",
        "credentials_stale": "skipped",
        "listen_all_interfaces": "pass",
        "delete_enabled_without_cleanup": "warn",
        "readonly_available": "pass",
        "notifications_insecure": "skipped",
        "notification_token_in_logs": "pass",
    } == {k: v for k, v in statuses.items() if k not in report["failed"]}
    details = {c["id"]: c for c in report["checks"]}
    assert "(self-signed)" in details["tls_cert_expiry"]["detail"]
    assert f"http.debug.addr: 127.0.0.1:{debug_port}" == details["debug_exposed"]["remedy"]
    assert "bob (md5, line 2" in details["htpasswd_weak"]["detail"]
    assert "no schema" in details["credentials_stale"]["detail"]


@pytest.mark.parametrize("version", REGISTRY_VERSIONS)
def test_well_configured_registry_passes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, version: str
) -> None:
    """TLS from a certificate valid for 90 days, loopback listeners, a random http.secret and
    bcrypt cost 12: nothing fails, exit 0, and the table names every check."""
    port, debug_port = free_port(), free_port()
    htpasswd = write_htpasswd(
        tmp_path / "htpasswd", htpasswd_line("alice", "alice-password", "-B", "-C", "12")
    )
    config = registry_config(
        root=tmp_path,
        port=port,
        tls=make_certificate(tmp_path / "tls", days=90),
        htpasswd=htpasswd,
        delete_enabled=False,
    )
    config["http"]["debug"] = {"addr": f"127.0.0.1:{debug_port}"}
    config["http"]["secret"] = secrets.token_hex(32)
    with running_registry(
        directory=tmp_path / "registry", config=config, binary=registry_binary(version)
    ) as registry:
        code, out, err = audit(
            capsys, tmp_path, "--registry-config", str(registry.config_path), "--url", registry.url
        )

    assert (0, "") == (code, err)
    assert "no check fails" in out
    for check in (
        "tls_cert_expiry",
        "htpasswd_weak",
        "debug_exposed",
        "notification_token_in_logs",
    ):
        assert check in out


def test_anonymous_registry_fails_auth(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A plain-http registry without auth, probed by URL alone: TLS and auth checks fail from
    what it answers; config checks are skipped with why. Accepting every failing check makes
    the exit status 0; accepting only some leaves it 1."""
    port = free_port()
    with running_registry(
        directory=tmp_path / "registry", config=registry_config(root=tmp_path, port=port)
    ) as registry:
        code, out, _ = audit(capsys, tmp_path, "--url", registry.url, "--json")
        accepted = [
            audit(capsys, tmp_path, "--url", registry.url, *flags)[0]
            for flags in (
                ("--accept", "tls_disabled", "--accept", "auth_disabled"),
                (
                    "--accept",
                    "tls_disabled",
                    "--accept",
                    "auth_disabled",
                    "--accept",
                    "anonymous_catalog",
                ),
            )
        ]

    report = json.loads(out)
    assert [1, 0] == accepted
    assert 1 == code
    assert ["tls_disabled", "auth_disabled", "anonymous_catalog"] == report["failed"]
    skipped = [c for c in report["checks"] if c["status"] == "skipped"]
    assert all(
        "no registry config given" in c["detail"] for c in skipped if c["id"] == "debug_exposed"
    )


def test_nothing_to_audit_and_unreadable_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """No input at all, a config file that cannot be read, or an unknown check to accept:
    exit 2 with the reason."""
    code, _, err = audit(capsys, tmp_path)
    assert (2, "registry-monitor: nothing to audit") == (code, err[:34])

    code, _, err = audit(capsys, tmp_path, "--registry-config", str(tmp_path / "missing.yml"))
    assert 2 == code
    assert "--registry-config: cannot read" in err

    code, _, err = audit(capsys, tmp_path, "--url", "http://127.0.0.1:9", "--accept", "nope")
    assert 2 == code
    assert "invalid setting audit.accept: unknown check 'nope'" in err
