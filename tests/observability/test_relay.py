"""Metric updates made in the applier's child process and replayed here count as if made here."""

from __future__ import annotations

from collections import deque

from prometheus_client import CollectorRegistry

from monitor.observability.metrics import Metrics, make_metrics
from monitor.observability.relay import Op, relay_metrics, replay, take


def updates(metrics: Metrics) -> None:
    for action in ("push", "pull", "push"):
        metrics.events.labels(source="notification", action=action, target_kind="manifest").inc()
    metrics.auth_failures.inc()
    metrics.quarantine_expired.inc(4)
    metrics.commit_seconds.observe(0.002)
    metrics.intake_apply_delay.observe(0.05)
    metrics.intake_apply_delay.observe(3.0)
    metrics.detect_lag.set(12.5)  # detection, when it runs in the applier's process
    metrics.detect_lag.set(0.5)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


class TestRelay:
    def test_replayed_updates_equal_the_same_updates_made_directly(self) -> None:
        direct = make_metrics(CollectorRegistry())
        updates(direct)
        ops: deque[Op] = deque()
        updates(relay_metrics(ops))
        replayed = make_metrics(CollectorRegistry())
        replay(replayed, take(ops))
        assert samples(direct.registry) == samples(replayed.registry)

    def test_increments_are_summed_per_metric_and_labels(self) -> None:
        """A batch of many events costs the parent one call per metric and labels."""
        ops: deque[Op] = deque()
        updates(relay_metrics(ops))
        taken = take(ops)
        assert [] == list(ops)
        increments = sorted(op for op in taken if op[2] == "inc")
        pull = (("action", "pull"), ("source", "notification"), ("target_kind", "manifest"))
        push = (("action", "push"), ("source", "notification"), ("target_kind", "manifest"))
        assert [
            ("auth_failures", (), "inc", 1.0),
            ("events", pull, "inc", 1.0),
            ("events", push, "inc", 2.0),
            ("quarantine_expired", (), "inc", 4.0),
        ] == increments
        assert 3 == len([op for op in taken if op[2] == "observe"])

    def test_a_gauge_keeps_the_last_value_set(self) -> None:
        """Gauges set in the child end at the child's last value, whatever came before."""
        ops: deque[Op] = deque()
        updates(relay_metrics(ops))
        replayed = make_metrics(CollectorRegistry())
        replayed.detect_lag.set(99.0)
        replay(replayed, take(ops))
        assert 0.5 == replayed.registry.get_sample_value("registry_monitor_detect_lag_seconds")

    def test_what_names_no_metric_is_ignored(self) -> None:
        metrics = make_metrics(CollectorRegistry())
        replay(
            metrics,
            [("registry", (), "inc", 1.0), ("events", (), "clear", 1.0), ("nothing", (), "inc", 1)],
        )
        assert samples(make_metrics(CollectorRegistry()).registry) == samples(metrics.registry)
