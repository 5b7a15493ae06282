"""Audit gauges derived from the newest stored run, computed when Prometheus scrapes.

`registry_monitor_audit_check{id,status}` is 1 for each check's current status and 0 for the
others (14 checks x 4 statuses, bounded); `registry_monitor_tls_cert_expiry_seconds` counts
down to the judged certificate's expiry (negative once expired). Without a stored run (or a
certificate) the families are exported without samples. A store failure counts a store error
(operation `scrape`) and exports none.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.exc import SQLAlchemyError

from monitor.audit.model import Status
from monitor.observability.collectors import PREFIX, StoreReadingCollector
from monitor.store.audit import latest_audit


class AuditCollector(StoreReadingCollector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self._session_factory() as session:
                run = latest_audit(session)
        except SQLAlchemyError:
            self._store_errors.labels(operation="scrape").inc()
            return
        checks = GaugeMetricFamily(
            f"{PREFIX}audit_check",
            "1 for each audit check's status in the newest audit run, 0 for its other statuses.",
            labels=["id", "status"],
        )
        last_run = GaugeMetricFamily(
            f"{PREFIX}audit_last_run_timestamp_seconds", "Unix time of the newest audit run."
        )
        expiry = GaugeMetricFamily(
            f"{PREFIX}tls_cert_expiry_seconds",
            "Seconds until the registry's TLS certificate expires (negative: expired).",
        )
        if run is not None:
            for result in run.results:
                for status in Status:
                    checks.add_metric([result.id, status.value], float(result.status is status))
            last_run.add_metric([], run.checked_at.timestamp())
            if run.cert_not_after is not None:
                expiry.add_metric([], (run.cert_not_after - self._clock()).total_seconds())
        yield checks
        yield last_run
        yield expiry
