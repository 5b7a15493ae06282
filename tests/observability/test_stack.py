"""The dashboards and rules against the real thing: the registry, registry-monitor (on
PostgreSQL, as in compose.yml, reading the registry's /debug/vars) and Prometheus, started
natively from the repository's config files, through a scenario of pushes, pulls, a burst of
failed logins delivered as an alert to a local Slack, a quarantined body, a re-sent
notification, a store outage, and cleanup reconcile, plan and apply through the CLI on the
same store.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from monitor import cli
from tests.audit.support import make_certificate
from tests.conftest import PostgresDatabases
from tests.harness import USERS, build_images, pull, push, wait_until
from tests.observability.stack import (
    DISTRIBUTION_3_ONLY,
    ConfiguredMonitor,
    Prometheus,
    dashboard_queries,
    exported_names,
    metric_names,
    prometheus_config,
    registry_config,
    rule_expressions,
    running_prometheus,
)
from tests.paths import fixtures
from tests.registry_harness import (
    REGISTRY_VERSIONS,
    free_port,
    registry_binary,
    running_registry,
    write_htpasswd,
)
from tests.slack_server import WEBHOOK_PATH, SlackServer, running

FAILED_LOGINS = 6
"""Above the default brute_force_account threshold (5 in 10 minutes)."""

POLICIES = """
- name: stack
  repositories: ["**"]
  delete:
    - name: unused
      tags: ["*"]
      not_pulled_days: 30
"""

pytestmark = [pytest.mark.registry, pytest.mark.postgres, pytest.mark.prometheus]


@dataclass(frozen=True)
class Live:
    prometheus: Prometheus
    monitor_metrics: str
    registry_metrics: str
    registry_major: int

    def unavailable(self) -> frozenset[str]:
        """Names the installed registry cannot export, whatever is merged."""
        return DISTRIBUTION_3_ONLY if self.registry_major < 3 else frozenset()


def run_cli(environ: dict[str, str], *argv: str) -> str:
    """`registry-monitor ARGV` in this process; its standard output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(list(argv), environ)
    assert 0 == code, f"registry-monitor {' '.join(argv)} exited {code}: {out.getvalue()}"
    return out.getvalue()


def cleanup(environ: dict[str, str]) -> None:
    """`cleanup reconcile`, `cleanup plan` and `cleanup apply` of that plan, in this process,
    on the monitor's store."""
    run_cli(environ, "cleanup", "reconcile")
    plan = json.loads(run_cli(environ, "cleanup", "plan", "--json"))
    run_cli(environ, "cleanup", "apply", plan["id"], "--json")


def scenario(host: str, registry_url: str, monitor: ConfiguredMonitor, token: str, tmp: Path,
             postgres: PostgresDatabases, db_url: str, slack: SlackServer) -> None:  # fmt: skip
    """Pushes and pulls, a burst of failed logins, garbage, a re-sent envelope, a store
    outage; the alert delivered to Slack."""
    images = build_images(tmp / "oci", salt="observability")
    push(images, "hello", f"{host}/library/hello:1.0")
    push(images, "app", f"{host}/team/app:v1", extra=("--format", "v2s2"))
    push(images, "multi", f"{host}/team/app:multi", extra=("--all",))
    pull(f"{host}/library/hello:1.0", tmp / "pull-hello")
    pull(f"{host}/team/app:v1", tmp / "pull-app")
    failed = [
        httpx.get(
            f"{registry_url}/v2/",
            auth=("alice", "wrong-password"),
            timeout=10,
            verify=False,  # noqa: S501 - the registry's self-signed test certificate
        ).status_code
        for _ in range(FAILED_LOGINS)
    ]
    assert [401] * FAILED_LOGINS == failed
    auth = {"Authorization": f"Bearer {token}"}
    garbage = httpx.post(
        f"{monitor.url}/v1/notifications",
        content=b"{not json",
        headers={**auth, "Content-Type": "application/vnd.docker.distribution.events.v1+json"},
        timeout=10,
    )
    assert 200 == garbage.status_code
    captured = sorted((fixtures() / "notifications").iterdir())[0].read_text()
    envelope = json.dumps(json.loads(captured)["body"]).encode()
    answers = []
    for _ in range(2):
        resent = httpx.post(
            f"{monitor.url}/v1/notifications",
            content=envelope,
            headers={**auth, "Content-Type": "application/vnd.docker.distribution.events.v1+json"},
            timeout=10,
        )
        answers.append(resent.status_code)
    assert [200, 200] == answers
    wait_until(
        lambda: (
            'registry_monitor_events_duplicate_total{source="notification"} 1.0'
            in monitor.get("/metrics").text
        ),
        timeout=30,
        what="the re-sent envelope to be counted as a duplicate",
    )
    postgres.set_allow_connections(db_url, False)
    try:
        wait_until(
            lambda: monitor.get("/readyz").status_code == 503,
            timeout=30,
            what="/readyz to report the store down",
        )
    finally:
        postgres.set_allow_connections(db_url, True)
    wait_until(lambda: monitor.get("/readyz").status_code == 200, timeout=30, what="the store back")
    wait_until(
        lambda: (
            {("library/hello", "1.0"), ("team/app", "v1"), ("team/app", "multi")}
            <= {(t["repository"], t["tag"]) for t in monitor.get("/v1/tags").json()["items"]}
        ),
        timeout=60,
        what="the pushed tags to be stored",
    )
    wait_until(
        lambda: any(
            r.path.endswith(WEBHOOK_PATH) and "brute_force" in json.dumps(r.payload)
            for r in slack.requests
        ),
        timeout=60,
        what="the brute-force alert to reach Slack",
    )


@pytest.fixture(scope="module", params=REGISTRY_VERSIONS)
def stack_version(request: pytest.FixtureRequest) -> str:
    """The registry line the whole stack runs with: every test here runs on 2.8 and 3.1."""
    version: str = request.param
    return version


@pytest.fixture(scope="module")
def slack(stack_version: str) -> Iterator[SlackServer]:
    yield from running()


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory,
    postgres: PostgresDatabases,
    slack: SlackServer,
    stack_version: str,
) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("stack")
    db_url = postgres.create()
    port = free_port()
    monitor_url = f"http://127.0.0.1:{port}"
    htpasswd = write_htpasswd(path=tmp / "htpasswd", users=USERS)
    # TLS from a certificate that expires in 5 days: the scheduled audit (at start, from
    # the same config file the registry reads) fires the certificate alert and tells Slack
    cert, key = make_certificate(tmp / "tls", days=5)
    registry = registry_config(
        root=tmp / "registry", htpasswd=htpasswd, monitor_url=monitor_url, tls=(cert, key)
    )
    registry_url = f"https://127.0.0.1:{registry.port}"
    audited = tmp / "registry-config.yml"
    audited.write_text(yaml.safe_dump(registry.config), encoding="utf-8")
    policies = tmp / "policies.yml"
    policies.write_text(POLICIES, encoding="utf-8")
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_MONITOR_")},
        "REGISTRY_MONITOR_HTTP_ADDR": f"127.0.0.1:{port}",
        "REGISTRY_MONITOR_DATABASE_URL": db_url,
        "REGISTRY_MONITOR_NOTIFICATIONS_TOKENS": registry.token,
        "REGISTRY_MONITOR_LOGS_PATHS": str(tmp / "registry" / "registry.log"),
        "REGISTRY_MONITOR_REGISTRY_DEBUG_URL": f"http://127.0.0.1:{registry.debug_port}",
        "REGISTRY_MONITOR_ALERTING_SLACK_WEBHOOK_URL": slack.webhook_url,
        "REGISTRY_MONITOR_CLEANUP_REGISTRY_URL": registry_url,
        "REGISTRY_MONITOR_CLEANUP_CA_FILE": str(cert),
        "REGISTRY_MONITOR_AUDIT_REGISTRY_CONFIG": str(audited),
        "REGISTRY_MONITOR_AUDIT_URL": registry_url,
        "REGISTRY_MONITOR_CLEANUP_USERNAME": "alice",
        "REGISTRY_MONITOR_CLEANUP_PASSWORD": USERS["alice"],
        "REGISTRY_MONITOR_CLEANUP_POLICIES_FILE": str(policies),
        "REGISTRY_MONITOR_CLEANUP_MIN_INTERVAL_SECONDS": "0.05",
    }
    monitor = ConfiguredMonitor(port=port, env=environ, log=tmp / "monitor.log")
    monitor.start()
    try:
        with (
            running_registry(
                directory=tmp / "registry",
                config=registry.config,
                binary=registry_binary(stack_version),
            ) as reg,
            running_prometheus(
                tmp / "prometheus",
                prometheus_config(
                    monitor=f"127.0.0.1:{port}", registry=f"127.0.0.1:{registry.debug_port}"
                ),
            ) as prometheus,
        ):
            wait_until(
                lambda: len(prometheus.result("up == 1")) == 2,
                timeout=60,
                what="Prometheus to scrape both targets",
            )
            scenario(reg.host, reg.url, monitor, registry.token, tmp, postgres, db_url, slack)
            cleanup(environ)
            finished = time.time()
            wait_until(
                lambda: len(prometheus.result(f"timestamp(up == 1) > {finished + 3}")) == 2,
                timeout=60,
                what="Prometheus to scrape both targets after the scenario",
            )
            debug = f"http://127.0.0.1:{registry.debug_port}/metrics"
            yield Live(
                prometheus=prometheus,
                monitor_metrics=monitor.get("/metrics").text,
                registry_metrics=httpx.get(debug, timeout=10).text,
                registry_major=int(stack_version.split(".")[0]),
            )
    finally:
        monitor.stop()
        postgres.drop(db_url)


class TestExpressions:
    def test_every_dashboard_and_rule_expression_parses(self, live: Live) -> None:
        """Prometheus accepts every panel query and every alert expression (a parse error is 400)."""
        exprs = {q.name: q.concrete() for q in dashboard_queries()}
        exprs |= {f"rules.yml / {alert}": expr for alert, expr in rule_expressions().items()}
        rejected = {
            name: response.json().get("error")
            for name, expr in exprs.items()
            if (response := live.prometheus.query(expr)).status_code != 200
        }
        assert {} == rejected


class TestMetricNames:
    def test_every_name_used_is_exported(self, live: Live) -> None:
        """Every metric name in the dashboards and rules is on the live /metrics of the monitor
        or the registry's debug listener (except those the installed registry cannot export)."""
        used: set[str] = set()
        for query in dashboard_queries():
            used |= metric_names(query.expr)
        for expr in rule_expressions().values():
            used |= metric_names(expr)
        exported = exported_names(live.monitor_metrics) | exported_names(live.registry_metrics)
        exported |= {"up"}
        missing = used - exported - live.unavailable()
        assert set() == missing, "not exported: " + ", ".join(sorted(missing))

    def test_distribution_2_lacks_only_the_notification_metrics(self, live: Live) -> None:
        """The names excused for the installed registry are exactly the ones it lacks."""
        exported = exported_names(live.registry_metrics)
        assert set() == live.unavailable() & exported


class TestPanels:
    def test_every_panel_returns_data(self, live: Live) -> None:
        """Each panel's query returns a non-empty result after the scenario; the assertion
        lists the panels that returned nothing."""
        empty = sorted(
            query.name
            for query in dashboard_queries()
            if not (metric_names(query.expr) <= live.unavailable())
            and not live.prometheus.result(query.concrete())
        )
        assert [] == empty, "panels without data:\n" + "\n".join(empty)


class TestPrometheus:
    def test_both_targets_are_up(self, live: Live) -> None:
        """Prometheus scrapes the monitor and the registry's debug listener."""
        up = {r["metric"]["job"]: r["value"][1] for r in live.prometheus.result("up")}
        assert {"registry-monitor": "1", "registry": "1"} == up

    def test_rules_load_and_evaluate(self, live: Live) -> None:
        """Every alert rule of rules.yml is loaded and evaluates without error."""
        response = httpx.get(f"{live.prometheus.url}/api/v1/rules", timeout=10)
        rules = {
            rule["name"]: rule["health"]
            for group in response.json()["data"]["groups"]
            for rule in group["rules"]
        }
        assert {alert: "ok" for alert in rule_expressions()} == rules


class TestScenarioSignals:
    def test_bridge_cleanup_and_slack_reach_prometheus(self, live: Live) -> None:
        """Prometheus holds the bridged registry queue under job `registry` (debug listener
        read, deliveries to the monitor succeeded), the cleanup gauges the CLI's runs left in
        the store, pulls by skopeo, and at least one alert delivered to Slack."""

        def value(expr: str) -> float:
            result = live.prometheus.result(expr)
            return float(result[0]["value"][1]) if result else -1.0

        actual = (
            value('max(registry_monitor_registry_debug_up{job="registry"})'),
            value(
                "sum(registry_monitor_registry_notifications_events_total"
                '{job="registry", type="successes"}) > 0'
            )
            > 0,
            sorted(
                r["metric"]["kind"]
                for r in live.prometheus.result(
                    "registry_monitor_cleanup_last_success_timestamp_seconds"
                )
            ),
            value('sum(registry_monitor_pulls_total{client="skopeo", http_method="GET"})') >= 2,
            value('sum(registry_monitor_alert_deliveries_total{result="delivered"})') >= 1,
        )
        assert (1.0, True, ["apply", "plan", "reconcile"], True, True) == actual


class TestAudit:
    def test_certificate_alert_and_slack_message(self, live: Live, slack: SlackServer) -> None:
        """The scheduled audit found the 5-day certificate: Prometheus fires
        RegistryCertificateExpiring and RegistryAuditCheckFailing for tls_cert_expiry, and one
        Slack message names the check, its detail and the line to change."""

        def firing() -> set[tuple[str, str]]:
            return {
                (r["metric"]["alertname"], r["metric"].get("id", ""))
                for r in live.prometheus.result('ALERTS{alertstate="firing"}')
            }

        wanted = {
            ("RegistryCertificateExpiring", ""),
            ("RegistryAuditCheckFailing", "tls_cert_expiry"),
        }
        wait_until(lambda: wanted <= firing(), timeout=60, what="the audit's alerts to fire")
        messages = [
            json.dumps(r.payload)
            for r in slack.requests
            if r.path.endswith(WEBHOOK_PATH) and "tls_cert_expiry" in json.dumps(r.payload)
        ]
        assert 1 == len(messages)
        assert "Registry audit: tls_cert_expiry fails" in messages[0]
        assert "(self-signed)" in messages[0]
        assert ("RegistryCertificateExpiringSoon", "") not in firing()
