"""Imports point one way: delivery → orchestration → adapters → pure domain → leaves."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.paths import REPO

LEAVES = (
    "monitor",
    "monitor.alerts",
    "monitor.clock",
    "monitor.errors",
    "monitor.events",
    "monitor.settings",
    "monitor.tables",
)
PURE = (
    "monitor.ingest.boundary",
    "monitor.ingest.notification",
    "monitor.ingest.logline",
    "monitor.ingest.timestamps",
    "monitor.ingest.memo",
    "monitor.ingest.logclassify",
    "monitor.ingest.logtriage",
    "monitor.ingest.logevents",
    "monitor.ingest.routes",
    "monitor.ingest.shipped",
    "monitor.detect",
    "monitor.alerting.notifier",
    "monitor.alerting.outbox",
    "monitor.alerting.render",
    "monitor.alerting.throttle",
    "monitor.cleanup.model",
    "monitor.cleanup.policy",
    "monitor.cleanup.plan",
    "monitor.cleanup.planner",
    "monitor.cleanup.stored_plan",
    "monitor.cleanup.journal",
    "monitor.audit.model",
    "monitor.audit.registry_config",
    "monitor.audit.htpasswd",
    "monitor.audit.x509",
    "monitor.audit.facts",
    "monitor.audit.observations",
    "monitor.audit.checks",
    "monitor.audit.checks_tls",
    "monitor.audit.checks_access",
    "monitor.audit.checks_exposure",
)
ADAPTERS = (
    "monitor.store",
    "monitor.observability",
    "monitor.ingest.tailer",
    "monitor.alerting",
    "monitor.cleanup.registry_client",
    "monitor.audit.probe",
)
ORCHESTRATION = (
    "monitor.pipeline",
    "monitor.cleanup",
    "monitor.log_ingest",
    "monitor.jobs",
    "monitor.runtime",
    "monitor.audit",
)


def layer(module: str) -> int:
    """0 leaves, 1 pure, 2 adapters, 3 orchestration, 4 delivery (api, cli, main)."""
    for rank, prefixes in ((1, PURE), (2, ADAPTERS), (3, ORCHESTRATION)):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    if any(module == p or module.startswith(p + ".") for p in LEAVES[1:]) or module == "monitor":
        return 0
    return 4


def imports() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for path in sorted((REPO / "monitor").rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("monitor")
            ):
                package = REPO.joinpath(*node.module.split("."))
                if package.is_dir():  # `from monitor.x import y`: y is a module of package x
                    out.extend(
                        (module, f"{node.module}.{a.name}")
                        for a in node.names
                        if a.name != "__version__"
                    )
                else:
                    out.append((module, node.module))
            elif isinstance(node, ast.Import):
                out.extend((module, a.name) for a in node.names if a.name.startswith("monitor"))
    return out


class TestLayers:
    def test_no_module_imports_a_higher_layer(self) -> None:
        """Pure code never imports adapters; adapters never import orchestration or delivery."""
        upward = [(src, dst) for src, dst in imports() if layer(dst) > layer(src)]
        assert [] == upward

    def test_nothing_imports_the_api_or_main(self) -> None:
        """Only the entry points (cli, __main__, main, server) reach the api and the composition
        root."""
        entry = ("monitor.__main__", "monitor.main", "monitor.server")
        bad = [
            (src, dst)
            for src, dst in imports()
            if (dst.startswith("monitor.api") or dst == "monitor.main")
            and not src.startswith(("monitor.api", "monitor.cli"))
            and src not in entry
        ]
        assert [] == bad

    def test_the_store_and_detection_never_reach_slack(self) -> None:
        """Only delivery imports the Slack client: the store keeps alerts and outbox rows with
        the alert model alone, and detection produces that model."""
        graph: dict[str, set[str]] = {}
        for src, dst in imports():
            graph.setdefault(src, set()).add(dst)
        reached: dict[str, set[str]] = {}
        for start in [m for m in graph if m.startswith(("monitor.store", "monitor.detect"))]:
            seen, todo = set(), [start]
            while todo:
                for dst in graph.get(todo.pop(), ()):
                    if dst not in seen:
                        seen.add(dst)
                        todo.append(dst)
            if "monitor.alerting.slack" in seen:
                reached[start] = seen
        assert [] == sorted(reached)

    def test_modules_stay_small(self) -> None:
        """Modules are split before they grow past ~500 lines."""
        long = {
            str(p.relative_to(REPO)): n
            for p in (REPO / "monitor").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 500
        }
        assert {} == long


def test_every_package_has_an_init() -> None:
    """Every folder under monitor/ is a package."""
    missing = [
        p
        for p in (REPO / "monitor").rglob("*")
        if p.is_dir()
        and p.name not in ("__pycache__", "migrations", "versions")
        and not (p / "__init__.py").exists()
        and any(p.glob("*.py"))
    ]
    assert [] == [str(Path(p)) for p in missing]
