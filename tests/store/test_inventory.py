"""Registry inventory and planner input, from the real captured notifications."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, func, select

from monitor.cleanup.model import Blob
from monitor.events import Action, Event, TargetKind
from monitor.runtime import Services
from monitor.store.blob_sizes import blob_sizes
from monitor.store.events import expire_events
from monitor.store.inventory import list_manifests, mark_missing_deleted, record_tag_seen
from monitor.store.planner_input import planner_input
from monitor.store.schema import EventRow
from monitor.store.tags import list_tags
from tests.fixture_events import scenario_events

HELLO = "sha256:62fe1501080ca69f6d148785d0cbf8f360beacebbdf35f38400cee06ce1858f0"
APP_V1 = "sha256:f792ae1af37059a839aab474d3d19bd5593bf014f430613653b77e0692ac4ab5"
MULTI = "sha256:d11c01857587d6bd4e0625744027637fb5b85e04c0a8e53c7f12e51d7d459f8d"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def ingest(services: Services) -> None:
    services.writer.submit(scenario_events()).result(timeout=30)


class TestLearnedManifests:
    def test_push_events_give_children_and_blob_sizes(self, services: Services) -> None:
        """The captured pushes teach the index's children and app:v1's three blobs with sizes."""
        ingest(services)
        with services.session_factory() as session:
            infos = {(m.repository, m.digest): m for m in list_manifests(session)}
        multi, app = infos[("team/app", MULTI)], infos[("team/app", APP_V1)]
        assert 2 == len(multi.children)
        assert [128, 137, 462] == sorted(b.size for b in app.blobs)
        assert (645, 583) == (multi.size, app.size)

    def test_blob_sizes_come_from_their_own_table_not_from_events(self, services: Services) -> None:
        """Blob sizes are recorded as blob events are stored, so a manifest pushed after every
        raw event expired still learns its blobs' sizes: nothing reads events for them."""
        events = scenario_events()
        blob_events = [e for e in events if e.target_kind is TargetKind.BLOB]
        manifest_pushes = [
            e for e in events if e.action is Action.PUSH and e.target_kind is TargetKind.MANIFEST
        ]
        services.writer.submit(blob_events).result(timeout=30)
        with services.session_factory() as session, session.begin():
            expire_events(session, older_than=datetime(2100, 1, 1, tzinfo=UTC))
            assert 0 == session.scalar(select(func.count()).select_from(EventRow))
        services.writer.submit(manifest_pushes).result(timeout=30)
        with services.session_factory() as session:
            app = {m.digest: m for m in list_manifests(session, repository="team/app")}[APP_V1]
        assert [128, 137, 462] == sorted(b.size for b in app.blobs)

    def test_blob_sizes_are_keyed_by_repository_and_digest(self, services: Services) -> None:
        """A blob's size is known in the repositories that stored it, and nowhere else."""
        ingest(services)
        with services.session_factory() as session:
            app = {m.digest: m for m in list_manifests(session, repository="team/app")}[APP_V1]
            digests = [b.digest for b in app.blobs]
            in_app = blob_sizes(session, "team/app", digests)
            elsewhere = blob_sizes(session, "library/nothing-here", digests)
        assert ({b.digest: b.size for b in app.blobs}, {}) == (in_app, elsewhere)

    def test_blob_sizes_of_a_manifest_with_many_layers(self, services: Services) -> None:
        """A manifest naming more blobs than one lookup holds (1,300 here, padded and split
        into lists of at most 512) learns the size of each known blob, and only of those."""
        base = next(e for e in scenario_events() if e.target_kind is TargetKind.BLOB)
        digests = [f"sha256:{n:064x}" for n in range(1300)]
        blobs = [
            dataclasses.replace(base, event_id=f"blob-{n}", digest=d, size=n + 1)
            for n, d in enumerate(digests)
            if n % 3
        ]
        services.writer.submit(blobs).result(timeout=60)
        with services.session_factory() as session:
            sizes = blob_sizes(session, base.repository or "", [*reversed(digests), digests[1]])
        assert {d: n + 1 for n, d in enumerate(digests) if n % 3} == sizes


def app_v1_push() -> Event:
    return next(
        e
        for e in scenario_events()
        if e.action is Action.PUSH and e.target_kind is TargetKind.MANIFEST and e.digest == APP_V1
    )


def statements_of(services: Services, events: list[Event]) -> list[str]:
    """The statements (one per call: a call with many rows counts once) storing `events`."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(services.engine, "before_cursor_execute", record)
    try:
        services.writer.submit(events).result(timeout=30)
    finally:
        event.remove(services.engine, "before_cursor_execute", record)
    return statements


class TestManifestsOfOneCommit:
    def test_a_manifest_pushed_twice_is_saved_as_each_push_in_turn_would(
        self, services: Services
    ) -> None:
        """Pushed twice in one commit, a manifest is what the last push says, at the later of the
        two times (a push never moves `pushed_at` back), as two commits would leave it."""
        ingest(services)
        first = dataclasses.replace(
            app_v1_push(), event_id="again-1", occurred_at=T0 + timedelta(days=30), size=583
        )
        second = dataclasses.replace(
            first, event_id="again-2", occurred_at=T0 + timedelta(days=29), size=999
        )
        services.writer.submit([first, second]).result(timeout=30)
        with services.session_factory() as session:
            app = {m.digest: m for m in list_manifests(session, repository="team/app")}[APP_V1]
        assert (999, T0 + timedelta(days=30), [128, 137, 462]) == (
            app.size,
            app.pushed_at,
            sorted(b.size for b in app.blobs),
        )

    def test_the_statements_of_a_commit_do_not_grow_with_its_pushes(
        self, services: Services
    ) -> None:
        """Tag pushes, blob size lookups and saved manifests go to the store once per commit
        (once per repository for the sizes), whether it holds one manifest push or forty."""
        ingest(services)
        base = app_v1_push()

        def pushes(name: str, count: int) -> list[Event]:
            return [
                dataclasses.replace(
                    base, event_id=f"{name}-{n}", tag=f"{name}-{n}", digest=f"sha256:{n:064x}"
                )
                for n in range(count)
            ]

        statements_of(services, pushes("warm", 1))
        one, forty = (
            statements_of(services, pushes("one", 1)),
            statements_of(services, pushes("forty", 40)),
        )
        with services.session_factory() as session:
            tags = {t.tag: t.digest for t in list_tags(session, repository="team/app")}
            manifests = {m.digest: m for m in list_manifests(session, repository="team/app")}
        assert len(one) == len(forty)
        assert f"sha256:{39:064x}" == tags["forty-39"]
        assert [128, 137, 462] == sorted(b.size for b in manifests[f"sha256:{39:064x}"].blobs)


class TestTagsSeen:
    def test_first_seen_moves_earlier_only(self, services: Services) -> None:
        """A tag seen earlier than its first push starts earlier; a later sighting changes nothing."""
        ingest(services)
        with services.session_factory() as session, session.begin():
            for at in (T0 - timedelta(days=40), T0 + timedelta(days=400)):
                record_tag_seen(
                    session, repository="team/app", tag="v1", digest=APP_V1,
                    media_type=None, seen_at=at,
                )  # fmt: skip
        with services.session_factory() as session:
            state = {t.tag: t for t in list_tags(session, repository="team/app")}["v1"]
        assert T0 - timedelta(days=40) == state.first_seen_at

    def test_unknown_tag_is_learned_and_missing_tag_marked_deleted(
        self, services: Services
    ) -> None:
        """A tag only the registry knows is added; a tag the registry lost is marked deleted."""
        ingest(services)
        with services.session_factory() as session, session.begin():
            record_tag_seen(
                session, repository="team/app", tag="ghost", digest=HELLO,
                media_type=None, seen_at=T0,
            )  # fmt: skip
            gone = mark_missing_deleted(session, repository="team/app", present=["ghost"], now=T0)
        with services.session_factory() as session:
            live = sorted(t.tag for t in list_tags(session, include_deleted=False) if
                          t.repository == "team/app")  # fmt: skip
        assert (["ghost"], True) == (live, gone >= 1)


class TestPlannerInput:
    def test_tags_pulls_and_manifests_per_repository(self, services: Services) -> None:
        """Each repository comes with its live tags, their pulls and its manifests."""
        ingest(services)
        with services.session_factory() as session:
            repositories, _ = planner_input(session, now=T0 + timedelta(days=30))
        by_name = {r.name: r for r in repositories}
        app = {t.tag: t for t in by_name["team/app"].tags}
        blobs = {m.digest: m.blobs for m in by_name["team/app"].manifests}
        expected = (APP_V1, MULTI, 3)
        assert expected == (app["v1"].digest, app["multi"].digest, len(blobs[APP_V1]))
        assert all(isinstance(b, Blob) for b in blobs[APP_V1])

    def test_times_are_aware_utc_and_read_without_conversion_on_postgresql(
        self, services: Services
    ) -> None:
        """The planner's times are aware UTC on both stores; on PostgreSQL the session is in
        UTC, so the driver's own values already carry `datetime.UTC` (nothing to convert)."""
        ingest(services)
        with services.session_factory() as session:
            repositories, _ = planner_input(session, now=T0 + timedelta(days=30))
            driver_zone = session.execute(select(func.now())).scalar_one().tzinfo
        times = [
            at
            for r in repositories
            for t in r.tags
            for at in (t.first_seen_at, t.last_pushed_at, *(p.last_pulled_at for p in t.pulls))
        ]
        assert times
        assert {UTC} == {at.tzinfo for at in times}
        if services.settings.database.effective_url().startswith("postgresql"):
            assert driver_zone is UTC
