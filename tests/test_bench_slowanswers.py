"""The benchmarks' count of slow intake answers, read from what `serve` exports."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from bench.slowanswers import Slow, between, counts
from monitor.observability.metrics import make_metrics


def test_slow_answers_slow_inbox_commits_and_retries_are_counted_between_two_scrapes() -> None:
    metrics = make_metrics(CollectorRegistry())
    metrics.intake_latency.observe(0.2)  # before the measurement: not counted
    metrics.intake_inbox_retries.labels(reason="locked").inc()  # before: not counted
    before = counts(generate_latest(metrics.registry).decode())
    for answer, commit in [(0.001, 0.0008), (0.07, 0.002), (0.12, 0.11), (0.3, 0.06)]:
        metrics.intake_latency.observe(answer)
        metrics.intake_inbox.observe(commit)
    metrics.intake_inbox_retries.labels(reason="locked").inc(3)
    metrics.intake_inbox_retries.labels(reason="reconnected").inc()
    after = counts(generate_latest(metrics.registry).decode())

    slow = between(before, after)

    assert Slow(4, over_50=3, over_100=2, inbox_over_50=2, inbox_over_100=1, retries=4) == slow
    assert "3 / 2 (2 / 1)" == slow.brief()


def test_a_server_without_the_histograms_counts_nothing() -> None:
    assert Slow(0, 0, 0, 0, 0) == between(counts("not found"), counts("# nothing here\n"))
