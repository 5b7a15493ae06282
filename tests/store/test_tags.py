"""Per-tag state folded from events, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from monitor.events import Action, Event, TargetKind
from monitor.ingest.logclassify import LogClassifier
from monitor.ingest.requestlog import expected_events
from monitor.runtime import Services
from monitor.store.tags import TagPulls, TagState, list_tag_pulls, list_tags
from tests.fixture_events import make_event, scenario_events, scenario_steps
from tests.request_captures import log_lines, notified

HELLO = "sha256:62fe1501080ca69f6d148785d0cbf8f360beacebbdf35f38400cee06ce1858f0"
APP_V1 = "sha256:f792ae1af37059a839aab474d3d19bd5593bf014f430613653b77e0692ac4ab5"
MULTI = "sha256:d11c01857587d6bd4e0625744027637fb5b85e04c0a8e53c7f12e51d7d459f8d"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def store(services: Services, events: Sequence[Event], *, one_by_one: bool = False) -> None:
    if one_by_one:
        for event in events:
            services.writer.submit([event]).result(timeout=30)
    else:
        services.writer.submit(list(events)).result(timeout=30)


def tags(services: Services) -> dict[tuple[str, str], TagState]:
    with services.session_factory() as session:
        return {(t.repository, t.tag): t for t in list_tags(session)}


def renamed(events: Sequence[Event], prefix: str) -> list[Event]:
    """`events` with their ids and repositories under `prefix`."""
    return [
        dataclasses.replace(
            e,
            event_id=prefix + e.event_id,
            repository=None if e.repository is None else prefix + e.repository,
        )
        for e in events
    ]


def manifest(action: Action, at: int, **fields: Any) -> Event:
    """A manifest event of `action` `at` minutes after T0 (no digest unless given)."""
    values: dict[str, Any] = {
        "event_id": f"{action.value}-{at}-{fields.get('tag')}-{fields.get('digest')}",
        "action": action,
        "occurred_at": T0 + timedelta(minutes=at),
        "digest": None,
        "http_method": "GET" if action is Action.PULL else "PUT",
    }
    return make_event(**{**values, **fields})


class TestScenarioTagState:
    """After the whole captured scenario, each tag's state is what the registry did."""

    @pytest.mark.parametrize("order", ["arrival", "reversed within steps", "shuffled within steps"])
    def test_digests_deletions_and_pull_counts(self, services: Services, order: str) -> None:
        """Pushed tags, deleted hello tags and per-tag pulls, whatever the order inside a step.

        Within one client operation the registry may emit events in any order (concurrent
        blob uploads); between operations the order is fixed.
        """
        events: list[Event] = []
        for step in scenario_steps():
            if order == "reversed within steps":
                step.reverse()
            elif order == "shuffled within steps":
                random.Random(20261127).shuffle(step)
            events.extend(step)
        store(services, events, one_by_one=True)
        summary = {
            key: (t.digest, t.pull_count, t.deleted_at is not None, t.last_pushed_by)
            for key, t in tags(services).items()
        }
        assert {
            ("library/hello", "1.0"): (HELLO, 3, True, "alice"),
            ("library/hello", "latest"): (HELLO, 0, True, "alice"),
            ("mirror/hello", "1.0"): (HELLO, 0, False, "alice"),
            ("team/app", "v1"): (APP_V1, 3, False, "alice"),
            ("team/app", "multi"): (MULTI, 1, False, "alice"),
        } == summary

    def test_pulls_by_method_and_client(self, services: Services) -> None:
        """hello:1.0 was pulled once by a curl HEAD and twice by skopeo GETs."""
        store(services, scenario_events())
        with services.session_factory() as session:
            pulls = list_tag_pulls(session, repository="library/hello")
        assert {("1.0", "GET", "skopeo", 2), ("1.0", "HEAD", "other", 1)} == {
            (p.tag, p.http_method, p.client, p.pull_count) for p in pulls
        }

    def test_pull_by_digest_credits_the_tag_on_that_digest(self, services: Services) -> None:
        """team/app@<v1 digest> (no tag in the event) counts as a pull of v1."""
        events = scenario_events()
        by_digest = [
            e for e in events if e.action is Action.PULL and e.digest == APP_V1 and not e.tag
        ]
        assert 1 == len(by_digest)
        store(services, events)
        last_pulled = tags(services)[("team/app", "v1")].last_pulled_at
        assert last_pulled is not None
        assert last_pulled >= by_digest[0].occurred_at

    def test_duplicates_change_nothing(self, services: Services) -> None:
        """The same events delivered again (the registry's retries) leave the state as it was."""
        events = scenario_events()
        store(services, events)
        reference = tags(services)
        store(services, events, one_by_one=True)
        assert reference == tags(services)


class TestPullsTogether:
    """Consecutive pulls by tag reach the store together; the state is the one the same events
    stored one at a time leave."""

    def test_a_batch_leaves_what_events_one_at_a_time_leave(self, services: Services) -> None:
        """The captured scenario, then two runs of pulls by tag (one tag twice in a row) with
        a push, a pull by digest and a delete between them: stored in one batch under `batch/`
        and one by one in time order (the order a batch is applied in) under `alone/`, the
        two leave the same tags and pull counts."""
        hello = {"repository": "library/hello"}
        events = [
            *scenario_events(),
            *(
                manifest(Action.PULL, at, tag=tag, digest=HELLO, **hello)
                for at, tag in [(60, "1.0"), (61, "1.0"), (62, "2.0")]
            ),
            manifest(Action.PUSH, 63, tag="2.0", digest=APP_V1, **hello),
            manifest(Action.PULL, 64, digest=APP_V1, **hello),
            manifest(Action.DELETE, 65, tag="3.0", **hello),
            *(
                manifest(Action.PULL, at, tag=tag, digest=HELLO, **hello)
                for at, tag in [(66, "1.0"), (67, "3.0"), (68, "2.0")]
            ),
        ]
        store(services, renamed(events, "batch/"))
        in_time = sorted(events, key=lambda e: e.occurred_at)
        store(services, renamed(in_time, "alone/"), one_by_one=True)
        with services.session_factory() as session:
            rows: list[TagState | TagPulls] = [*list_tags(session), *list_tag_pulls(session)]

        def under(prefix: str) -> list[TagState | TagPulls]:
            kept = [row for row in rows if row.repository.startswith(prefix)]
            return sorted(
                (
                    dataclasses.replace(row, repository=row.repository[len(prefix) :])
                    for row in kept
                ),
                key=repr,
            )

        assert under("alone/") == under("batch/")
        counts = {
            (row.tag, row.pull_count)
            for row in under("batch/")
            if isinstance(row, TagState) and row.repository == "library/hello"
        }
        assert {("1.0", 3 + 3), ("2.0", 2 + 1), ("3.0", 1)} <= counts


class TestOutOfOrderAndRevival:
    def test_late_older_push_does_not_move_the_tag_back(self, services: Services) -> None:
        """A push that arrives late but happened earlier keeps the newer digest."""
        store(services, [manifest(Action.PUSH, 10, tag="v2", digest="sha256:new")], one_by_one=True)
        store(services, [manifest(Action.PUSH, 5, tag="v2", digest="sha256:old")], one_by_one=True)
        state = tags(services)[("team/app", "v2")]
        assert ("sha256:new", T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)) == (
            state.digest,
            state.first_seen_at,
            state.last_pushed_at,
        )

    def test_push_after_delete_revives_the_tag(self, services: Services) -> None:
        """Deleted, then pushed again later: the tag is live with the new digest."""
        store(
            services,
            [
                manifest(Action.PUSH, 1, tag="v3", digest="sha256:a"),
                manifest(
                    Action.DELETE, 2, tag="v3", target_kind=TargetKind.TAG, http_method="DELETE"
                ),
                manifest(Action.PUSH, 3, tag="v3", digest="sha256:b"),
            ],
            one_by_one=True,
        )
        state = tags(services)[("team/app", "v3")]
        assert ("sha256:b", None) == (state.digest, state.deleted_at)

    def test_delete_older_than_the_last_push_is_ignored(self, services: Services) -> None:
        """A delete that happened before the latest push does not delete the re-pushed tag."""
        store(services, [manifest(Action.PUSH, 9, tag="v4", digest="sha256:c")], one_by_one=True)
        store(
            services,
            [manifest(Action.DELETE, 4, digest="sha256:c", http_method="DELETE")],
            one_by_one=True,
        )
        assert tags(services)[("team/app", "v4")].deleted_at is None

    def test_pull_of_an_unknown_tag_learns_it(self, services: Services) -> None:
        """A tag pushed before the monitor started is learned from its first pull."""
        store(services, [manifest(Action.PULL, 7, tag="legacy", digest="sha256:d")])
        state = tags(services)[("team/app", "legacy")]
        assert ("sha256:d", 1, None) == (state.digest, state.pull_count, state.last_pushed_at)

    def test_pull_by_digest_credits_every_tag_on_it(self, services: Services) -> None:
        """Two tags on one digest are both credited by a pull by digest."""
        store(
            services,
            [
                manifest(Action.PUSH, 1, tag="a", digest="sha256:e"),
                manifest(Action.PUSH, 1, tag="b", digest="sha256:e", event_id="push-b"),
                manifest(Action.PULL, 2, digest="sha256:e"),
            ],
            one_by_one=True,
        )
        state = tags(services)
        assert (1, 1) == (state[("team/app", "a")].pull_count, state[("team/app", "b")].pull_count)


def logged_push(version: str, repository: str, tag: str) -> tuple[Event, Event]:
    """The push by tag of a captured run as the log rebuilds it (no digest, no media type) and
    as the registry notified it (request ids match)."""
    classifier = LogClassifier()
    classifier.feed_many(log_lines(version, "registry-text.log"))
    (record,) = [
        r
        for r in classifier.take_records()[0]
        if r.action is Action.PUSH and (r.repository, r.tag) == (repository, tag)
    ]
    (rebuilt,) = expected_events(record)
    (sent,) = [e for e in notified(version, "notifications") if e.request_id == record.request_id]
    return rebuilt, sent


@pytest.mark.parametrize("version", ["2.8", "3.1"])
class TestRebuiltPushes:
    """A push by tag rebuilt from the registry's log: the log does not name the digest."""

    def test_a_rebuilt_push_keeps_the_digest_the_tag_had(
        self, services: Services, version: str
    ) -> None:
        """The tag was on a known digest; a push whose notification was lost moves its last
        push time and leaves the digest and media type as they were (never blanked)."""
        rebuilt, _ = logged_push(version, "library/hello", "latest")
        before = rebuilt.occurred_at - timedelta(hours=1)
        earlier = make_event(
            action=Action.PUSH,
            repository="library/hello",
            tag="latest",
            occurred_at=before,
            http_method="PUT",
        )
        store(services, [earlier], one_by_one=True)
        store(services, [rebuilt], one_by_one=True)
        state = tags(services)[("library/hello", "latest")]
        assert (earlier.digest, earlier.media_type, rebuilt.occurred_at) == (
            state.digest,
            state.media_type,
            state.last_pushed_at,
        )

    def test_its_late_notification_gives_the_tag_the_digest(
        self, services: Services, version: str
    ) -> None:
        """A tag first seen in a rebuilt push has no digest; the notification that arrives
        late merges into the rebuilt event and gives the tag its digest, type and user."""
        rebuilt, sent = logged_push(version, "library/hello", "latest")
        store(services, [rebuilt])
        unknown = tags(services)[("library/hello", "latest")].digest
        store(services, [sent])
        state = tags(services)[("library/hello", "latest")]
        assert (None, sent.digest, sent.media_type, sent.actor) == (
            unknown,
            state.digest,
            state.media_type,
            state.last_pushed_by,
        )

    def test_a_late_notification_does_not_move_a_tag_pushed_again_since(
        self, services: Services, version: str
    ) -> None:
        """After the rebuilt push the tag was pushed again (notified): the late notification
        of the older push leaves the newer digest."""
        rebuilt, sent = logged_push(version, "library/hello", "latest")
        later = make_event(
            action=Action.PUSH,
            repository="library/hello",
            tag="latest",
            occurred_at=rebuilt.occurred_at + timedelta(minutes=5),
            http_method="PUT",
        )
        store(services, [rebuilt, later], one_by_one=True)
        store(services, [sent])
        assert later.digest == tags(services)[("library/hello", "latest")].digest
        assert later.digest != sent.digest
