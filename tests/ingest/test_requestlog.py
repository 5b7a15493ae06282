"""Registry requests read from the log, and the events the registry sent for them, on the
captures of 2.8.2 and 3.1.1 (each run's notifications carry the request ids of its log)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

import pytest

from monitor.events import Action, TargetKind
from monitor.ingest.logclassify import LogClassifier
from monitor.ingest.requestlog import (
    RequestRecord,
    event_match_key,
    expected_events,
    missing_events,
    record_of,
)
from tests.request_captures import RUN_IDS, RUNS, log_lines, notified, schema1_config_pulls


def records(version: str, log: str) -> list[RequestRecord]:
    classifier = LogClassifier()
    classifier.feed_many(log_lines(version, log))
    found, _ = classifier.take_records()
    return found


@pytest.mark.parametrize(("version", "log", "run"), RUNS, ids=RUN_IDS)
class TestCaptures:
    def test_every_notified_request_has_one_record(self, version: str, log: str, run: str) -> None:
        """The requests with events in the notifications are exactly the records of the log."""
        events = notified(version, run)
        assert {e.request_id for e in events} == {r.request_id for r in records(version, log)}

    def test_expected_events_are_the_notified_ones(self, version: str, log: str, run: str) -> None:
        """Per request: the same events (action and tag, else digest), repository, address,
        user agent and method; the user where the log has it (3.x), never a wrong one."""
        events = notified(version, run)
        by_request = defaultdict(list)
        for event in events:
            by_request[event.request_id].append(event)
        unnamed = {e.event_id for e in schema1_config_pulls(events)}
        assert len(unnamed) == (1 if version == "2.8" else 0)
        for record in records(version, log):
            sent = by_request[record.request_id]
            tags = [e.tag for e in sent if e.target_kind is TargetKind.TAG and e.tag]
            rebuilt = expected_events(record, tags_on_digest=tags)
            assert sorted(event_match_key(e) for e in sent if e.event_id not in unnamed) == sorted(
                event_match_key(e) for e in rebuilt
            ), record
            for event in rebuilt:
                assert event.reconstructed
                assert event.repository == sent[0].repository
                assert event.remote_ip == sent[0].remote_ip
                assert event.user_agent == sent[0].user_agent
                assert event.http_method == sent[0].http_method
                assert event.actor == (sent[0].actor if version == "3.1" else None)
                if event.digest is not None:
                    assert event.digest in {e.digest for e in sent}

    def test_nothing_is_missing_when_every_notification_came(
        self, version: str, log: str, run: str
    ) -> None:
        events = notified(version, run)
        for record in records(version, log):
            sent = [e for e in events if e.request_id == record.request_id]
            tags = [e.tag for e in sent if e.target_kind is TargetKind.TAG and e.tag]
            assert [] == missing_events(record, sent, tags_on_digest=tags)


WHEN = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)


def fields(method: str, uri: str, status: str, **more: str) -> dict[str, str]:
    return {
        "http.request.id": "r1",
        "http.request.method": method,
        "http.request.uri": uri,
        "http.response.status": status,
        **more,
    }


class TestRecordOf:
    @pytest.mark.parametrize(
        ("method", "uri", "status"),
        [
            ("GET", "/v2/", "200"),
            ("POST", "/v2/a/blobs/uploads/", "202"),
            ("PATCH", "/v2/a/blobs/uploads/u1?_state=x", "202"),
            ("HEAD", "/v2/a/blobs/sha256:aa", "404"),
            ("GET", "/v2/a/tags/list", "200"),
            ("GET", "/v2/_catalog", "200"),
            ("PUT", "/v2/a/blobs/uploads/u1?_state=x", "201"),  # no digest: not a finished upload
            ("POST", "/v2/a/blobs/uploads/?mount=sha256:aa", "201"),  # no source repository
            ("DELETE", "/v2/a/blobs/sha256:aa", "202"),  # a blob delete sends no event
        ],
    )
    def test_requests_that_send_no_event(self, method: str, uri: str, status: str) -> None:
        assert record_of(fields(method, uri, status), WHEN) is None

    def test_a_delete_by_tag_deletes_that_tag_only(self) -> None:
        """3.x: `DELETE /v2/<name>/manifests/<tag>` sends one tag delete."""
        record = record_of(fields("DELETE", "/v2/a/manifests/1.0", "202"), WHEN)
        assert record is not None
        (event,) = expected_events(record, tags_on_digest=["ignored"])
        assert (Action.DELETE, TargetKind.TAG, "1.0", None) == (
            event.action,
            event.target_kind,
            event.tag,
            event.digest,
        )

    def test_a_delete_by_digest_deletes_the_manifest_and_its_tags(self) -> None:
        record = record_of(fields("DELETE", "/v2/a/manifests/sha256:aa", "202"), WHEN)
        assert record is not None
        events = expected_events(record, tags_on_digest=["latest", "1.0", "1.0"])
        assert [(TargetKind.MANIFEST, None, "sha256:aa"), (TargetKind.TAG, "1.0", None),
                (TargetKind.TAG, "latest", None)] == [
            (e.target_kind, e.tag, e.digest) for e in events
        ]  # fmt: skip

    def test_ids_are_stable(self) -> None:
        """Rebuilding the same request twice gives the same event ids (replays add nothing)."""
        record = record_of(fields("GET", "/v2/a/manifests/v1", "200"), WHEN)
        assert record is not None
        assert [e.event_id for e in expected_events(record)] == [
            e.event_id for e in expected_events(record)
        ]
