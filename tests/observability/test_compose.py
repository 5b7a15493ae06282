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
        """docker-compose accepts compose.yml, which holds the seven services."""
        services = sorted(compose_config()["services"])
        expected = [
            "alertmanager",
            "fluent-bit",
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

    def test_postgres_compresses_its_write_ahead_log(self) -> None:
        """PostgreSQL runs with `wal_compression=lz4`: intake's commits wait for the WAL that
        expiry and detection wrote before them."""
        command = compose_config()["services"]["postgres"]["command"]
        assert ["postgres", "-c", "wal_compression=lz4"] == command

    def test_the_intake_inbox_is_a_file_on_the_monitors_volume(self) -> None:
        """With PostgreSQL as the store, intake's bodies wait in a file on a named volume of
        the monitor's (kept across restarts of the container), in a directory the image gives
        its user."""
        config = compose_config()
        service = config["services"]["registry-monitor"]
        path = service["environment"]["REGISTRY_MONITOR_NOTIFICATIONS_INBOX_FILE"]
        mounts = {m.split(":")[1]: m.split(":")[0] for m in service["volumes"]}
        directory = path.rsplit("/", 1)[0]
        assert "monitor-data" == mounts[directory]
        assert "monitor-data" in config["volumes"]
        dockerfile = (REPO / "Dockerfile").read_text()
        assert f"install -d -o monitor -g monitor {directory}" in dockerfile

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

    def test_monitor_reads_the_unpublished_debug_listener(self) -> None:
        """The monitor's REGISTRY_MONITOR_REGISTRY_DEBUG_URL is the registry's debug port, which
        compose does not publish (it also serves pprof and expvar)."""
        services = compose_config()["services"]
        registry = yaml.safe_load((REPO / "deploy/registry/config.yml").read_text(encoding="utf-8"))
        debug_port = registry["http"]["debug"]["addr"].rsplit(":", 1)[1]
        published = {
            str(port["target"]) if isinstance(port, dict) else str(port).rsplit(":", 1)[1]
            for port in services["registry"].get("ports", [])
        }
        environment = services["registry-monitor"]["environment"]
        expected = (f"http://registry:{debug_port}", False)
        actual = (environment["REGISTRY_MONITOR_REGISTRY_DEBUG_URL"], debug_port in published)
        assert expected == actual

    def test_bridged_series_carry_the_registry_job(self) -> None:
        """prometheus.yml relabels the bridged registry_monitor_registry_* series to the
        job `registry`, which the registry dashboard and the backlog rule select on."""
        config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
        jobs = {job["job_name"]: job for job in config["scrape_configs"]}
        relabel = jobs["registry-monitor"]["metric_relabel_configs"]
        expected = [
            {
                "source_labels": ["__name__"],
                "regex": "registry_monitor_registry_(notifications_.+|debug_up)",
                "target_label": "job",
                "replacement": "registry",
            }
        ]
        assert expected == relabel


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


class TestLogShipping:
    def test_registry_logs_reach_the_monitor_through_fluent_bit(self) -> None:
        """The registry logs to fluent-bit, whose http output posts json_lines to /v1/logs."""
        services = compose_config()["services"]
        logging = services["registry"]["logging"]
        conf = (REPO / "deploy" / "fluent-bit" / "fluent-bit.conf").read_text()
        output = conf.split("[OUTPUT]", 1)[1]
        lines = [line.strip() for line in output.splitlines()]
        settings = dict(line.split(None, 1) for line in lines if line and not line.startswith("#"))
        assert ("fluentd", "registry") == (logging["driver"], logging["options"]["tag"])
        assert logging["options"]["fluentd-address"].endswith(":24224")
        assert {
            "Name": "http",
            "Match": "registry",
            "Host": "registry-monitor",
            "Port": "5080",
            "URI": "/v1/logs",
            "Format": "json_lines",
            "Header": "Authorization Bearer ${REGISTRY_MONITOR_NOTIFICATION_TOKEN}",
            "Retry_Limit": "False",
        } == settings
        token = services["fluent-bit"]["environment"]["REGISTRY_MONITOR_NOTIFICATION_TOKEN"]
        assert (
            token
            == services["registry-monitor"]["environment"]["REGISTRY_MONITOR_NOTIFICATIONS_TOKENS"]
        )
