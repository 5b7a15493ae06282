"""The audit gauges: derived from the newest stored run at scrape time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from monitor.audit.model import CHECK_IDS, CheckResult, Status
from monitor.observability.audit_metrics import AuditCollector
from monitor.store.audit import record_audit
from tests.pipeline.support import Clock, start_services, stop_services

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def results(failing: str) -> list[CheckResult]:
    return [
        CheckResult(check, Status.FAIL if check == failing else Status.PASS, "detail")
        for check in CHECK_IDS
    ]


class TestAuditCollector:
    def test_newest_run_and_certificate_countdown(self, db_url: str, tmp_path: Path) -> None:
        """Only the newest run counts: one status per check is 1; the certificate countdown
        follows the clock, negative once expired."""
        clock = Clock(now=NOW)
        services = start_services(db_url, tmp_path, clock)
        try:
            with services.session_factory() as session, session.begin():
                record_audit(
                    session, results=results("tls_disabled"), checked_at=NOW, cert_not_after=None
                )
                record_audit(
                    session,
                    results=results("debug_exposed"),
                    checked_at=NOW + timedelta(hours=1),
                    cert_not_after=NOW + timedelta(days=2),
                )
            value = services.metrics.registry.get_sample_value
            ones = sorted(
                (check, status.value)
                for check in CHECK_IDS
                for status in Status
                if value("registry_monitor_audit_check", {"id": check, "status": status.value})
                == 1.0
            )
            before = value("registry_monitor_tls_cert_expiry_seconds")
            clock.advance(3 * 86400)
            after = value("registry_monitor_tls_cert_expiry_seconds")
            last = value("registry_monitor_audit_last_run_timestamp_seconds")
        finally:
            stop_services(services)

        expected = sorted(
            (check, "fail" if check == "debug_exposed" else "pass") for check in CHECK_IDS
        )
        assert expected == ones
        assert (2 * 86400.0, -86400.0) == (before, after)
        assert (NOW + timedelta(hours=1)).timestamp() == last

    def test_a_store_outage_exports_no_sample_and_counts_an_error(self, tmp_path: Path) -> None:
        """When the store cannot be read, no audit sample is exported and one error counts."""
        engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'store.db'}")
        registry = CollectorRegistry()
        errors = Counter("store_errors", "errors", ["operation"], registry=registry)
        registry.register(AuditCollector(sessionmaker(engine), clock=Clock(), store_errors=errors))
        actual = (
            registry.get_sample_value(
                "registry_monitor_audit_check", {"id": "tls_disabled", "status": "fail"}
            ),
            registry.get_sample_value("store_errors_total", {"operation": "scrape"}),
        )
        engine.dispose()
        assert (None, 1.0) == actual
