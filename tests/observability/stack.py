"""The compose stack run natively: the repository's config files, rewritten only for
loopback addresses and temporary paths, for the registry, registry-monitor and Prometheus.

Also reads the dashboards and rules: their expressions and the metric names they use.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.harness import MonitorProcess, wait_for_port
from tests.paths import REPO
from tests.registry_harness import free_port, require_tools

DASHBOARDS = REPO / "dashboards"
DASHBOARD_FILES = (
    "registry-monitor-overview.json",
    "registry-monitor-cleanup.json",
    "registry.json",
)
RULES = DASHBOARDS / "prometheus" / "rules.yml"
RULE_TESTS = DASHBOARDS / "prometheus" / "rules.test.yml"
PROMETHEUS_CONFIG = DASHBOARDS / "prometheus" / "prometheus.yml"
REGISTRY_CONFIG = REPO / "deploy" / "registry" / "config.yml"
MONITOR_CONFIG = REPO / "deploy" / "registry-monitor" / "config.yml"
PROMETHEUS_BINARY = "/usr/bin/prometheus"
PROMTOOL_BINARY = "/usr/bin/promtool"

# Sample names the registry exports only from distribution 3.0 on; Debian's 2.8 binary
# reports the same numbers in expvar (/debug/vars) only.
DISTRIBUTION_3_ONLY = frozenset(
    {
        "registry_notifications_events_total",
        "registry_notifications_pending_total",
        "registry_notifications_status_total",
    }
)

_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{")


@dataclass(frozen=True)
class Query:
    """One target of one dashboard panel."""

    dashboard: str
    panel: str
    expr: str
    job: str

    @property
    def name(self) -> str:
        return f"{self.dashboard} / {self.panel}"

    def concrete(self) -> str:
        """The expression with Grafana's variables replaced as a user would see it."""
        return (
            self.expr.replace("$__rate_interval", "1m")
            .replace("$job", self.job)
            .replace("$instance", ".*")
        )


def load_dashboard(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DASHBOARDS / name).read_text(encoding="utf-8"))
    return loaded


def default_job(dashboard: dict[str, Any]) -> str:
    for variable in dashboard["templating"]["list"]:
        if variable["name"] == "job":
            return str(variable["current"]["value"])
    raise AssertionError(f"dashboard {dashboard['uid']} has no job variable")


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def dashboard_queries() -> list[Query]:
    queries = []
    for name in DASHBOARD_FILES:
        dashboard = load_dashboard(name)
        job = default_job(dashboard)
        for panel in panels(dashboard):
            for target in panel["targets"]:
                queries.append(Query(name, panel["title"], target["expr"], job))
    return queries


def rule_expressions() -> dict[str, str]:
    """Alert name → expression, from rules.yml."""
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return {rule["alert"]: rule["expr"] for group in document["groups"] for rule in group["rules"]}


def metric_names(expr: str) -> set[str]:
    """Metric names of the selectors in `expr` (every selector here carries matchers)."""
    return set(_SELECTOR.findall(expr))


def exported_names(exposition: str) -> set[str]:
    """Every sample name a /metrics page can carry, including families with no sample yet."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            elif kind == "summary":
                names |= {f"{name}_sum", f"{name}_count"}
            elif kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


# --- the processes -----------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryConfig:
    config: dict[str, Any]
    port: int
    debug_port: int
    token: str


def registry_config(
    *, root: Path, htpasswd: Path, monitor_url: str, tls: tuple[Path, Path] | None = None
) -> RegistryConfig:
    """deploy/registry/config.yml with loopback addresses and temporary paths; served over
    TLS with `tls` (certificate, key)."""
    config = yaml.safe_load(REGISTRY_CONFIG.read_text(encoding="utf-8"))
    port, debug_port = free_port(), free_port()
    config["http"]["addr"] = f"127.0.0.1:{port}"
    config["http"]["debug"]["addr"] = f"127.0.0.1:{debug_port}"
    config["storage"]["filesystem"]["rootdirectory"] = str(root / "storage")
    config["auth"]["htpasswd"]["path"] = str(htpasswd)
    (endpoint,) = config["notifications"]["endpoints"]
    endpoint["url"] = f"{monitor_url}/v1/notifications"
    (header,) = endpoint["headers"]["Authorization"]
    if tls is not None:
        config["http"]["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    return RegistryConfig(config, port, debug_port, header.removeprefix("Bearer "))


def prometheus_config(*, monitor: str, registry: str) -> dict[str, Any]:
    """dashboards/prometheus/prometheus.yml scraping loopback targets every second; the rules
    file by its absolute path; no Alertmanager."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_CONFIG.parent / f) for f in config["rule_files"]]
    config.pop("alerting")
    targets = {"registry-monitor": monitor, "registry": registry}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    return config


class ConfiguredMonitor(MonitorProcess):
    """`registry-monitor serve --config deploy/registry-monitor/config.yml`."""

    def start(self) -> None:
        command = [sys.executable, "-m", "monitor", "serve", "--config", str(MONITOR_CONFIG)]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, env=self.env, stdout=out, stderr=out)
        wait_for_port(self.port, process=self.process, timeout=30)


@dataclass(frozen=True)
class Prometheus:
    url: str

    def query(self, expr: str) -> httpx.Response:
        return httpx.post(f"{self.url}/api/v1/query", data={"query": expr}, timeout=10)

    def result(self, expr: str) -> list[dict[str, Any]]:
        response = self.query(expr)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result


@contextmanager
def running_prometheus(directory: Path, config: dict[str, Any]) -> Iterator[Prometheus]:
    """/usr/bin/prometheus on a free loopback port with `config` and its own storage."""
    require_tools(PROMETHEUS_BINARY)
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = directory / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                PROMETHEUS_BINARY,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        try:
            wait_for_port(port, process=process, timeout=30)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{log.read_text(errors='replace')[-3000:]}") from exc
        yield Prometheus(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
