"""Notifications lost by the registry are rebuilt from its log, exactly once, on the captures of
2.8.2 and 3.1.1, on SQLite and PostgreSQL.

Each example delivers the captured notifications minus a subset, ingests the log of the same
run (the request ids match), reconciles, and compares what was rebuilt with what was dropped;
then it delivers the dropped notifications late and replays the log: nothing is added.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from monitor.events import Action, Event, Source, TargetKind
from monitor.ingest.logclassify import LogClassifier
from monitor.ingest.requestlog import RequestRecord
from monitor.pipeline.housekeeping import expire
from monitor.pipeline.log_ingest import backfill
from monitor.pipeline.reconcile import lost_alert, reconcile_events, registry_tag_digest
from monitor.runtime import Services
from monitor.settings import CleanupSettings
from monitor.settings.fields import Secret
from monitor.store.events import EventFilter, query_events
from monitor.store.schema import METADATA, EventRow, LogRequestRow, RegistryInstanceRow
from monitor.store.tags import list_tags
from tests.harness import USERS, build_images, push
from tests.registry_harness import (
    free_port,
    registry_binary,
    registry_config,
    running_registry,
    write_htpasswd,
)
from tests.request_captures import RUN_IDS, RUNS, log_lines, notified, schema1_config_pulls

SETTLE = 120.0


def empty_store(services: Services) -> None:
    with services.session_factory() as session, session.begin():
        for table in reversed(METADATA.sorted_tables):
            session.execute(delete(table))


def records(version: str, log: str) -> list[RequestRecord]:
    classifier = LogClassifier()
    classifier.feed_many(log_lines(version, log))
    return classifier.take_records()[0]


def shape(event: Event, version: str) -> tuple[str, str | None, str | None, str | None, str | None]:
    """What the log can tell of an event: action, repository, tag, the digest when the request
    named one (not the digest a tag pointed to), and the user on 3.x."""
    named_by_tag = event.tag is not None and event.target_kind is not TargetKind.BLOB
    return (
        event.action.value,
        event.repository,
        event.tag,
        None if named_by_tag else event.digest,
        event.actor if version == "3.1" else None,
    )


def rebuildable(
    dropped: list[Event], delivered: list[Event], version: str, log: str
) -> list[Event]:
    """The dropped events the log names: all but 2.8's schema1 config pull, and the tag deletes
    of a delete by digest only for tags the delivered events showed on that digest."""
    unnamed = {e.event_id for e in schema1_config_pulls(dropped + delivered)}
    by_request = {r.request_id: r for r in records(version, log)}
    out = []
    for event in dropped:
        if event.event_id in unnamed:
            continue
        record = by_request[event.request_id or ""]
        if event.target_kind is TargetKind.TAG and record.tag is None:
            on: dict[str, str | None] = {}
            for seen in sorted(delivered, key=lambda e: e.occurred_at):
                if seen.repository != record.repository or seen.occurred_at > record.occurred_at:
                    continue
                if seen.request_id == record.request_id or seen.tag is None:
                    continue
                if seen.action is Action.DELETE and seen.target_kind is TargetKind.TAG:
                    on[seen.tag] = None
                elif seen.action in (Action.PUSH, Action.PULL) and seen.digest is not None:
                    on[seen.tag] = seen.digest
            if on.get(event.tag or "") != record.digest:
                continue
        out.append(event)
    return out


def reconstructed(services: Services) -> list[Event]:
    with services.session_factory() as session:
        page, _ = query_events(session, where=EventFilter(), limit=10_000)
    return [s.event for s in page if s.event.reconstructed]


def event_count(services: Services) -> int:
    with services.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(EventRow)) or 0)


def reconcile(services: Services, version: str, log: str) -> int:
    end = max(r.occurred_at for r in records(version, log))
    outcome = reconcile_events(
        services.session_factory,
        services.writer,
        now=end + timedelta(seconds=SETTLE + 1),
        settle_seconds=SETTLE,
        metrics=services.metrics,
    )
    return outcome.stored


def check_drop(services: Services, version: str, log: str, run: str, drop: set[int]) -> None:
    empty_store(services)
    events = notified(version, run)
    dropped = [e for i, e in enumerate(events) if i in drop]
    delivered = [e for i, e in enumerate(events) if i not in drop]
    services.writer.submit(delivered).result()
    backfill(log_lines(version, log), writer=services.writer, metrics=services.metrics)
    expected = rebuildable(dropped, delivered, version, log)
    stored = reconcile(services, version, log)
    rebuilt = reconstructed(services)
    assert Counter(shape(e, version) for e in expected) == Counter(
        shape(e, version) for e in rebuilt
    )
    assert len(expected) == stored
    assert all(e.source is Source.LOG for e in rebuilt)
    total = event_count(services)
    # late delivery merges; replaying the log and reconciling again adds nothing
    services.writer.submit(dropped).result()
    assert total + len(dropped) - len(expected) == event_count(services)
    backfill(log_lines(version, log), writer=services.writer, metrics=services.metrics)
    assert 0 == reconcile(services, version, log)
    services.writer.submit(dropped).result()
    assert total + len(dropped) - len(expected) == event_count(services)


@pytest.mark.parametrize(("version", "log", "run"), RUNS, ids=RUN_IDS)
class TestDroppedNotifications:
    def test_all_dropped(self, services: Services, version: str, log: str, run: str) -> None:
        """Every notification lost: every event the log names is rebuilt, once."""
        check_drop(services, version, log, run, set(range(len(notified(version, run)))))

    def test_none_dropped(self, services: Services, version: str, log: str, run: str) -> None:
        """Every notification arrived: every request is matched, nothing is rebuilt."""
        check_drop(services, version, log, run, set())
        with services.session_factory() as session:
            states = Counter(session.scalars(select(LogRequestRow.state)))
        assert {"matched": len(records(version, log))} == states

    @settings(
        max_examples=6,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=st.data())
    def test_any_subset_dropped(
        self, services: Services, version: str, log: str, run: str, data: st.DataObject
    ) -> None:
        """Any subset lost: exactly the dropped events the log names are rebuilt; delivering
        the dropped notifications afterwards leaves the count unchanged."""
        count = len(notified(version, run))
        drop = data.draw(st.sets(st.integers(0, count - 1)))
        check_drop(services, version, log, run, drop)


class TestRetention:
    def test_request_records_expire_with_the_raw_events(self, services: Services) -> None:
        """The expiry job deletes request records older than `retention.events_days` in
        batches, as it does raw events; newer ones stay."""
        services.writer.submit(notified("3.1", "notifications")).result()
        backfill(
            log_lines("3.1", "registry-text.log"), writer=services.writer, metrics=services.metrics
        )
        reconcile(services, "3.1", "registry-text.log")
        logged = records("3.1", "registry-text.log")
        cut = sorted(r.occurred_at for r in logged)[10]
        expire(services.writer.transact, now=cut + timedelta(days=1), days=1, batch=4)
        with services.session_factory() as session:
            left = sorted(session.scalars(select(LogRequestRow.occurred_at)))
        assert sorted(r.occurred_at for r in logged if r.occurred_at >= cut) == left


class TestRegistryStarts:
    def test_each_registry_start_is_recorded_once(self, services: Services) -> None:
        """The `listening on` line of each run is one registry instance (id, time, version);
        ingesting the logs again adds none."""
        for _ in range(2):
            for version, log, _run in RUNS:
                backfill(log_lines(version, log), writer=services.writer, metrics=services.metrics)
        with services.session_factory() as session:
            rows = session.execute(
                select(RegistryInstanceRow.version, func.count()).group_by(
                    RegistryInstanceRow.version
                )
            ).all()
        assert {("2.8.2+ds1", 2), ("v3.1.1", 2)} == set(rows)


def pulls_by_tag(events: list[Event]) -> list[Event]:
    return [
        e
        for e in events
        if e.action is Action.PULL and e.target_kind is TargetKind.MANIFEST and e.tag is not None
    ]


@pytest.mark.parametrize(("version", "log", "run"), RUNS, ids=RUN_IDS)
class TestPullsByTag:
    def test_a_lost_pull_by_tag_takes_the_digest_the_tag_was_on(
        self, services: Services, version: str, log: str, run: str
    ) -> None:
        """Only the pulls by tag lost: each is rebuilt with the digest the registry sent, the
        one the tag's notified push (or an earlier pull) shows; the late notifications merge."""
        events = notified(version, run)
        lost = pulls_by_tag(events)
        services.writer.submit([e for e in events if e not in lost]).result()
        backfill(log_lines(version, log), writer=services.writer, metrics=services.metrics)
        reconcile(services, version, log)
        rebuilt = {(e.request_id, e.tag): e.digest for e in reconstructed(services)}
        assert lost
        assert {(e.request_id, e.tag): e.digest for e in lost} == rebuilt
        count = event_count(services)
        services.writer.submit(lost).result()
        assert count == event_count(services)

    def test_after_a_lost_push_of_the_tag_its_digest_is_unknown(
        self, services: Services, version: str, log: str, run: str
    ) -> None:
        """Every notification lost: each tag was pushed by a request whose log line names no
        digest, so no rebuilt pull by tag claims one."""
        backfill(log_lines(version, log), writer=services.writer, metrics=services.metrics)
        reconcile(services, version, log)
        rebuilt = pulls_by_tag(reconstructed(services))
        assert len(pulls_by_tag(notified(version, run))) == len(rebuilt)
        assert [None] * len(rebuilt) == [e.digest for e in rebuilt]


@pytest.mark.parametrize(("version", "log", "run"), RUNS, ids=RUN_IDS)
class TestDeleteByDigest:
    def test_tags_whose_history_expired_come_from_the_per_tag_state(
        self, services: Services, version: str, log: str, run: str
    ) -> None:
        """The delete by digest lost, and every stored event before it expired (retention):
        the tags it removed are still known from the per-tag state, so the manifest delete
        and each tag delete are rebuilt as the registry sent them; but a tag pushed again
        after the delete (1.0 in the 3.1 run): the state no longer tells what it was on."""
        (delete_record,) = [
            r for r in records(version, log) if r.action is Action.DELETE and r.tag is None
        ]
        events = notified(version, run)
        lost = [e for e in events if e.request_id == delete_record.request_id]
        services.writer.submit([e for e in events if e not in lost]).result()
        backfill(log_lines(version, log), writer=services.writer, metrics=services.metrics)
        cut = delete_record.occurred_at
        expire(services.writer.transact, now=cut + timedelta(days=1), days=1)
        reconcile(services, version, log)
        rebuilt = [e for e in reconstructed(services) if e.request_id == delete_record.request_id]
        pushed_again = {
            e.tag
            for e in events
            if e.action is Action.PUSH
            and e.repository == delete_record.repository
            and e.tag is not None
            and e.occurred_at > cut
        }
        expected = [e for e in lost if e.tag not in pushed_again]
        assert (3, {"2.8": set(), "3.1": {"1.0"}}[version]) == (len(lost), pushed_again)
        assert Counter((e.target_kind, e.tag, e.digest) for e in expected) == Counter(
            (e.target_kind, e.tag, e.digest) for e in rebuilt
        )


def pushes_by_tag(events: list[Event]) -> list[Event]:
    return [
        e
        for e in events
        if e.action is Action.PUSH and e.target_kind is TargetKind.MANIFEST and e.tag is not None
    ]


def registry_settings(url: str) -> CleanupSettings:
    return CleanupSettings(registry_url=url, username="alice", password=Secret(USERS["alice"]))


class TestPushByTagDigestFromTheRegistry:
    def test_a_push_still_on_its_tag_takes_the_digest_the_registry_answers(
        self, services: Services, tmp_path: Path, registry_version: str
    ) -> None:
        """Every notification lost, the real registry's log ingested: a rebuilt push by tag
        that is the newest push of its tag takes the digest the registry answers for the tag,
        and so does the per-tag state; a push the tag moved away from stays without one, and
        so does a push whose tag a delete by digest removed (the registry answers 404)."""
        layout = build_images(tmp_path / "oci", salt=tmp_path.name)
        root = tmp_path / "registry"
        config = registry_config(
            root=root,
            port=free_port(),
            htpasswd=write_htpasswd(path=tmp_path / "htpasswd", users=USERS),
        )
        binary = registry_binary(registry_version)
        with running_registry(directory=root, config=config, binary=binary) as registry:
            host = registry.host
            push(layout, "hello", f"{host}/team/app:moved")
            push(layout, "app", f"{host}/team/app:moved")
            push(layout, "app", f"{host}/team/app:kept")
            push(layout, "multi", f"{host}/team/app:gone", extra=("--all",))
            answer = httpx.delete(
                f"{registry.url}/v2/team/app/manifests/{layout.digests['multi']}",
                auth=("alice", USERS["alice"]),
                timeout=30,
            )
            assert 202 == answer.status_code, answer.text
            backfill(registry.log().splitlines(), writer=services.writer, metrics=services.metrics)
            outcome = reconcile_events(
                services.session_factory,
                services.writer,
                now=datetime.now(UTC) + timedelta(minutes=1),
                settle_seconds=0,
                open_lookup=registry_tag_digest(registry_settings(registry.url)),
                metrics=services.metrics,
            )
        rebuilt = sorted(pushes_by_tag(reconstructed(services)), key=lambda e: e.occurred_at)
        assert [
            ("moved", None),
            ("moved", layout.digests["app"]),
            ("kept", layout.digests["app"]),
            ("gone", None),
        ] == [(e.tag, e.digest) for e in rebuilt]
        assert (2, 1) == (outcome.digests_resolved, outcome.digests_unresolved)
        assert (2, 1) == lookups(services)
        with services.session_factory() as session:
            tags = {t.tag: t.digest for t in list_tags(session, repository="team/app")}
        assert layout.digests["app"] == tags["moved"] == tags["kept"]


def lookups(services: Services) -> tuple[float, float]:
    """`registry_monitor_reconcile_digest_lookups_total`: (resolved, unresolved)."""

    def value(outcome: str) -> float:
        found = services.metrics.registry.get_sample_value(
            "registry_monitor_reconcile_digest_lookups_total", {"outcome": outcome}
        )
        return found or 0.0

    return value("resolved"), value("unresolved")


@pytest.mark.parametrize(("version", "log", "run"), RUNS, ids=RUN_IDS)
class TestPushByTagDigestUnreachable:
    def test_a_registry_that_does_not_answer_leaves_the_digest_empty(
        self, services: Services, version: str, log: str, run: str
    ) -> None:
        """Every notification lost and nothing listening at the registry's URL: the rebuilt
        pushes by tag are stored without a digest, as without a URL, and counted."""
        backfill(log_lines(version, log), writer=services.writer, metrics=services.metrics)
        end = max(r.occurred_at for r in records(version, log))
        outcome = reconcile_events(
            services.session_factory,
            services.writer,
            now=end + timedelta(seconds=SETTLE + 1),
            settle_seconds=SETTLE,
            open_lookup=registry_tag_digest(registry_settings(f"http://127.0.0.1:{free_port()}")),
            metrics=services.metrics,
        )
        rebuilt = pushes_by_tag(reconstructed(services))
        writes = sorted(
            (r.occurred_at, r.request_id, r.repository, r.tag)
            for r in records(version, log)
            if r.action in (Action.PUSH, Action.DELETE) and r.tag is not None
        )
        newest: dict[tuple[str | None, str | None], str] = {
            (repository, tag): request_id for _, request_id, repository, tag in writes
        }
        still_on_tag = [e for e in rebuilt if newest[(e.repository, e.tag)] == e.request_id]
        assert still_on_tag
        assert [None] * len(rebuilt) == [e.digest for e in rebuilt]
        assert (0, len(still_on_tag)) == (outcome.digests_resolved, outcome.digests_unresolved)
        assert (0, len(still_on_tag)) == lookups(services)


def test_the_lost_notifications_message_names_its_span_in_utc() -> None:
    """The Slack summary of rebuilt events counts them by action and gives the span they
    occurred in as RFC 3339 UTC times, as every other time the monitor shows."""
    at = datetime(2026, 11, 27, 4, 52, 5, 123456, tzinfo=UTC)
    events = [
        Event(
            event_id=f"lost-{n}",
            source=Source.LOG,
            action=action,
            occurred_at=at + timedelta(seconds=n),
            repository="team/app",
        )
        for n, action in enumerate((Action.PUSH, Action.PULL, Action.PUSH))
    ]
    alert = lost_alert(events, now=at + timedelta(minutes=5))
    assert (
        "The registry lost 3 notifications (1 pull, 2 push) between "
        "2026-11-27T04:52:05.123456Z and 2026-11-27T04:52:07.123456Z; "
        "they were rebuilt from its log"
    ) == alert.summary
