"""Every metric registry-monitor exports, built on an injected registry.

Labels are bounded: never a user, address, repository or tag. Counters whose label values are a
known set start with every child at 0, so `rate()` has a series before the first event.

Two cleanup gauges are derived from the store at scrape time (`StoreCollector`), because a
cleanup run may happen in another process (the CLI, another replica): `cleanup_last_success`
and `cleanup_plan_tags` here are kept for the callers that set them but are not exported.
"""

from __future__ import annotations

import dataclasses

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from monitor import __version__
from monitor.events import Client

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip

PULL_METHODS = ("GET", "HEAD")
INTAKE_CODES = ("200", "401", "413", "500", "503")
STORE_OPERATIONS = (
    "commit", "query", "ping", "heartbeat", "scrape", "detect", "deliver", "audit", "reconcile",
)  # fmt: skip
LOG_LINE_RESULTS = ("parsed", "ignored", "malformed")
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")
ROUTES = ("base", "manifest", "blob", "upload", "tags", "catalog", "other")
DELIVERY_RESULTS = ("delivered", "retried", "rate_limited", "failed", "suppressed")
CLEANUP_KINDS = ("plan", "apply", "reconcile", "restore")
RUN_RESULTS = ("ok", "error")
DELETION_RESULTS = ("deleted", "skipped", "failed")
READ_REJECT_REASONS = ("queue_full", "timeout")


@dataclasses.dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    events: Counter
    pulls: Counter
    duplicates: Counter
    events_reconstructed: Counter
    reconcile_digest_lookups: Counter
    quarantined: Counter
    quarantine_expired: Counter
    intake_requests: Counter
    intake_latency: Histogram
    intake_inbox: Histogram
    intake_inbox_retries: Counter
    read_rejected: Counter
    intake_backlog: Gauge
    intake_apply_delay: Histogram
    store_errors: Counter
    commit_seconds: Histogram
    commit_batch_events: Histogram
    build_info: Gauge
    log_lines: Counter
    auth_failures: Counter
    anonymous_challenges: Counter
    access_denied: Counter
    registry_responses: Counter
    alerts: Counter
    alert_deliveries: Counter
    detect_lag: Gauge
    detect_dropped: Counter
    cleanup_runs: Counter
    cleanup_deletions: Counter
    cleanup_bytes_freed: Counter
    cleanup_breaker_trips: Counter


def make_metrics(registry: CollectorRegistry) -> Metrics:
    prefix = "registry_monitor_"
    build_info = Gauge(
        f"{prefix}build_info", "Version of the running registry-monitor.", ["version"],
        registry=registry,
    )  # fmt: skip
    build_info.labels(version=__version__).set(1)
    metrics = Metrics(
        registry=registry,
        events=Counter(
            f"{prefix}events_total",
            "Events stored, by source, action and target kind (duplicates not counted).",
            ["source", "action", "target_kind"],
            registry=registry,
        ),
        pulls=Counter(
            f"{prefix}pulls_total",
            "Manifest pull events stored (duplicates not counted), by client class and HTTP "
            "method (GET, HEAD).",
            ["client", "http_method"],
            registry=registry,
        ),
        duplicates=Counter(
            f"{prefix}events_duplicate_total",
            "Events received again (same event id) and not stored twice.",
            ["source"],
            registry=registry,
        ),
        events_reconstructed=Counter(
            f"{prefix}events_reconstructed_total",
            "Events the registry never delivered as notifications, rebuilt from its log "
            "(notifications lost in a restart, a crash or an outage).",
            registry=registry,
        ),
        reconcile_digest_lookups=Counter(
            f"{prefix}reconcile_digest_lookups_total",
            "Pushes by tag rebuilt from the registry log whose digest was asked of the registry: "
            "resolved, or unresolved (the tag is gone, or the registry could not be asked).",
            ["outcome"],
            registry=registry,
        ),
        quarantined=Counter(
            f"{prefix}quarantined_total",
            "Authenticated inputs that could not be used, kept in quarantine, by reason "
            "(items: a quarantine row holds every unusable item of one request body).",
            ["source", "reason"],
            registry=registry,
        ),
        quarantine_expired=Counter(
            f"{prefix}quarantine_expired_total",
            "Quarantine rows deleted because the quarantine reached `input.quarantine_max_rows`.",
            registry=registry,
        ),
        intake_requests=Counter(
            f"{prefix}intake_requests_total",
            "Notification requests answered, by HTTP status code.",
            ["code"],
            registry=registry,
        ),
        intake_latency=Histogram(
            f"{prefix}intake_latency_seconds",
            "Time from receiving a notification request to answering it.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        intake_inbox=Histogram(
            f"{prefix}intake_inbox_seconds",
            "Time a notification's answer waited for the durable commit of its body to the "
            "intake inbox: the store's share of intake_latency_seconds.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        intake_inbox_retries=Counter(
            f"{prefix}intake_inbox_retries_total",
            "Commits of notification bodies to the intake inbox tried again instead of "
            "refused, by reason: an inbox file refused it as locked (locked), or PostgreSQL's "
            "connection had failed and the bodies went again on a new one (reconnected).",
            ["reason"],
            registry=registry,
        ),
        read_rejected=Counter(
            f"{prefix}read_rejected_total",
            "Read API requests answered 503 because `http.read_slots` were busy, by reason: "
            "the wait queue was full (queue_full) or no slot came within "
            "`http.read_wait_seconds` (timeout).",
            ["reason"],
            registry=registry,
        ),
        intake_backlog=Gauge(
            f"{prefix}intake_backlog",
            "Notification bodies answered and waiting in the intake inbox to be applied.",
            registry=registry,
        ),
        intake_apply_delay=Histogram(
            f"{prefix}intake_apply_delay_seconds",
            "Time from answering a notification to committing its events.",
            buckets=(*LATENCY_BUCKETS, 10.0, 30.0, 60.0, 300.0),
            registry=registry,
        ),
        store_errors=Counter(
            f"{prefix}store_errors_total",
            "Store operations that failed, by operation.",
            ["operation"],
            registry=registry,
        ),
        commit_seconds=Histogram(
            f"{prefix}store_commit_seconds",
            "Duration of one group commit of the intake writer.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        commit_batch_events=Histogram(
            f"{prefix}store_commit_batch_events",
            "Events per group commit.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=registry,
        ),
        build_info=build_info,
        log_lines=Counter(
            f"{prefix}log_lines_total",
            "Registry log lines read, by result (parsed, ignored, malformed).",
            ["result"],
            registry=registry,
        ),
        auth_failures=Counter(
            f"{prefix}auth_failures_total",
            "Failed logins stored from the registry's logs (credentials sent and rejected); "
            "a line read again counts nothing.",
            registry=registry,
        ),
        anonymous_challenges=Counter(
            f"{prefix}anonymous_challenges_total",
            "Anonymous 401 challenges seen in the logs (the normal first request of a client).",
            registry=registry,
        ),
        access_denied=Counter(
            f"{prefix}access_denied_total",
            "Requests denied for lack of permission (token scope, 403) stored from the logs.",
            registry=registry,
        ),
        registry_responses=Counter(
            f"{prefix}registry_responses_total",
            "Registry responses seen in access logs, by status class and route kind.",
            ["status_class", "route"],
            registry=registry,
        ),
        alerts=Counter(
            f"{prefix}alerts_total",
            "Alerts raised (a new fingerprint, or a resolved one firing again), by rule, "
            "severity and mode (alert or shadow).",
            ["rule", "severity", "mode"],
            registry=registry,
        ),
        alert_deliveries=Counter(
            f"{prefix}alert_deliveries_total",
            "Slack delivery attempts by result: delivered, retried, rate_limited, failed, "
            "suppressed (held for the hourly digest).",
            ["result"],
            registry=registry,
        ),
        detect_lag=Gauge(
            f"{prefix}detect_lag_seconds",
            "Age of the newest event the detection job has processed, at its last pass.",
            registry=registry,
        ),
        detect_dropped=Counter(
            f"{prefix}detection_windows_dropped_total",
            "Detection windows and incidents dropped beyond the detector's cap "
            "(a flood of new accounts or addresses).",
            registry=registry,
        ),
        cleanup_runs=Counter(
            f"{prefix}cleanup_runs_total",
            "Cleanup job runs, by kind (plan, apply, reconcile, restore) and result (ok, error).",
            ["kind", "result"],
            registry=registry,
        ),
        cleanup_deletions=Counter(
            f"{prefix}cleanup_deletions_total",
            "Tags cleanup acted on, by result (deleted, skipped, failed).",
            ["result"],
            registry=registry,
        ),
        cleanup_bytes_freed=Counter(
            f"{prefix}cleanup_bytes_freed_total",
            "Estimated bytes freed (after garbage collection) by applied plans.",
            registry=registry,
        ),
        cleanup_breaker_trips=Counter(
            f"{prefix}cleanup_breaker_trips_total",
            "Applies stopped or narrowed by a circuit breaker (run limit, repository share).",
            registry=registry,
        ),
    )
    preinitialise(metrics)
    return metrics


def preinitialise(metrics: Metrics) -> None:
    """Create every child of the counters whose label values are a known, bounded set."""
    for client in Client:
        for method in PULL_METHODS:
            metrics.pulls.labels(client=client.value, http_method=method)
    for code in INTAKE_CODES:
        metrics.intake_requests.labels(code=code)
    for reason in READ_REJECT_REASONS:
        metrics.read_rejected.labels(reason=reason)
    for operation in STORE_OPERATIONS:
        metrics.store_errors.labels(operation=operation)
    for result in LOG_LINE_RESULTS:
        metrics.log_lines.labels(result=result)
    for status_class in STATUS_CLASSES:
        for route in ROUTES:
            metrics.registry_responses.labels(status_class=status_class, route=route)
    for result in DELIVERY_RESULTS:
        metrics.alert_deliveries.labels(result=result)
    for kind in CLEANUP_KINDS:
        for result in RUN_RESULTS:
            metrics.cleanup_runs.labels(kind=kind, result=result)
    for result in DELETION_RESULTS:
        metrics.cleanup_deletions.labels(result=result)
