"""Imports point one way, down the layers of `LAYERS` (the diagram in the README's development
section), and modules stay small."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.paths import REPO

LEAVES = (
    "monitor",
    "monitor.allocator",
    "monitor.alerts",
    "monitor.children",
    "monitor.pacer",
    "monitor.clock",
    "monitor.errors",
    "monitor.events",
    "monitor.inbox_files",
    "monitor.settings",
    "monitor.tables",
)
PURE = (
    "monitor.ingest",  # every ingest module but the file follower
    "monitor.detect",
    "monitor.alerting.notifier",
    "monitor.alerting.outbox",
    "monitor.alerting.render",
    "monitor.alerting.throttle",
    "monitor.cleanup.model",
    "monitor.cleanup.policy",
    "monitor.cleanup.plan",
    "monitor.cleanup.planner",
    "monitor.cleanup.tag_rules",
    "monitor.cleanup.freed",
    "monitor.cleanup.stored_plan",
    "monitor.cleanup.stored_plan_v3",
    "monitor.cleanup.stored_plan_v4",
    "monitor.cleanup.plan_chunks",
    "monitor.cleanup.plan_pages",
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
OUTSIDE_SYSTEMS = (
    "monitor.ingest.tailer",
    "monitor.cleanup.registry_client",
    "monitor.audit.probe",
)
OBSERVABILITY = ("monitor.observability",)
ALERTING = ("monitor.alerting",)
STORE = ("monitor.store",)
STORE_METRICS = ("monitor.observability.collectors", "monitor.observability.audit_metrics")
ORCHESTRATION = (
    "monitor.pipeline",
    "monitor.cleanup",
    "monitor.runtime",
    "monitor.audit",
)
DELIVERY = (
    "monitor.api",
    "monitor.cli",
    "monitor.main",
    "monitor.server",
    "monitor.server_limits",
    "monitor.__main__",
)

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("leaves", LEAVES),
    ("pure", PURE),
    ("outside systems", OUTSIDE_SYSTEMS),
    ("observability", OBSERVABILITY),
    ("alerting", ALERTING),
    ("store", STORE),
    ("store metrics", STORE_METRICS),
    ("orchestration", ORCHESTRATION),
    ("delivery", DELIVERY),
)
"""Bottom first. A module belongs to the layer of the longest prefix that names it (so
`monitor.alerting.model` is pure while the rest of `monitor.alerting` is alerting)."""


def layer(module: str) -> int:
    """The rank of `module` in LAYERS; -1 when no layer names it."""
    best, rank = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            named = module == prefix or (prefix != "monitor" and module.startswith(prefix + "."))
            if named and len(prefix) > best:
                best, rank = len(prefix), index
    return rank


def modules() -> list[str]:
    return [
        ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for path in sorted((REPO / "monitor").rglob("*.py"))
        if "migrations" not in path.parts
    ]


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
    def test_every_module_is_in_a_layer(self) -> None:
        """A new module is placed in a layer, so the import rule covers it."""
        assert [] == [m for m in modules() if layer(m) < 0]

    def test_no_module_imports_a_higher_layer(self) -> None:
        """Imports point down: pure code imports only leaves, the store never imports the
        metrics that read it, alerting never imports the store, nothing below delivery imports
        the api, the cli or main."""
        upward = [
            (src, dst, LAYERS[layer(src)][0], LAYERS[layer(dst)][0])
            for src, dst in imports()
            if layer(dst) > layer(src)
        ]
        assert [] == upward

    def test_the_readme_shows_these_layers(self) -> None:
        """The development section of the README draws the same layers, top first."""
        readme = (REPO / "README.md").read_text()
        block = readme.split("<!-- layers:start -->", 1)[1].split("<!-- layers:end -->", 1)[0]
        drawn = re.findall(r"^ *(\w[\w ]*?) {2,}", block, re.M)
        assert [name for name, _ in reversed(LAYERS)] == drawn

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
        """Modules are split before they grow past ~400 lines (ARCHITECTURE.md, house rule 6)."""
        long = {
            str(p.relative_to(REPO)): n
            for p in (REPO / "monitor").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400
        }
        assert {} == long

    def test_the_command_line_imports_lazily_only_on_purpose(self) -> None:
        """A function of monitor/cli imports inside itself only to keep start-up fast, and says
        so: each group of such imports sits under a `# deliberately lazy` comment."""
        unexplained = []
        for path in sorted((REPO / "monitor" / "cli").glob("*.py")):
            lines = path.read_text().splitlines()
            for function in ast.walk(ast.parse("\n".join(lines))):
                if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                bodies = [getattr(node, "body", None) for node in ast.walk(function)]
                for body in [b for b in bodies if isinstance(b, list)]:
                    previous: ast.stmt | None = None
                    for statement in body:
                        local = isinstance(statement, ast.Import | ast.ImportFrom)
                        first = local and not isinstance(previous, ast.Import | ast.ImportFrom)
                        if first and "# deliberately lazy" not in lines[statement.lineno - 2]:
                            unexplained.append(f"{path.name}:{statement.lineno}")
                        previous = statement
        assert [] == unexplained


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
