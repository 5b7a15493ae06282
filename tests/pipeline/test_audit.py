"""The scheduled audit against the real 2.8 registry: runs stored, GET /v1/audit, the metrics,
and one Slack message (through the outbox) per check that changes to fail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from monitor.api.app import create_app
from monitor.audit.gather import Sources
from monitor.audit.model import Status
from monitor.audit.probe import LiveProbe
from monitor.pipeline.audit import RULE, audit_job, audit_once
from monitor.pipeline.scheduler import run_job
from monitor.store.schema import AlertOutboxRow
from tests.audit.support import htpasswd_line, make_certificate
from tests.paths import fixture_file
from tests.pipeline.support import Clock, outbox_rows, post_scenario, start_services, stop_services
from tests.registry_harness import free_port, registry_config, running_registry

pytestmark = pytest.mark.registry


def test_audit_runs_are_stored_served_and_notified(db_url: str, tmp_path: Path) -> None:
    """A TLS registry with a certificate expiring in 5 days and an MD5 account: the first run
    queues one message per failing check, a second identical run queues none; the newest run
    is served by GET /v1/audit and exported as metrics; accounts seen in the scenario are fresh
    and an account never seen is stale."""
    now = datetime.now(UTC)
    clock = Clock(now=now)
    services = start_services(db_url, tmp_path / "svc", clock)
    try:
        post_scenario(services)  # alice and bob push and pull
        htpasswd = tmp_path / "htpasswd"
        htpasswd.write_text(
            "\n".join(
                [
                    htpasswd_line("alice", "pw", "-B", "-C", "10"),
                    htpasswd_line("bob", "pw", "-B", "-C", "10"),
                    htpasswd_line("carol", "pw", "-m"),
                ]
            )
            + "\n"
        )
        port = free_port()
        tls = make_certificate(tmp_path / "tls", days=5)
        config = registry_config(root=tmp_path, port=port, tls=tls, htpasswd=htpasswd)
        with running_registry(directory=tmp_path / "registry", config=config) as registry:
            sources = Sources(
                registry_config=registry.config_path, url=registry.url, cleanup_configured=True
            )
            probe = LiveProbe(timeout=5)
            first = audit_once(services.session_factory, sources=sources, probe=probe, now=now)
            second = audit_once(
                services.session_factory, sources=sources, probe=probe, now=clock.advance(60)
            )

        assert ["tls_cert_expiry", "htpasswd_weak"] == first.run.failed
        assert ("tls_cert_expiry", "htpasswd_weak") == first.notified
        assert () == second.notified
        assert [("new", RULE, "pending")] * 2 == outbox_rows(services)
        with services.session_factory() as session:
            payloads = [
                orjson.loads(p)
                for p in session.scalars(select(AlertOutboxRow.payload).order_by(AlertOutboxRow.id))
            ]
        assert payloads[0]["summary"].startswith("Registry audit: tls_cert_expiry fails: ")
        assert "Change: renew http.tls.certificate" in payloads[0]["summary"]
        assert "carol (md5, line 3" in payloads[1]["summary"]
        stale = {r.id: r for r in second.run.results}["credentials_stale"]
        assert (Status.WARN, "1 of 3 accounts") == (stale.status, stale.detail[:15])
        assert "carol (never seen)" in stale.detail

        with TestClient(create_app(services)) as client:
            served = client.get("/v1/audit").json()
        assert second.run.id == served["id"]
        assert ["tls_cert_expiry", "htpasswd_weak"] == served["failed"]
        assert 14 == len(served["checks"])

        sample = services.metrics.registry.get_sample_value
        assert 1.0 == sample(
            "registry_monitor_audit_check", {"id": "tls_cert_expiry", "status": "fail"}
        )
        assert 0.0 == sample(
            "registry_monitor_audit_check", {"id": "tls_cert_expiry", "status": "pass"}
        )
        expiry = sample("registry_monitor_tls_cert_expiry_seconds", {})
        assert expiry is not None
        assert timedelta(days=4, hours=23) < timedelta(seconds=expiry) <= timedelta(days=5)
    finally:
        stop_services(services)


def test_no_run_yet(db_url: str, tmp_path: Path) -> None:
    """Before any audit, GET /v1/audit answers 404 with the reason and the metric families
    have no samples."""
    services = start_services(db_url, tmp_path, Clock())
    try:
        with TestClient(create_app(services)) as client:
            response = client.get("/v1/audit")
        assert 404 == response.status_code
        assert "no audit has run yet" in response.json()["error"]["message"]
        sample = services.metrics.registry.get_sample_value
        assert None is sample("registry_monitor_tls_cert_expiry_seconds", {})
    finally:
        stop_services(services)


def test_one_replica_per_interval(db_url: str, tmp_path: Path) -> None:
    """Two replicas scheduled at once: one runs, the other finds the lease taken; after the
    interval the other may run."""
    clock = Clock(now=datetime.now(UTC))
    services = start_services(db_url, tmp_path / "svc", clock)
    try:
        sources = Sources(url=f"http://127.0.0.1:{free_port()}")  # nothing listens: skipped
        probe = LiveProbe(timeout=2)
        job = audit_job(
            services.session_factory,
            sources=sources,
            probe=probe,
            clock=clock,
            interval_seconds=3600,
        )
        ran = []
        for holder, seconds in (("a", 0), ("b", 5), ("b", 3595)):
            clock.advance(seconds)
            ran.append(
                run_job(job, session_factory=services.session_factory, holder=holder, clock=clock)
            )
        assert [True, False, True] == [did for did, _ in ran]
    finally:
        stop_services(services)


def test_accepted_failure_is_stored_as_a_warning_and_not_sent(db_url: str, tmp_path: Path) -> None:
    """The capture's config has no TLS: accepted, tls_disabled is stored as a warning and no
    message is queued; without accepting it, one is."""
    clock = Clock(now=datetime.now(UTC))
    services = start_services(db_url, tmp_path / "svc", clock)
    try:
        sources = Sources(registry_config=fixture_file("config-text.yml"))
        probe = LiveProbe(timeout=2)
        quiet = audit_once(
            services.session_factory,
            sources=sources,
            probe=probe,
            now=clock.now,
            accepted=("tls_disabled",),
        )
        loud = audit_once(
            services.session_factory, sources=sources, probe=probe, now=clock.advance(60)
        )
    finally:
        stop_services(services)

    statuses = {r.id: r.status for r in quiet.run.results}
    assert (Status.WARN, (), []) == (statuses["tls_disabled"], quiet.notified, quiet.run.failed)
    assert ("tls_disabled",) == loud.notified
