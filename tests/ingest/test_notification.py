"""Normalization of the registry's notification envelopes."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.events import Action, Client, Source, TargetKind
from monitor.ingest.notification import parse_envelope
from tests.fixture_events import RUNS, capture, capture_files, expected, scenario_events

V1 = "application/vnd.docker.distribution.events.v1+json"
V2 = "application/vnd.docker.distribution.events.v2+json"


def _kind(event_kind: TargetKind | None, is_index: bool) -> str:
    assert event_kind is not None
    return "index" if is_index else event_kind.value


def envelope(*events: object) -> bytes:
    return json.dumps({"events": list(events)}).encode()


def push_event(**overrides: object) -> dict[str, object]:
    event: dict[str, object] = {
        "id": "7c6a3f4e-1111-4c7e-9c1a-000000000001",
        "timestamp": "2026-11-27T04:52:17.083169233Z",
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + "a" * 64,
            "size": 476,
            "repository": "team/app",
            "url": "http://registry.example/v2/team/app/manifests/sha256:" + "a" * 64,
            "tag": "v2",
        },
        "request": {
            "id": "req-1",
            "addr": "10.1.2.3:40536",
            "host": "registry.example",
            "method": "PUT",
            "useragent": "docker/27.1.1 go/go1.22.5 git-commit/cc13f95 os/linux arch/amd64",
        },
        "actor": {"name": "alice"},
        "source": {"addr": "vm:5000", "instanceID": "inst-1"},
    }
    event.update(overrides)
    return event


class TestFixtureScenario:
    """Every real capture normalizes, and the counts equal what the registry did."""

    @pytest.mark.parametrize("run", RUNS)
    def test_every_capture_is_one_event(self, run: str) -> None:
        """Each of the 43 POSTs carries exactly one usable event."""
        events = scenario_events(run)
        assert expected(run)["events"] == len(events)
        assert expected(run)["posts"] == len(capture_files(run))

    @pytest.mark.parametrize("run", RUNS)
    def test_counts_by_action(self, run: str) -> None:
        """push 17, pull 22, mount 1, delete 3."""
        counts = Counter(e.action.value for e in scenario_events(run))
        assert expected(run)["by_action"] == dict(counts)

    @pytest.mark.parametrize("run", RUNS)
    def test_counts_by_action_and_target_kind(self, run: str) -> None:
        """Manifests, indexes, blobs and tags are told apart."""
        counts = Counter(
            f"{e.action.value} {_kind(e.target_kind, e.is_index)}" for e in scenario_events(run)
        )
        assert expected(run)["by_action_and_kind"] == dict(counts)

    @pytest.mark.parametrize("run", RUNS)
    def test_counts_by_actor_method_and_repository(self, run: str) -> None:
        """Actors, HTTP methods (HEAD pulls included) and repositories are kept."""
        events = scenario_events(run)
        data = expected(run)
        assert data["by_actor"] == dict(Counter(e.actor for e in events))
        assert data["by_action_and_request_method"] == dict(
            Counter(f"{e.action.value} {e.http_method}" for e in events)
        )
        assert data["by_action_and_repository"] == dict(
            Counter(f"{e.action.value} {e.repository}" for e in events)
        )

    @pytest.mark.parametrize("run", RUNS)
    def test_tags_media_types_mounts_and_instances(self, run: str) -> None:
        """Tag presence, media types, mount sources and the registry instance are kept."""
        events = scenario_events(run)
        data = expected(run)
        assert data["with_tag"] == sum(1 for e in events if e.tag)
        assert data["target_mediaTypes"] == dict(
            Counter(e.media_type or "(absent)" for e in events)
        )
        assert data["mount_from"] == dict(
            Counter(
                f"{e.repository} <- {e.from_repository}" for e in events if e.action is Action.MOUNT
            )
        )
        assert data["source_instanceIDs"] == sorted({e.instance for e in events if e.instance})
        assert data["distinct_request_ids"] == len({e.request_id for e in events})

    def test_common_fields(self) -> None:
        """Addresses lose their port, skopeo and curl are classified, times are UTC."""
        events = scenario_events()
        assert {"127.0.0.1"} == {e.remote_ip for e in events}
        assert {Client.SKOPEO, Client.OTHER} == {e.client for e in events}
        assert all(e.occurred_at.tzinfo is UTC for e in events)
        assert all(e.source is Source.NOTIFICATION for e in events)

    def test_index_push_carries_its_children(self) -> None:
        """The index push names its child manifests (includereferences)."""
        headers, body = capture(
            next(p for p in capture_files() if p.name.startswith("017-push-index"))
        )
        (event,) = parse_envelope(body, headers["Content-Type"]).events
        assert (
            event.target_kind,
            event.tag,
            event.is_index,
        ) == (TargetKind.MANIFEST, "multi", True)
        assert len(event.references) == 2

    def test_manifest_delete_then_tag_deletes(self) -> None:
        """A delete by digest is one manifest delete then one tag delete per tag."""
        deletes = [e for e in scenario_events() if e.action is Action.DELETE]
        assert [(e.target_kind, e.tag) for e in deletes] == [
            (TargetKind.MANIFEST, None),
            (TargetKind.TAG, "latest"),
            (TargetKind.TAG, "1.0"),
        ]
        assert len({e.request_id for e in deletes}) == 1


class TestEnvelopeShapes:
    """What intake accepts beyond the 2.8 captures, and what it rejects."""

    def test_v2_media_type_and_oci_descriptor_order(self) -> None:
        """3.x sends …events.v2+json with keys in descriptor order; keys are read by name."""
        event = push_event()
        target = event["target"]
        assert isinstance(target, dict)
        event["target"] = {
            k: target[k] for k in ("mediaType", "digest", "size", "repository", "url", "tag")
        }
        (parsed,) = parse_envelope(envelope(event), V2).events
        assert (
            parsed.repository,
            parsed.tag,
            parsed.size,
            parsed.client,
        ) == ("team/app", "v2", 476, Client.DOCKER)

    @pytest.mark.parametrize(
        ("content_type", "accepted"),
        [
            (V1, True),
            (V2, True),
            ("application/json", True),
            ("application/json; charset=utf-8", True),
            ("text/plain", False),
            (None, False),
        ],
    )
    def test_media_types(self, content_type: str | None, accepted: bool) -> None:
        """The two event media types and application/json are accepted; others are rejected."""
        result = parse_envelope(envelope(push_event()), content_type)
        assert accepted == (len(result.events) == 1)
        assert (not accepted) == (len(result.rejected) == 1)

    @pytest.mark.parametrize(
        ("addr", "expected_ip"),
        [
            ("10.1.2.3:40536", "10.1.2.3"),
            ("10.1.2.3", "10.1.2.3"),
            ("[2001:db8::1]:5000", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
            ("", None),
        ],
    )
    def test_remote_ip_without_port(self, addr: str, expected_ip: str | None) -> None:
        """request.addr loses its port; X-Forwarded-For addresses come without one."""
        event = push_event(request={"id": "r", "addr": addr, "method": "GET", "useragent": ""})
        (parsed,) = parse_envelope(envelope(event), V1).events
        assert expected_ip == parsed.remote_ip

    def test_several_events_in_one_envelope(self) -> None:
        """An envelope may carry more than one event."""
        body = envelope(push_event(id="a"), push_event(id="b", action="pull"))
        result = parse_envelope(body, V1)
        assert [e.event_id for e in result.events] == ["a", "b"]

    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            (b"garbage", "invalid_json"),
            (b"[]", "invalid_envelope"),
            (b'{"events": []}', "invalid_envelope"),
            (b'{"events": {}}', "invalid_envelope"),
            (envelope(push_event(id=None)), "missing_field"),
            (envelope(push_event(action="teleport")), "unknown_action"),
            (envelope(push_event(timestamp="yesterday")), "invalid_field"),
            (envelope(push_event(target={"digest": "sha256:" + "a" * 64})), "missing_field"),
            (
                envelope(push_event(target={"repository": "a", "size": True, "digest": "d"})),
                "invalid_field",
            ),
            (
                envelope(push_event(target={"repository": "a", "digest": "d", "tag": "t" * 129})),
                "invalid_field",
            ),
            (envelope(push_event(actor="alice")), "invalid_field"),
            (envelope("not an object"), "invalid_event"),
        ],
    )
    def test_unusable_bodies_are_rejected_with_a_reason(self, body: bytes, reason: str) -> None:
        """Each unusable part comes back with a stable reason code, never as an exception."""
        result = parse_envelope(body, V1)
        assert result.events == ()
        assert [reason] == [r.reason for r in result.rejected]

    def test_one_bad_event_does_not_reject_the_others(self) -> None:
        """A bad event is rejected alone; the good ones in the same envelope are kept."""
        result = parse_envelope(envelope(push_event(id="good"), push_event(action="x")), V1)
        assert (
            [e.event_id for e in result.events],
            [r.reason for r in result.rejected],
        ) == (["good"], ["unknown_action"])

    def test_nanosecond_timestamps(self) -> None:
        """Up to nine fractional digits; sub-microsecond precision is dropped."""
        (parsed,) = parse_envelope(
            envelope(push_event(timestamp="2026-11-27T04:49:27.709748593Z")), V1
        ).events
        assert datetime(2026, 11, 27, 4, 49, 27, 709748, tzinfo=UTC) == parsed.occurred_at

    @given(st.binary(max_size=2048), st.sampled_from([V1, V2, "application/json", "text/html", ""]))
    def test_arbitrary_bytes_never_raise(self, body: bytes, content_type: str) -> None:
        """Any body yields events or rejections, never an exception."""
        result = parse_envelope(body, content_type)
        assert len(result.events) + len(result.rejected) >= 1

    @given(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=10), inner, max_size=4)
            ),
            max_leaves=20,
        )
    )
    def test_arbitrary_json_events_never_raise(self, value: object) -> None:
        """Any JSON value as an event is parsed or rejected, never an exception."""
        result = parse_envelope(json.dumps({"events": [value]}).encode(), V1)
        assert len(result.events) + len(result.rejected) == 1
