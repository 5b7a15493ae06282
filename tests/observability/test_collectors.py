from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from monitor.cleanup.journal import JournalEntry, Outcome
from monitor.cleanup.plan import Decision, Plan, Reason, TagDecision
from monitor.observability.collectors import StoreCollector, TagGauges
from monitor.pipeline.delivery import deliver_once
from monitor.pipeline.detection import detect_once
from monitor.store.cleanup_plans import PlanState, save_plan, set_plan_state
from monitor.store.inventory import replace_registry_tags
from monitor.store.journal import record_entry
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
        assert services.tag_gauges is not None
        services.tag_gauges.refresh()  # `serve`'s job `tag-gauges`
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

    def test_the_tag_gauges_are_the_last_count_not_read_at_the_scrape(self, db_url, tmp_path):
        """Before the first count the tag gauges have no sample; a scrape exports the last
        count (the tag state is not read then) until the next one."""
        clock = Clock()
        services = start_services(db_url, tmp_path, clock)
        assert services.tag_gauges is not None
        value = services.metrics.registry.get_sample_value
        tracked = "registry_monitor_tags_tracked"
        before_count = value(tracked)
        services.tag_gauges.refresh()
        empty = value(tracked)
        post_scenario(services)
        still = value(tracked)
        services.tag_gauges.refresh()
        counted = value(tracked)
        last = services.tag_gauges.last()
        stop_services(services)
        assert (None, 0.0, 0.0, True, clock()) == (
            before_count,
            empty,
            still,
            (counted or 0) > 0,
            last and last.counted_at,
        )

    def test_detection_lag_is_the_wait_of_the_oldest_unjudged_event(self, db_url, tmp_path):
        """Before a pass the lag is the time since the first waiting event was received; once a
        pass has judged everything it is 0."""
        clock = Clock()
        services = start_services(db_url, tmp_path, clock)
        lag = "registry_monitor_detection_lag_seconds"
        value = services.metrics.registry.get_sample_value
        empty = value(lag)
        post_scenario(services)
        clock.advance(100)
        waiting = value(lag)
        detect_once(services)
        judged = value(lag)
        stop_services(services)
        assert (0.0, 100.0, 0.0) == (empty, waiting, judged)

    def test_a_store_outage_exports_nothing_and_counts_an_error(self, tmp_path: Path):
        """When the store cannot be read, the scrape has none of the gauges and one error."""
        engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'store.db'}")
        registry = CollectorRegistry()
        errors = Counter("store_errors", "errors", ["operation"], registry=registry)
        factory = sessionmaker(engine)
        gauges = TagGauges(factory, clock=Clock())
        collector = StoreCollector(factory, clock=Clock(), store_errors=errors, tag_gauges=gauges)
        registry.register(collector)
        actual = (
            registry.get_sample_value("registry_monitor_tags_tracked"),
            registry.get_sample_value("store_errors_total", {"operation": "scrape"}),
        )
        engine.dispose()
        assert (None, 1.0) == actual


def _plan(created_at: datetime, decisions: list[Decision]) -> Plan:
    return Plan(
        created_at=created_at,
        decisions=tuple(
            TagDecision("team/app", f"t{i}", f"sha256:{i:064x}", decision, Reason.PINNED)
            for i, decision in enumerate(decisions)
        ),
        actions=(),
        bytes_freed=0,
    )


class TestCleanupGauges:
    def test_derived_from_the_store_whoever_ran_cleanup(self, db_url: str, tmp_path: Path):
        """Plan counts come from the newest stored plan and each kind's last success from the
        store (newest plan, newest applied plan, last reconciliation, newest restore), so a
        run made by another process shows on this one's scrape."""
        clock = Clock()
        services = start_services(db_url, tmp_path, clock)
        value = services.metrics.registry.get_sample_value
        before = value("registry_monitor_cleanup_plan_tags", {"decision": "delete"})
        at = {kind: START - timedelta(hours=h) for kind, h in (("plan", 1), ("apply", 2))}
        at |= {"reconcile": START - timedelta(hours=3), "restore": START - timedelta(hours=4)}
        old = _plan(START - timedelta(days=1), [Decision.DELETE] * 5)
        new = _plan(at["plan"], [Decision.DELETE, Decision.DELETE, Decision.KEEP])
        with services.session_factory() as session, session.begin():
            replace_registry_tags(
                session, repository="team/app", tags={"v1": ("sha256:" + "a" * 64, None)},
                now=at["reconcile"],
            )  # fmt: skip
            save_plan(session, old, policy_digest="p")
            set_plan_state(session, old.plan_id, PlanState.APPLIED, at=at["apply"])
            save_plan(session, new, policy_digest="p")
            record_entry(
                session,
                JournalEntry(
                    plan_id=old.plan_id, repository="team/app", digest="sha256:" + "b" * 64,
                    tags=("t0",), outcome=Outcome.RESTORED, reason="restore", at=at["restore"],
                ),
            )  # fmt: skip
        actual = (
            before,
            {
                d: value("registry_monitor_cleanup_plan_tags", {"decision": d})
                for d in ("delete", "keep", "protected", "unknown")
            },
            {
                kind: value(
                    "registry_monitor_cleanup_last_success_timestamp_seconds", {"kind": kind}
                )
                for kind in at
            },
        )
        stop_services(services)
        expected = (
            None,
            {"delete": 2.0, "keep": 1.0, "protected": 0.0, "unknown": 0.0},
            {kind: moment.timestamp() for kind, moment in at.items()},
        )
        assert expected == actual
