"""compose.yml, the Dockerfile and the deploy configs: valid, and wired to each other."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import yaml

from tests.observability.stack import PROMETHEUS_CONFIG
from tests.paths import REPO
from tests.registry_harness import ToolMissing

COMPOSE = REPO / "compose.yml"


def compose_config() -> dict[str, Any]:
    """`docker-compose -f compose.yml config`, as resolved YAML."""
    if shutil.which("docker-compose") is None:
        raise ToolMissing(
            "these tests need docker-compose (Debian: apt-get install docker-compose)"
        )
    environ = {**os.environ, "GRAFANA_ADMIN_PASSWORD": "test-only-password"}
    result = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config"],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == result.returncode, result.stderr
    loaded: dict[str, Any] = yaml.safe_load(result.stdout)
    return loaded


class TestCompose:
    def test_validates_with_the_services_of_the_stack(self) -> None:
        """docker-compose accepts compose.yml, which holds the six services."""
        services = sorted(compose_config()["services"])
        expected = [
            "alertmanager",
            "grafana",
            "postgres",
            "prometheus",
            "registry",
            "registry-monitor",
        ]
        assert expected == services

    def test_mounted_config_files_exist_in_the_repository(self) -> None:
        """Every file compose.yml mounts from the repository is there."""
        missing = []
        for service in compose_config()["services"].values():
            for volume in service.get("volumes", []):
                source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
                if source.startswith(str(REPO)) and not os.path.exists(source):
                    missing.append(source)
        assert [] == missing

    def test_grafana_password_is_required(self) -> None:
        """Without GRAFANA_ADMIN_PASSWORD compose refuses to start, instead of admin/admin."""
        environ = {k: v for k, v in os.environ.items() if k != "GRAFANA_ADMIN_PASSWORD"}
        result = subprocess.run(
            ["docker-compose", "-f", str(COMPOSE), "config", "-q"],
            cwd=REPO,
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert (1, True) == (result.returncode, "GRAFANA_ADMIN_PASSWORD" in result.stderr)

    def test_prometheus_scrapes_the_compose_services(self) -> None:
        """prometheus.yml scrapes the monitor's port and the registry's debug port of compose."""
        config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
        targets = {
            job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
        }
        registry = yaml.safe_load((REPO / "deploy/registry/config.yml").read_text(encoding="utf-8"))
        debug_port = registry["http"]["debug"]["addr"].rsplit(":", 1)[1]
        expected = {
            "registry-monitor": ["registry-monitor:5080"],
            "registry": [f"registry:{debug_port}"],
        }
        assert expected == targets


class TestDockerfile:
    def test_non_root_healthcheck_and_locked_install(self) -> None:
        """The image runs as a non-root user, checks /healthz and installs requirements.lock."""
        text = (REPO / "Dockerfile").read_text(encoding="utf-8")
        facts = (
            text.startswith("# ") and "FROM python:3.11-slim" in text,
            "USER monitor" in text,
            "HEALTHCHECK" in text and "/healthz" in text,
            "--require-hashes -r requirements.lock" in text,
        )
        assert (True, True, True, True) == facts


class TestAlertmanager:
    def test_slack_url_comes_from_a_file(self) -> None:
        """The Slack receiver reads its webhook URL from the mounted secret, never inline."""
        config = yaml.safe_load((REPO / "dashboards/alertmanager/alertmanager.yml").read_text())
        slack = {r["name"]: r for r in config["receivers"]}["slack"]["slack_configs"][0]
        assert ("/run/secrets/slack-webhook-url", None, True) == (
            slack["api_url_file"],
            slack.get("api_url"),
            slack["send_resolved"],
        )
