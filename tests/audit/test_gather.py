"""Gathering: explicit files must be readable; files the registry config points at may live
elsewhere, and the checks needing them are skipped with the reason."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from monitor.audit.checks import evaluate
from monitor.audit.gather import Sources, gather
from monitor.audit.model import Status
from monitor.audit.probe import LiveProbe
from monitor.errors import ConfigError
from tests.audit.support import capture_dir, capture_document, make_certificate, variant

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
PROBE = LiveProbe(timeout=2)


def test_explicit_files_must_be_readable(tmp_path: Path) -> None:
    """A missing --registry-config or --htpasswd, invalid YAML or a bad --url is an error
    naming the option."""
    with pytest.raises(ConfigError, match="cannot read") as missing:
        gather(Sources(registry_config=tmp_path / "nope.yml"), probe=PROBE, now=NOW)
    assert "--registry-config" == missing.value.key
    (tmp_path / "bad.yml").write_text("http: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        gather(Sources(registry_config=tmp_path / "bad.yml"), probe=PROBE, now=NOW)
    with pytest.raises(ConfigError) as htpasswd:
        gather(Sources(htpasswd=tmp_path / "nope"), probe=PROBE, now=NOW)
    assert "--htpasswd" == htpasswd.value.key
    with pytest.raises(ConfigError) as url:
        gather(Sources(url="ftp://registry"), probe=PROBE, now=NOW)
    assert "--url" == url.value.key


def test_files_named_by_the_config(tmp_path: Path) -> None:
    """The capture's config names an htpasswd on its own host: skipped with the path; the
    certificate and htpasswd it names here are read."""
    elsewhere = tmp_path / "elsewhere.yml"
    elsewhere.write_text((capture_dir("distribution-3.1") / "config-text.yml").read_text())
    results = {
        r.id: r
        for r in evaluate(gather(Sources(registry_config=elsewhere), probe=PROBE, now=NOW), NOW)
    }

    assert Status.SKIPPED == results["htpasswd_weak"].status
    assert (
        "cannot read /tmp/regcap/s1-v31-text/htpasswd (auth.htpasswd.path)"
        in results["htpasswd_weak"].detail
    )

    crt, key = make_certificate(tmp_path / "tls", days=20)
    document = variant(
        capture_document("distribution-3.1"),
        {
            "http.tls": {"certificate": str(crt), "key": str(key)},
            "auth.htpasswd.path": str(capture_dir("distribution-3.1") / "htpasswd"),
        },
    )
    here = tmp_path / "here.yml"
    here.write_text(yaml.safe_dump(document))
    now = datetime.now(UTC)
    results = {
        r.id: r for r in evaluate(gather(Sources(registry_config=here), probe=PROBE, now=now), now)
    }

    assert (Status.WARN, Status.FAIL) == (
        results["tls_cert_expiry"].status,
        results["htpasswd_weak"].status,
    )
    assert f"in {crt}" in results["tls_cert_expiry"].detail


def test_log_files_by_glob(tmp_path: Path) -> None:
    """Registry logs are found by glob and judged by their permission bits."""
    (tmp_path / "registry.log").write_text("")
    (tmp_path / "registry.log").chmod(0o644)
    (tmp_path / "registry.log.1").write_text("")
    (tmp_path / "registry.log.1").chmod(0o600)
    config = tmp_path / "config.yml"
    config.write_text((capture_dir("distribution-2.8") / "config-text.yml").read_text())
    sources = Sources(registry_config=config, registry_logs=(str(tmp_path / "registry.log*"),))
    [result] = [
        r
        for r in evaluate(gather(sources, probe=PROBE, now=NOW), NOW)
        if r.id == "notification_token_in_logs"
    ]

    assert Status.FAIL == result.status
    assert f"{tmp_path / 'registry.log'} (644)" in result.detail
    assert "registry.log.1" not in result.detail
