"""Render the Grafana dashboards of this directory from one description.

    python dashboards/generate.py          # rewrite the JSON files
    python dashboards/generate.py --check  # exit 1 when a committed file differs

Every panel reads from the `datasource` variable and filters on `job` and `instance`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
M = 'job=~"$job", instance=~"$instance"'


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    unit: str
    targets: tuple[Target, ...]
    kind: str = "timeseries"
    stack: bool = False


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    default_job: str
    instance_metric: str
    rows: tuple[Row, ...]
    tags: tuple[str, ...] = field(default=("registry-monitor",))


def ts(title: str, description: str, unit: str, *targets: Target, stack: bool = False) -> Panel:
    return Panel(title, description, unit, targets, stack=stack)


def stat(title: str, description: str, unit: str, *targets: Target) -> Panel:
    return Panel(title, description, unit, targets, kind="stat")


def rate(metric: str, by: str, extra: str = "") -> str:
    selector = f"{M}, {extra}" if extra else M
    return f"sum by ({by}) (rate({metric}{{{selector}}}[$__rate_interval]))"


def quantile(q: float, metric: str, by: str = "") -> str:
    group = f"le, {by}" if by else "le"
    return (
        f"histogram_quantile({q}, sum by ({group}) "
        f"(rate({metric}_bucket{{{M}}}[$__rate_interval])))"
    )


def either(native: str, bridged: str) -> str:
    """The registry's own series (distribution 3.x), else the bridged ones (2.8)."""
    return f"{native} or {bridged}"


T = Target

OVERVIEW = Dashboard(
    uid="registry-monitor-overview",
    title="registry-monitor / Overview",
    description="Events, intake health, security signals, alerts and state of registry-monitor.",
    default_job="registry-monitor",
    instance_metric="registry_monitor_build_info",
    rows=(
        Row(
            "Events",
            (
                ts(
                    "Events stored by action",
                    "Events committed per second, by action (duplicates not counted).",
                    "ops",
                    T(rate("registry_monitor_events_total", "action"), "{{action}}"),
                    stack=True,
                ),
                ts(
                    "Events by source and target kind",
                    "Events per second, by where they came from and what they are about.",
                    "ops",
                    T(
                        rate("registry_monitor_events_total", "source, target_kind"),
                        "{{source}} {{target_kind}}",
                    ),
                ),
                ts(
                    "Pulls by client class",
                    "Manifest pulls stored per second, by client class (from the user agent) "
                    "and method: HEAD is how containerd and kubelet check for updates.",
                    "ops",
                    T(
                        rate("registry_monitor_pulls_total", "client, http_method"),
                        "{{client}} {{http_method}}",
                    ),
                    stack=True,
                ),
                ts(
                    "Events rebuilt from the registry log",
                    "Events the registry never delivered as notifications (lost in a restart, "
                    "a crash or an outage), rebuilt from its log; any fires "
                    "RegistryNotificationsLost.",
                    "ops",
                    T(rate("registry_monitor_events_reconstructed_total", "job"), "rebuilt"),
                ),
                ts(
                    "Duplicate notifications",
                    "Events received again with an id already stored (the registry re-sends "
                    "after a timeout); acknowledged and not stored twice.",
                    "ops",
                    T(rate("registry_monitor_events_duplicate_total", "source"), "{{source}}"),
                ),
            ),
        ),
        Row(
            "Intake and store",
            (
                ts(
                    "Intake latency p50 / p99",
                    "Time from receiving a notification to answering it; the registry sends "
                    "one at a time, so this bounds how fast its queue drains. The third line "
                    "is the p99 of the answers' wait for the inbox's durable commit: where it "
                    "follows the answers' p99, the store (its disk) holds them, not the process.",
                    "s",
                    T(quantile(0.5, "registry_monitor_intake_latency_seconds"), "p50"),
                    T(quantile(0.99, "registry_monitor_intake_latency_seconds"), "p99"),
                    T(quantile(0.99, "registry_monitor_intake_inbox_seconds"), "p99 inbox commit"),
                ),
                ts(
                    "Intake answers by code",
                    "Notification requests answered per second by HTTP status; 503 means the "
                    "intake inbox could not commit (or was full) and the registry will retry.",
                    "reqps",
                    T(rate("registry_monitor_intake_requests_total", "code"), "{{code}}"),
                ),
                ts(
                    "Intake backlog",
                    "Notification bodies answered and waiting in the intake inbox for their "
                    "events to be stored (the RegistryMonitorIntakeBacklog alert fires above "
                    "1,000 for 10 minutes; at notifications.inbox_max intake answers 503).",
                    "short",
                    T(
                        f"max by (instance) (registry_monitor_intake_backlog{{{M}}})",
                        "{{instance}}",
                    ),
                ),
                ts(
                    "Answer to stored, p50 / p99",
                    "Time from answering a notification to committing its events in the store.",
                    "s",
                    T(quantile(0.5, "registry_monitor_intake_apply_delay_seconds"), "p50"),
                    T(quantile(0.99, "registry_monitor_intake_apply_delay_seconds"), "p99"),
                ),
                ts(
                    "Quarantined inputs",
                    "Authenticated inputs that could not be used, by source and reason.",
                    "ops",
                    T(
                        rate("registry_monitor_quarantined_total", "source, reason"),
                        "{{source}} {{reason}}",
                    ),
                ),
                ts(
                    "Store errors",
                    "Failed store operations per second, by operation.",
                    "ops",
                    T(rate("registry_monitor_store_errors_total", "operation"), "{{operation}}"),
                ),
                ts(
                    "Store commit p99",
                    "Duration of one group commit of the intake writer.",
                    "s",
                    T(quantile(0.99, "registry_monitor_store_commit_seconds"), "p99"),
                ),
                ts(
                    "Events per commit p50 / p99",
                    "How many events one group commit carries.",
                    "short",
                    T(quantile(0.5, "registry_monitor_store_commit_batch_events"), "p50"),
                    T(quantile(0.99, "registry_monitor_store_commit_batch_events"), "p99"),
                ),
            ),
        ),
        Row(
            "Security",
            (
                ts(
                    "Auth failures vs anonymous challenges",
                    "Logins that sent wrong credentials, against the anonymous 401 every "
                    "client gets first (normal), and requests denied to authenticated users.",
                    "ops",
                    T(rate("registry_monitor_auth_failures_total", "job"), "auth failures"),
                    T(
                        rate("registry_monitor_anonymous_challenges_total", "job"),
                        "anonymous challenges",
                    ),
                    T(rate("registry_monitor_access_denied_total", "job"), "access denied"),
                ),
                ts(
                    "Alerts by rule",
                    "Detections raised per second, by rule, severity and mode.",
                    "ops",
                    T(
                        rate("registry_monitor_alerts_total", "rule, severity, mode"),
                        "{{rule}} {{severity}} {{mode}}",
                    ),
                    stack=True,
                ),
                ts(
                    "Slack deliveries by result",
                    "Alert deliveries per second: delivered, retried, rate limited, failed, "
                    "suppressed.",
                    "ops",
                    T(rate("registry_monitor_alert_deliveries_total", "result"), "{{result}}"),
                ),
                ts(
                    "Alert outbox depth",
                    "Alerts stored and waiting for delivery, by state.",
                    "short",
                    T(f"sum by (state) (registry_monitor_alert_outbox_depth{{{M}}})", "{{state}}"),
                ),
                ts(
                    "Detection lag",
                    "Unjudged: seconds since the oldest event detection has not judged yet was "
                    "received, read from the store (0 when caught up; the "
                    "RegistryMonitorDetectionLagging alert fires above 300 s for 10 minutes). "
                    "Newest judged: age of the newest event the last pass of this replica "
                    "judged.",
                    "s",
                    T(f"max(registry_monitor_detection_lag_seconds{{{M}}})", "unjudged"),
                    T(f"max(registry_monitor_detect_lag_seconds{{{M}}})", "newest judged"),
                ),
                ts(
                    "Detection windows dropped",
                    "Windows and open incidents the detector dropped per second because it held "
                    "more than 50,000 of a kind: a flood of failed logins naming new accounts "
                    "or addresses (RegistryMonitorAuthFailureBurst fires on the failures). A "
                    "brute force under way keeps its window: the windows with fewest entries "
                    "go first.",
                    "ops",
                    T(
                        rate("registry_monitor_detection_windows_dropped_total", "instance"),
                        "{{instance}}",
                    ),
                ),
                ts(
                    "Registry audit: failing checks",
                    "Security checks of the registry's configuration that fail in the newest "
                    "audit (1 while failing), by check id; GET /v1/audit has the detail and "
                    "the line to change.",
                    "short",
                    T(
                        f'max by (id) (registry_monitor_audit_check{{{M}, status="fail"}}) == 1',
                        "{{id}}",
                    ),
                ),
                stat(
                    "Registry TLS certificate expires in",
                    "Time left on the registry's certificate (served, else configured) as of "
                    "the newest audit; negative once expired.",
                    "s",
                    T(f"min(registry_monitor_tls_cert_expiry_seconds{{{M}}})", "expires in"),
                ),
            ),
        ),
        Row(
            "Log ingest",
            (
                ts(
                    "Log lines by result",
                    "Registry log lines read per second: parsed, ignored, malformed.",
                    "ops",
                    T(rate("registry_monitor_log_lines_total", "result"), "{{result}}"),
                ),
                ts(
                    "Registry responses by route and status class",
                    "The registry's answers as seen in its access log.",
                    "reqps",
                    T(
                        rate("registry_monitor_registry_responses_total", "route, status_class"),
                        "{{route}} {{status_class}}",
                    ),
                ),
            ),
        ),
        Row(
            "State",
            (
                ts(
                    "Newest event age by source",
                    "Seconds since the newest stored event of each source; a steady climb "
                    "while the registry is busy means events stopped arriving.",
                    "s",
                    T(
                        f"max by (source) (registry_monitor_newest_event_age_seconds{{{M}}})",
                        "{{source}}",
                    ),
                ),
                ts(
                    "Tags tracked and unused",
                    "Tags known to the monitor, and those not pulled for 30 and 90 days.",
                    "short",
                    T(f"sum(registry_monitor_tags_tracked{{{M}}})", "tracked"),
                    T(
                        f"sum by (days) (registry_monitor_tags_unused{{{M}}})",
                        "unused {{days}} days",
                    ),
                ),
                stat(
                    "Monitor targets up",
                    "Scrape targets of the monitor that answer.",
                    "short",
                    T(f"sum(up{{{M}}})", "up"),
                ),
                stat(
                    "Version",
                    "Version of the running registry-monitor.",
                    "short",
                    T(f"count by (version) (registry_monitor_build_info{{{M}}})", "{{version}}"),
                ),
            ),
        ),
    ),
)

CLEANUP = Dashboard(
    uid="registry-monitor-cleanup",
    title="registry-monitor / Cleanup",
    description="Cleanup plans, deletions, freed space and the safety breaker.",
    default_job="registry-monitor",
    instance_metric="registry_monitor_build_info",
    rows=(
        Row(
            "Plans",
            (
                ts(
                    "Cleanup runs by kind and result",
                    "Plan, apply, reconcile and restore runs of this process's scheduled jobs, "
                    "ok or error (runs of the CLI show in the two store-derived panels).",
                    "short",
                    T(
                        f"sum by (kind, result) (increase(registry_monitor_cleanup_runs_total"
                        f"{{{M}}}[$__rate_interval]))",
                        "{{kind}} {{result}}",
                    ),
                ),
                ts(
                    "Tags per decision in the newest plan",
                    "How the newest stored plan decided about each tag, whoever made it.",
                    "short",
                    T(
                        f"sum by (decision) (registry_monitor_cleanup_plan_tags{{{M}}})",
                        "{{decision}}",
                    ),
                    stack=True,
                ),
                ts(
                    "Time since the last successful run",
                    "Seconds since each kind of cleanup run last succeeded, as the store "
                    "records it (scheduled, CLI or another replica).",
                    "s",
                    T(
                        "time() - max by (kind) "
                        f"(registry_monitor_cleanup_last_success_timestamp_seconds{{{M}}})",
                        "{{kind}}",
                    ),
                ),
            ),
        ),
        Row(
            "Deletions",
            (
                ts(
                    "Deletions by result",
                    "Tag deletions attempted by this process's applies: deleted, skipped, "
                    "failed (the journal, `GET /v1/cleanup/plans/{id}`, has every apply's).",
                    "short",
                    T(
                        f"sum by (result) (increase(registry_monitor_cleanup_deletions_total"
                        f"{{{M}}}[$__rate_interval]))",
                        "{{result}}",
                    ),
                ),
                ts(
                    "Bytes freed",
                    "Estimated bytes freed by applied plans (before garbage collection).",
                    "bytes",
                    T(
                        f"sum(increase(registry_monitor_cleanup_bytes_freed_total{{{M}}}"
                        "[$__rate_interval]))",
                        "freed",
                    ),
                ),
                ts(
                    "Breaker trips",
                    "Applies stopped because a plan exceeded the deletion limits.",
                    "short",
                    T(
                        f"sum(increase(registry_monitor_cleanup_breaker_trips_total{{{M}}}"
                        "[$__rate_interval]))",
                        "trips",
                    ),
                ),
            ),
        ),
    ),
)

REGISTRY = Dashboard(
    uid="registry-monitor-registry",
    title="registry-monitor / Registry",
    description="The registry's own metrics from its debug listener (http.debug.prometheus).",
    default_job="registry",
    instance_metric="registry_http_requests_total",
    rows=(
        Row(
            "HTTP",
            (
                ts(
                    "Requests by handler and code",
                    "Requests per second, by route handler and HTTP status.",
                    "reqps",
                    T(
                        rate("registry_http_requests_total", "handler, code"),
                        "{{handler}} {{code}}",
                    ),
                ),
                ts(
                    "Errors by handler and code",
                    "4xx and 5xx answers per second; a 401 on `base` is the normal challenge.",
                    "reqps",
                    T(
                        rate("registry_http_requests_total", "handler, code", 'code=~"4..|5.."'),
                        "{{handler}} {{code}}",
                    ),
                ),
                ts(
                    "Request duration p99 by handler",
                    "99th percentile time to answer, by route handler.",
                    "s",
                    T(
                        quantile(0.99, "registry_http_request_duration_seconds", "handler"),
                        "{{handler}}",
                    ),
                ),
                ts(
                    "In-flight requests by handler",
                    "Requests being served right now.",
                    "short",
                    T(
                        f"sum by (handler) (registry_http_in_flight_requests{{{M}}})",
                        "{{handler}}",
                    ),
                ),
                ts(
                    "Storage action p99",
                    "99th percentile duration of storage driver actions.",
                    "s",
                    T(
                        quantile(0.99, "registry_storage_action_seconds", "driver, action"),
                        "{{driver}} {{action}}",
                    ),
                ),
                stat(
                    "Registry targets up",
                    "Registry debug listeners that answer scrapes.",
                    "short",
                    T(f"sum(up{{{M}}})", "up"),
                ),
            ),
        ),
        Row(
            "Notifications",
            (
                ts(
                    "Notification events by type",
                    "Events queued, delivered (successes), answered non-2xx (failures) and "
                    "not answered (errors) per endpoint: the registry's own metrics on "
                    "distribution 3.x, else registry-monitor's bridge of /debug/vars (2.8).",
                    "ops",
                    T(
                        either(
                            rate("registry_notifications_events_total", "type, endpoint"),
                            rate(
                                "registry_monitor_registry_notifications_events_total",
                                "type, endpoint",
                            ),
                        ),
                        "{{endpoint}} {{type}}",
                    ),
                ),
                ts(
                    "Notifications pending",
                    "Events in the registry's in-memory queue per endpoint; lost if the "
                    "registry restarts (3.x metric, else the /debug/vars bridge).",
                    "short",
                    T(
                        either(
                            f"sum by (endpoint) (registry_notifications_pending_total{{{M}}})",
                            "sum by (endpoint) "
                            f"(registry_monitor_registry_notifications_pending{{{M}}})",
                        ),
                        "{{endpoint}}",
                    ),
                ),
                ts(
                    "Notification delivery status",
                    "Answers of each endpoint by HTTP status (3.x metric, else the "
                    "/debug/vars bridge).",
                    "ops",
                    T(
                        either(
                            rate("registry_notifications_status_total", "code, endpoint"),
                            rate(
                                "registry_monitor_registry_notifications_status_total",
                                "code, endpoint",
                            ),
                        ),
                        "{{endpoint}} {{code}}",
                    ),
                ),
                stat(
                    "Debug listener read by the bridge",
                    "1 while registry-monitor reads the registry's /debug/vars (the 2.8 queue "
                    "above comes from it), 0 when it cannot; RegistryMonitorRegistryDebugDown "
                    "fires after 10 minutes at 0.",
                    "short",
                    T(f"min(registry_monitor_registry_debug_up{{{M}}})", "read"),
                ),
            ),
        ),
    ),
)

DASHBOARDS = {
    "registry-monitor-overview.json": OVERVIEW,
    "registry-monitor-cleanup.json": CLEANUP,
    "registry.json": REGISTRY,
}


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    width, height = (6, 4) if panel.kind == "stat" else (12, 8)
    defaults: dict[str, Any] = {"unit": panel.unit}
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "fillOpacity": 20 if panel.stack else 0,
            "stacking": {"mode": "normal" if panel.stack else "none", "group": "A"},
        }
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": height, "w": width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}
        if panel.kind == "timeseries"
        else {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
        "targets": [
            {
                "refId": chr(ord("A") + index),
                "datasource": DATASOURCE,
                "expr": target.expr,
                "legendFormat": target.legend,
                "range": True,
            }
            for index, target in enumerate(panel.targets)
        ],
    }


def _variables(dashboard: Dashboard) -> list[dict[str, Any]]:
    job = dashboard.default_job
    return [
        {
            "name": "datasource",
            "label": "Data Source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
            "regex": "",
        },
        {
            "name": "job",
            "label": "Job",
            "type": "query",
            "datasource": DATASOURCE,
            "query": {"query": "label_values(up, job)", "refId": "job"},
            "definition": "label_values(up, job)",
            "current": {"selected": True, "text": job, "value": job},
            "refresh": 1,
            "includeAll": False,
            "multi": False,
            "sort": 1,
        },
        {
            "name": "instance",
            "label": "Instance",
            "type": "query",
            "datasource": DATASOURCE,
            "query": {
                "query": f'label_values({dashboard.instance_metric}{{job=~"$job"}}, instance)',
                "refId": "instance",
            },
            "definition": f'label_values({dashboard.instance_metric}{{job=~"$job"}}, instance)',
            "current": {"selected": True, "text": "All", "value": "$__all"},
            "refresh": 2,
            "includeAll": True,
            "allValue": ".*",
            "multi": True,
            "sort": 1,
        },
    ]


def render(dashboard: Dashboard) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    next_id, y = 1, 0
    for row in dashboard.rows:
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        next_id, y, x, row_height = next_id + 1, y + 1, 0, 0
        for panel in row.panels:
            rendered = _panel(panel, next_id, x, y)
            width, height = rendered["gridPos"]["w"], rendered["gridPos"]["h"]
            if x + width > 24:
                x, y, row_height = 0, y + row_height, 0
                rendered["gridPos"].update(x=x, y=y)
            panels.append(rendered)
            next_id, x, row_height = next_id + 1, x + width, max(row_height, height)
        y += row_height
    return {
        "id": None,
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": list(dashboard.tags),
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "utc",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": _variables(dashboard)},
        "panels": panels,
    }


def rendered_files() -> dict[str, str]:
    """File name → the JSON text it must hold."""
    return {
        name: json.dumps(render(dashboard), indent=2, ensure_ascii=False) + "\n"
        for name, dashboard in DASHBOARDS.items()
    }


def main(argv: list[str]) -> int:
    stale = []
    for name, text in rendered_files().items():
        path = HERE / name
        if "--check" in argv:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    for name in stale:
        print(f"{name} differs from dashboards/generate.py; run it", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
