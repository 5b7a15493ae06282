"""The README is the reference: it must match the code."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from monitor.cli.parser import commands
from monitor.main import build_services
from monitor.settings import load_settings, reference_table
from monitor.settings.loader import secret_keys
from tests.paths import REPO
from tests.registry_harness import free_port

README = (REPO / "README.md").read_text()


def section(text: str, heading: str) -> str:
    """The part of `text` from `heading` to the next heading of that level."""
    level = heading.split(" ", 1)[0]
    return text.split(f"\n{heading}\n", 1)[1].split(f"\n{level} ", 1)[0]


class TestReadme:
    def test_starts_with_the_two_commands(self) -> None:
        """The first code block runs the service on SQLite and runs the whole test suite."""
        block = README.split("```sh\n", 1)[1].split("```", 1)[0]
        commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
        assert [
            "REGISTRY_MONITOR_NOTIFICATIONS_TOKENS=change-me scripts/serve",
            "scripts/test",
        ] == commands
        assert README.index("```sh") < README.index("\n## ")

    def test_configuration_reference_is_current(self) -> None:
        """The settings table is exactly what `python -m monitor.settings` prints."""
        block = README.split("<!-- settings:start", 1)[1].split("-->", 1)[1]
        block = block.split("<!-- settings:end -->", 1)[0].strip()
        assert reference_table() == block

    def test_secrets_are_listed_once_and_completely(self) -> None:
        """The `Secrets:` line under the settings table names exactly the declared secrets."""
        (line,) = re.findall(r"^Secrets: (.*?)\.\n\n", README, re.M | re.S)
        assert secret_keys() == re.findall(r"`([a-z_.]+)`", line)

    def test_commands_and_metrics_have_one_row_each(self) -> None:
        """No command and no metric is described twice."""
        sections = [section(README, "## Command line"), section(README, "## Metrics")]
        cells = [cell for text in sections for cell in re.findall(r"^\| `([^`]+)`", text, re.M)]
        # a command is its words before the first option or argument
        rows = [re.match(r"[a-z_-]+(?: [a-z-]+)*", cell).group(0) for cell in cells]  # type: ignore[union-attr]
        repeated = sorted({row for row in rows if rows.count(row) > 1})
        assert ([], True) == (repeated, len(rows) > 40)

    def test_every_command_is_documented(self) -> None:
        """Each subcommand of the CLI has a row in the command table."""
        for command in commands():
            assert f"| `{command}" in README, command

    def test_metrics_catalog_lists_every_metric(self, tmp_path: Path) -> None:
        """Every metric the service exports has a row in the catalog, and no row is stale."""
        settings = load_settings(
            {
                "REGISTRY_MONITOR_DATABASE_URL": f"sqlite:///{tmp_path}/m.db",
                "REGISTRY_MONITOR_REGISTRY_DEBUG_URL": f"http://127.0.0.1:{free_port()}",
            }
        )
        services = build_services(settings, registry=CollectorRegistry(), migrate=True)
        exported = {m.name for m in services.metrics.registry.collect()}
        services.engine.dispose()
        assert services.registry_debug is not None
        services.registry_debug.close()
        # prometheus_client strips _total from counter family names
        documented = set(re.findall(r"^\| `(registry_monitor_[a-z_]+)`", README, re.M))
        normalized = {name.removesuffix("_total") for name in documented}
        assert exported == normalized
