"""The Grafana dashboards: generated, and following the dashboard-linter rules that matter."""

from __future__ import annotations

import re
import subprocess
import sys

import yaml

from tests.observability.stack import (
    DASHBOARD_FILES,
    dashboard_queries,
    load_dashboard,
    metric_names,
    panels,
    rule_expressions,
)
from tests.paths import REPO

RANGE_FUNCTIONS = re.compile(r"\b(rate|irate|increase)\((.*?)\[([^\]]+)\]")


class TestGenerated:
    def test_committed_json_matches_the_generator(self) -> None:
        """Running dashboards/generate.py changes nothing in the committed JSON."""
        result = subprocess.run(
            [sys.executable, str(REPO / "dashboards" / "generate.py"), "--check"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (0, "") == (result.returncode, result.stderr)


class TestDashboardShape:
    def test_datasource_variable_and_schema(self) -> None:
        """Each dashboard has a prometheus `datasource` variable, job and instance, schema 39."""
        shapes = {}
        for name in DASHBOARD_FILES:
            dashboard = load_dashboard(name)
            variables = {v["name"]: v for v in dashboard["templating"]["list"]}
            shapes[name] = (
                sorted(variables),
                variables["datasource"]["type"],
                variables["datasource"]["query"],
                dashboard["schemaVersion"],
                dashboard["id"],
            )
        expected = (["datasource", "instance", "job"], "datasource", "prometheus", 39, None)
        assert {name: expected for name in DASHBOARD_FILES} == shapes

    def test_every_panel_and_target_uses_the_variable(self) -> None:
        """Every panel and every target reads from ${datasource}."""
        wrong = [
            (name, panel["title"])
            for name in DASHBOARD_FILES
            for panel in panels(load_dashboard(name))
            if panel["datasource"]["uid"] != "${datasource}"
            or any(t["datasource"]["uid"] != "${datasource}" for t in panel["targets"])
        ]
        assert [] == wrong

    def test_panels_have_title_description_unit_and_legend(self) -> None:
        """Every panel is titled, described, has a unit, and every target a legend."""
        wrong = [
            (name, panel["id"])
            for name in DASHBOARD_FILES
            for panel in panels(load_dashboard(name))
            if not (panel["title"] and panel["description"])
            or not panel["fieldConfig"]["defaults"].get("unit")
            or not all(t["legendFormat"] for t in panel["targets"])
        ]
        assert [] == wrong

    def test_unique_ids_and_stable_uids(self) -> None:
        """Panel ids are unique within a dashboard; dashboard uids are unique."""
        uids = [load_dashboard(name)["uid"] for name in DASHBOARD_FILES]
        duplicated = {
            name: [i for i in ids if ids.count(i) > 1]
            for name in DASHBOARD_FILES
            if (ids := [p["id"] for p in load_dashboard(name)["panels"]])
        }
        assert ({name: [] for name in DASHBOARD_FILES}, len(uids)) == (duplicated, len(set(uids)))


class TestQueries:
    def test_rate_functions_use_rate_interval(self) -> None:
        """rate, irate and increase use $__rate_interval."""
        wrong = [
            (q.name, window)
            for q in dashboard_queries()
            for _, _, window in RANGE_FUNCTIONS.findall(q.expr)
            if window != "$__rate_interval"
        ]
        assert [] == wrong

    def test_every_selector_filters_job_and_instance(self) -> None:
        """Every metric selector carries the job and instance matchers."""
        wrong = [
            q.name
            for q in dashboard_queries()
            for name in metric_names(q.expr)
            if f'{name}{{job=~"$job", instance=~"$instance"' not in q.expr
        ]
        assert [] == wrong

    def test_no_unbounded_label_in_group_by(self) -> None:
        """No panel groups by an address, user, repository, tag or digest."""
        forbidden = {"remote_ip", "actor", "user", "repository", "tag", "digest", "user_agent"}
        wrong = [
            q.name
            for q in dashboard_queries()
            for group in re.findall(r"by \(([^)]*)\)", q.expr)
            if forbidden & {label.strip() for label in group.split(",")}
        ]
        assert [] == wrong


class TestRulesAreOnDashboards:
    def test_every_metric_an_alert_reads_is_plotted(self) -> None:
        """Each metric an alert rule reads is on a dashboard panel, so whoever gets the alert
        can see its history (and the live stack test checks that panel returns data)."""
        plotted: set[str] = set()
        for query in dashboard_queries():
            plotted |= metric_names(query.expr)
        missing = {
            alert: sorted(metric_names(expr) - plotted)
            for alert, expr in rule_expressions().items()
            if metric_names(expr) - plotted
        }
        assert {} == missing


class TestProvisioning:
    def test_provider_and_datasource(self) -> None:
        """Grafana loads the dashboards from files and has a Prometheus datasource."""
        base = REPO / "dashboards" / "grafana" / "provisioning"
        providers = yaml.safe_load((base / "dashboards" / "registry-monitor.yml").read_text())
        sources = yaml.safe_load((base / "datasources" / "prometheus.yml").read_text())
        provider = providers["providers"][0]
        assert ("file", False, "prometheus") == (
            provider["type"],
            provider["allowUiUpdates"],
            sources["datasources"][0]["type"],
        )
