"""The audit in the stack: the registry from deploy/registry/config.yml serving TLS from a
certificate that expires in 5 days, registry-monitor auditing it on schedule, Prometheus
evaluating dashboards/prometheus/rules.yml, and a local Slack. The certificate alert and the
failing-check alert fire in Prometheus, and the failing check reaches Slack."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.audit.support import make_certificate
from tests.harness import USERS, wait_until
from tests.observability.stack import (
    ConfiguredMonitor,
    Prometheus,
    prometheus_config,
    registry_config,
    running_prometheus,
)
from tests.registry_harness import free_port, running_registry, write_htpasswd
from tests.slack_server import WEBHOOK_PATH, SlackServer, running

pytestmark = [pytest.mark.registry, pytest.mark.prometheus]


def firing(prometheus: Prometheus) -> set[tuple[str, str]]:
    """(alertname, id label) of every firing alert."""
    return {
        (r["metric"]["alertname"], r["metric"].get("id", ""))
        for r in prometheus.result('ALERTS{alertstate="firing"}')
    }


@pytest.fixture(scope="module")
def slack() -> Iterator[SlackServer]:
    yield from running()


def test_certificate_alert_and_slack_message(tmp_path: Path, slack: SlackServer) -> None:
    """The scheduled audit at start finds the 5-day certificate: Prometheus fires
    RegistryCertificateExpiring and RegistryAuditCheckFailing{id="tls_cert_expiry"}, and one
    Slack message names the check, its detail and the line to change."""
    port = free_port()
    htpasswd = write_htpasswd(path=tmp_path / "htpasswd", users=USERS)
    registry = registry_config(
        root=tmp_path / "registry", htpasswd=htpasswd, monitor_url=f"http://127.0.0.1:{port}"
    )
    cert, key = make_certificate(tmp_path / "tls", days=5)
    registry.config["http"]["tls"] = {"certificate": str(cert), "key": str(key)}
    with running_registry(directory=tmp_path / "registry", config=registry.config) as reg:
        environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_MONITOR_")},
            "REGISTRY_MONITOR_HTTP_ADDR": f"127.0.0.1:{port}",
            "REGISTRY_MONITOR_DATABASE_URL": f"sqlite:///{tmp_path / 'monitor.db'}",
            "REGISTRY_MONITOR_NOTIFICATIONS_TOKENS": registry.token,
            "REGISTRY_MONITOR_LOGS_PATHS": str(reg.log_path),
            "REGISTRY_MONITOR_ALERTING_SLACK_WEBHOOK_URL": slack.webhook_url,
            "REGISTRY_MONITOR_AUDIT_REGISTRY_CONFIG": str(reg.config_path),
            "REGISTRY_MONITOR_AUDIT_URL": reg.url,
        }
        monitor = ConfiguredMonitor(port=port, env=environ, log=tmp_path / "monitor.log")
        monitor.start()
        try:
            with running_prometheus(
                tmp_path / "prometheus",
                prometheus_config(
                    monitor=f"127.0.0.1:{port}", registry=f"127.0.0.1:{registry.debug_port}"
                ),
            ) as prometheus:
                wait_until(
                    lambda: (
                        {
                            ("RegistryCertificateExpiring", ""),
                            ("RegistryAuditCheckFailing", "tls_cert_expiry"),
                        }
                        <= firing(prometheus)
                    ),
                    timeout=90,
                    what="the certificate and failing-check alerts to fire in Prometheus",
                )
                wait_until(
                    lambda: any(
                        "tls_cert_expiry" in json.dumps(r.payload)
                        for r in slack.requests
                        if r.path.endswith(WEBHOOK_PATH)
                    ),
                    timeout=60,
                    what="the audit's message to reach Slack",
                )
                served = monitor.get("/v1/audit").json()
                still_firing = firing(prometheus)
        finally:
            monitor.stop()

    [message] = [
        r.payload
        for r in slack.requests
        if r.path.endswith(WEBHOOK_PATH) and "tls_cert_expiry" in json.dumps(r.payload)
    ]
    text = json.dumps(message)
    assert "Registry audit: tls_cert_expiry fails" in text
    assert "(self-signed)" in text
    assert "tls_cert_expiry" in served["failed"]
    assert ("RegistryCertificateExpiringSoon", "") not in still_firing
