"""Reconciliation brings the store's tags in line with the registry's, on SQLite and
PostgreSQL, and finishes when PostgreSQL breaks its transaction off in a deadlock with the
applier (which folds the registry's events into the same tags, in the order they happened)."""

from __future__ import annotations

import functools
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from monitor.cleanup import reconcile as reconcile_module
from monitor.cleanup.model import TagRef
from monitor.cleanup.reconcile import ReconcileResult, reconcile
from monitor.runtime import Services
from monitor.store.engine import SessionFactory
from monitor.store.inventory import list_manifests, record_tag_seen
from monitor.store.tags import apply_events, list_tags
from monitor.store.transaction import in_transaction
from tests.cleanup.doubles import MemoryRegistry
from tests.fixture_events import make_event

REPO = "team/app"
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def manifest(name: str) -> str:
    """An image manifest whose config is named after `name`."""
    config = {"digest": f"sha256:{name:0>64}"[:71], "size": 10 + len(name)}
    layer = {"digest": "sha256:" + "1" * 64, "size": 1000}
    return json.dumps({"schemaVersion": 2, "config": config, "layers": [layer]})


def registry() -> MemoryRegistry:
    client = MemoryRegistry()
    for tag in ("a", "b", "c"):
        client.push(REPO, tag, manifest(tag))
    return client


def clock() -> datetime:
    return NOW


def state(services: Services) -> dict[str, tuple[str | None, bool]]:
    """Each tag of REPO: its digest and whether it is live."""
    with services.session_factory() as session:
        tags = list_tags(session, repository=REPO)
    return {t.tag: (t.digest, t.deleted_at is None) for t in tags}


class TestReconcile:
    def test_learns_moves_and_deletes_what_the_registry_shows(self, services: Services) -> None:
        """Tags unknown to the store are learned, a tag on another digest is reported moved,
        a tag gone from the registry is marked deleted, and every manifest's details fetched."""
        client = registry()
        with services.session_factory() as session, session.begin():
            for tag, digest in (("b", "sha256:" + "e" * 64), ("gone", "sha256:" + "f" * 64)):
                record_tag_seen(
                    session,
                    repository=REPO,
                    tag=tag,
                    digest=digest,
                    media_type=None,
                    seen_at=NOW - timedelta(days=1),
                )
        result = reconcile(services.session_factory, client, clock=clock)
        expected = ReconcileResult(
            1, 3, (TagRef(REPO, "a"), TagRef(REPO, "c")), (TagRef(REPO, "b"),), 1, 3
        )
        assert expected == result
        live = {tag: (client.tag_map[(REPO, tag)], True) for tag in ("a", "b", "c")}
        assert {**live, "gone": ("sha256:" + "f" * 64, False)} == state(services)
        with services.session_factory() as session:
            assert 3 == len(list_manifests(session, repository=REPO))

    def test_a_second_pass_learns_nothing(self, services: Services) -> None:
        """Reconciling an unchanged registry again learns, moves and fetches nothing."""
        client = registry()
        reconcile(services.session_factory, client, clock=clock)
        again = reconcile(services.session_factory, client, clock=clock)
        assert ((), (), 0, 0) == (
            again.learned,
            again.moved,
            again.vanished,
            again.manifests_fetched,
        )


def _waiting_on_a_lock(session_factory: SessionFactory) -> int:
    """Sessions of this database waiting on a lock (in a transaction of its own: PostgreSQL
    keeps one snapshot of pg_stat_activity for a whole transaction)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    with session_factory() as session:
        return int(session.scalar(query) or 0)


class TestDeadlockWithTheApplier:
    @pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
    def test_reconcile_runs_again_and_reports_its_last_run(
        self, services: Services, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The applier's transaction has folded a pull of tag b and goes on to a pull of tag a;
        reconciliation, writing tags in name order, holds a and waits for b. PostgreSQL breaks
        the cycle by ending reconciliation's transaction (it waited first, so its deadlock check
        runs first); reconciliation writes the repository again once the applier committed,
        and reports what that run found: a and b were learned from their pulls meanwhile, only
        c is new to the store. (Reconciliation's pause before it runs again lasts until the
        applier committed: on a loaded machine its usual 20-100 ms may end before the applier's
        thread is scheduled, and its second run would then see a store without a and b.)"""
        committed = threading.Event()

        def until_committed(seconds: float) -> None:
            assert committed.wait(timeout=30), "the applier never committed"

        monkeypatch.setattr(
            reconcile_module,
            "in_transaction",
            functools.partial(in_transaction, pause=until_committed),
        )
        client = registry()
        digests = {tag: client.tag_map[(REPO, tag)] for tag in ("a", "b", "c")}
        pulls = {
            tag: make_event(repository=REPO, tag=tag, digest=digests[tag], occurred_at=NOW)
            for tag in ("a", "b")
        }
        outcome: list[ReconcileResult | BaseException] = []

        def run() -> None:
            try:
                outcome.append(reconcile(services.session_factory, client, clock=clock))
            except BaseException as exc:  # reported by the assertion below
                outcome.append(exc)

        reconciler = threading.Thread(target=run)
        with services.session_factory() as applier, applier.begin():
            apply_events(applier, [pulls["b"]])
            reconciler.start()
            deadline = time.monotonic() + 30
            while _waiting_on_a_lock(services.session_factory) < 1:
                assert time.monotonic() < deadline, f"reconciliation never waited: {outcome}"
                time.sleep(0.01)
            apply_events(applier, [pulls["a"]])
        committed.set()
        reconciler.join(timeout=60)
        assert [ReconcileResult(1, 3, (TagRef(REPO, "c"),), (), 0, 3)] == outcome
        assert {tag: (digest, True) for tag, digest in digests.items()} == state(services)
        with services.session_factory() as session:
            pulled = {t.tag: t.pull_count for t in list_tags(session, repository=REPO)}
        assert {"a": 1, "b": 1, "c": 0} == pulled
