"""monitor/observability/metrics.py: counters that start at 0, and pulls by client and method."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from monitor.events import Client
from monitor.observability.metrics import make_metrics
from tests.pipeline.support import Clock, post_scenario, start_services, stop_services

PREINITIALISED = {
    "registry_monitor_alert_deliveries_total": [
        {"result": r} for r in ("delivered", "retried", "rate_limited", "failed", "suppressed")
    ],
    "registry_monitor_cleanup_runs_total": [
        {"kind": k, "result": r}
        for k in ("plan", "apply", "reconcile", "restore")
        for r in ("ok", "error")
    ],
    "registry_monitor_cleanup_deletions_total": [
        {"result": r} for r in ("deleted", "skipped", "failed")
    ],
    "registry_monitor_log_lines_total": [{"result": r} for r in ("parsed", "ignored", "malformed")],
    "registry_monitor_intake_requests_total": [{"code": c} for c in ("200", "401", "413", "503")],
    "registry_monitor_store_errors_total": [
        {"operation": o}
        for o in ("commit", "query", "ping", "heartbeat", "scrape", "detect", "deliver")
    ],
    "registry_monitor_pulls_total": [
        {"client": c.value, "http_method": m} for c in Client for m in ("GET", "HEAD")
    ],
}


class TestPreinitialise:
    def test_known_children_export_zero_before_any_event(self) -> None:
        """Every child of a counter with a known label set is exported at 0 on a fresh registry."""
        registry = CollectorRegistry()
        make_metrics(registry)
        actual = {
            name: [registry.get_sample_value(name, labels) for labels in children]
            for name, children in PREINITIALISED.items()
        }
        expected = {name: [0.0] * len(children) for name, children in PREINITIALISED.items()}
        assert expected == actual

    def test_cleanup_gauges_come_only_from_the_store(self) -> None:
        """The process defines no cleanup gauges of its own: the store collector exports them,
        so a scrape never carries the same name twice."""
        registry = CollectorRegistry()
        make_metrics(registry)
        names = {family.name for family in registry.collect()}
        expected = (False, False)
        actual = (
            "registry_monitor_cleanup_last_success_timestamp_seconds" in names,
            "registry_monitor_cleanup_plan_tags" in names,
        )
        assert expected == actual


class TestPulls:
    def test_manifest_pulls_of_the_capture_by_client_and_method(
        self, db_url: str, tmp_path: Path
    ) -> None:
        """The captured scenario's manifest pulls are counted by client class and method
        (skopeo GET 6, curl GET 1 and HEAD 1); blob pulls and duplicates are not."""
        services = start_services(db_url, tmp_path, Clock())
        post_scenario(services)
        post_scenario(services)
        value = services.metrics.registry.get_sample_value
        actual = {
            (client.value, method): value(
                "registry_monitor_pulls_total", {"client": client.value, "http_method": method}
            )
            for client in Client
            for method in ("GET", "HEAD")
        }
        stop_services(services)
        expected = {(client.value, method): 0.0 for client in Client for method in ("GET", "HEAD")}
        expected |= {("skopeo", "GET"): 6.0, ("other", "GET"): 1.0, ("other", "HEAD"): 1.0}
        assert expected == actual
