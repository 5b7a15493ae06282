"""`reconcile-events` and `events --reconstructed`, over a 3.1 log whose notifications never came."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from monitor.cli import main
from monitor.main import build_app
from monitor.pipeline.log_ingest import backfill
from monitor.pipeline.reconcile import reconcile_events
from monitor.runtime import Services
from tests.request_captures import log_lines

SINCE, UNTIL = "2026-11-30T18:00:00Z", "2026-11-30T19:00:00Z"
# 44 requests sent 46 notifications; the 2 tag deletes of the delete by digest are unknown to a
# store that never saw the tags pushed
REBUILT = 44


def run(capsys: pytest.CaptureFixture[str], environ: dict[str, str], *argv: str) -> tuple[int, str]:
    code = main(list(argv), environ)
    out, _ = capsys.readouterr()
    return code, out


@pytest.fixture
def environ(db_url: str) -> dict[str, str]:
    return {"REGISTRY_MONITOR_DATABASE_URL": db_url, "REGISTRY_MONITOR_LOGGING_LEVEL": "error"}


@pytest.fixture
def logged(services: Services) -> Services:
    """The 3.1 text run's log ingested, none of its notifications delivered."""
    backfill(
        log_lines("3.1", "registry-text.log"), writer=services.writer, metrics=services.metrics
    )
    return services


class TestReconcileEvents:
    def test_dry_run_then_run(
        self, capsys: pytest.CaptureFixture[str], environ: dict[str, str], logged: Services
    ) -> None:
        """A dry run shows what would be rebuilt and stores nothing; the run stores it; a
        second run adds nothing."""
        code, out = run(capsys, environ, "reconcile-events", "--since", SINCE, "--until", UNTIL,
                        "--dry-run", "--json")  # fmt: skip
        document = json.loads(out)
        assert (0, True, REBUILT, 0) == (
            code,
            document["dry_run"],
            document["events"],
            document["stored"],
        )
        code, out = run(capsys, environ, "events", "--reconstructed", "--json")
        assert [] == json.loads(out)["items"]
        code, out = run(capsys, environ, "reconcile-events", "--since", SINCE, "--until", UNTIL)
        assert 0 == code
        assert f"rebuilt {REBUILT} events of {REBUILT} requests" in out
        code, out = run(capsys, environ, "events", "--reconstructed", "--json", "--limit", "100")
        items = json.loads(out)["items"]
        assert REBUILT == len(items)
        assert {"alice", "bob"} == {e["actor"] for e in items}
        assert all(e["reconstructed"] and e["source"] == "log" for e in items)
        code, out = run(capsys, environ, "reconcile-events", "--since", SINCE, "--until", UNTIL,
                        "--json")  # fmt: skip
        assert (0, 0) == (code, json.loads(out)["stored"])

    def test_outside_the_window_nothing_happens(
        self, capsys: pytest.CaptureFixture[str], environ: dict[str, str], logged: Services
    ) -> None:
        code, out = run(capsys, environ, "reconcile-events", "--since", "2026-11-29T00:00:00Z",
                        "--until", SINCE, "--json")  # fmt: skip
        assert (0, 0, 0) == (code, json.loads(out)["examined"], json.loads(out)["events"])

    def test_since_after_until_is_an_error(
        self, capsys: pytest.CaptureFixture[str], environ: dict[str, str]
    ) -> None:
        assert 2 == main(["reconcile-events", "--since", UNTIL, "--until", SINCE], environ)


class TestApiFilter:
    def test_reconstructed_filter(self, logged: Services) -> None:
        """`GET /v1/events?reconstructed=true` lists only rebuilt events; a bad value is 400."""
        reconcile_events(
            logged.session_factory, logged.writer, now=logged.clock(), settle_seconds=120
        )
        with TestClient(build_app(logged, with_jobs=False)) as client:
            rebuilt = client.get("/v1/events", params={"reconstructed": "true", "limit": "100"})
            others = client.get("/v1/events", params={"reconstructed": "false", "limit": "100"})
            bad = client.get("/v1/events", params={"reconstructed": "yes"})
        assert REBUILT == len(rebuilt.json()["items"])
        assert all(not e["reconstructed"] for e in others.json()["items"])
        assert 400 == bad.status_code
        assert "reconstructed must be true or false" in bad.json()["error"]["message"]
