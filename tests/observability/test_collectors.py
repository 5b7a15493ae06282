from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from monitor.main import deliver_once, detect_once
from monitor.observability.collectors import StoreCollector
from tests.pipeline.support import START, Clock, post_scenario, start_services, stop_services


class TestStoreCollector:
    def test_gauges_after_the_scenario(self, db_url, tmp_path):
        """After the capture: outbox depth by state, tracked and unused tags, newest event age,
        alerts raised, deliveries and detection lag."""
        clock = Clock()
        services = start_services(db_url, tmp_path, clock)
        post_scenario(services)
        clock.advance(5)
        detect_once(services)
        pending = services.metrics.registry.get_sample_value(
            "registry_monitor_alert_outbox_depth", {"state": "pending"}
        )
        deliver_once(services)
        clock.now = START + timedelta(days=31)
        value = services.metrics.registry.get_sample_value
        actual = (
            pending,
            value("registry_monitor_alert_outbox_depth", {"state": "done"}),
            value("registry_monitor_tags_tracked"),
            value("registry_monitor_tags_unused", {"days": "30"}),
            value("registry_monitor_tags_unused", {"days": "90"}),
            value("registry_monitor_newest_event_age_seconds", {"source": "log"}) is not None,
            value(
                "registry_monitor_alerts_total",
                {"rule": "off_hours_write", "severity": "info", "mode": "shadow"},
            ),
            value("registry_monitor_alert_deliveries_total", {"result": "delivered"}),
            value("registry_monitor_detect_lag_seconds"),
        )
        stop_services(services)
        tracked = actual[2]
        expected = (2.0, 2.0, tracked, tracked, 0.0, True, 1.0, 2.0, 65.0)
        assert expected == (*actual[:8], round(actual[8] or 0.0))

    def test_a_store_outage_exports_nothing_and_counts_an_error(self, tmp_path: Path):
        """When the store cannot be read, the scrape has none of the gauges and one error."""
        engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'store.db'}")
        registry = CollectorRegistry()
        errors = Counter("store_errors", "errors", ["operation"], registry=registry)
        registry.register(StoreCollector(sessionmaker(engine), clock=Clock(), store_errors=errors))
        actual = (
            registry.get_sample_value("registry_monitor_tags_tracked"),
            registry.get_sample_value("store_errors_total", {"operation": "scrape"}),
        )
        engine.dispose()
        assert (None, 1.0) == actual
