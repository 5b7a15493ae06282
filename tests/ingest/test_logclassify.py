from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.events import Action, Client, Event, Source, TargetKind
from monitor.ingest.logclassify import LogClassifier
from monitor.ingest.logline import LineKind, parse_line
from tests.ingest.scenario import LOG_FILES, expected_log, log_lines

# Fields that legitimately differ between the text and the JSON run of the same scenario.
_PER_RUN = ("event_id", "occurred_at", "request_id")


def _classify(lines: tuple[str, ...] | list[str], **options: Any) -> tuple[list[Event], Any]:
    classifier = LogClassifier(**options)
    return classifier.feed_many(lines), classifier


def _stable(event: Event) -> dict[str, Any]:
    values = dataclasses.asdict(event)
    for name in _PER_RUN:
        values.pop(name)
    return values


def _access_only(name: str) -> list[str]:
    return [line for line in log_lines(name) if line.startswith("127.0.0.1 - - [")]


class TestLogClassifierOnCaptures:
    @pytest.mark.parametrize("name", LOG_FILES)
    def test_failed_logins_are_one_event_per_request(self, name: str) -> None:
        """Exactly the 3 failed logins of mallory and the 1 of bob become auth_failure events."""
        events, _ = _classify(log_lines(name))
        failures = [e for e in events if e.action is Action.AUTH_FAILURE]
        assert expected_log(name)["auth_failures_by_user"] == dict(
            Counter(e.actor for e in failures)
        )
        assert expected_log(name)["auth_failures_by_remote_ip"] == dict(
            Counter(e.remote_ip for e in failures)
        )

    @pytest.mark.parametrize("name", LOG_FILES)
    def test_failed_login_event_fields(self, name: str) -> None:
        """A failed login carries the request's address, agent, client, URI, method and a 401."""
        events, _ = _classify(log_lines(name))
        bob = next(e for e in events if e.action is Action.AUTH_FAILURE and e.actor == "bob")
        expected = {
            "source": Source.LOG,
            "remote_ip": "127.0.0.1",
            "user_agent": "curl/7.88.1",
            "client": Client.OTHER,
            "request_uri": "/v2/",
            "http_method": "GET",
            "http_status": 401,
            "route": "base",
            "detail": "authentication failure",
        }
        assert expected == {key: getattr(bob, key) for key in expected}
        assert bob.request_id is not None and bob.event_id.startswith("log:")
        assert bob.occurred_at.utcoffset() is not None

    @pytest.mark.parametrize("name", LOG_FILES)
    def test_anonymous_challenges_are_counted_not_recorded(self, name: str) -> None:
        """The 20 anonymous 401s are counted and none of them is an event."""
        events, classifier = _classify(log_lines(name))
        assert (
            expected_log(name)["anonymous_challenges"] == classifier.counters.anonymous_challenges
        )
        failures = [e for e in events if e.action is Action.AUTH_FAILURE]
        assert 4 == len(failures) == classifier.counters.auth_failures

    @pytest.mark.parametrize("name", LOG_FILES)
    def test_counters_match_the_capture(self, name: str) -> None:
        """Line results and response statuses equal the recorded totals."""
        _, classifier = _classify(log_lines(name))
        facts = expected_log(name)
        counters = classifier.counters
        assert {"parsed": facts["lines_total"], "ignored": 0, "malformed": 0} == (
            counters.lines_by_result
        )
        assert facts["access_by_status"] == {
            str(status): count for status, count in counters.responses_by_status.items()
        }
        expected_classes = {"1xx": 0, "2xx": 65, "3xx": 0, "4xx": 43, "5xx": 0}
        assert expected_classes == counters.responses_by_class
        expected_routes = {
            "base": 24,
            "manifest": 20,
            "blob": 29,
            "upload": 31,
            "tags": 3,
            "catalog": 1,
            "other": 0,
        }
        assert expected_routes == counters.responses_by_route

    @pytest.mark.parametrize("name", LOG_FILES)
    def test_enumeration_requests(self, name: str) -> None:
        """The catalog walk, the 3 tag listings and the 3 manifest 404s are request events."""
        events, _ = _classify(log_lines(name))
        requests = [
            (e.route, e.http_status, e.repository, e.tag, e.actor, e.target_kind)
            for e in events
            if e.action is Action.REQUEST
        ]
        manifest = TargetKind.MANIFEST
        expected = [
            ("catalog", 200, None, None, None, None),
            ("tags", 200, "library/hello", None, None, TargetKind.REPOSITORY),
            ("tags", 200, "team/app", None, None, TargetKind.REPOSITORY),
            ("manifest", 404, "library/hello", "2.0", "bob", manifest),
            ("manifest", 404, "ghost/none", "latest", "bob", manifest),
            ("tags", 200, "library/hello", None, None, TargetKind.REPOSITORY),
            ("manifest", 404, "library/hello", "latest", "bob", manifest),
        ]
        assert expected == requests

    def test_text_and_json_logs_give_the_same_events(self) -> None:
        """Both formatters yield equal events apart from ids and times."""
        text, _ = _classify(log_lines("registry-text.log"))
        json_, _ = _classify(log_lines("registry-json.log"))
        assert [_stable(e) for e in text] == [_stable(e) for e in json_]

    @pytest.mark.parametrize("name", LOG_FILES)
    def test_ids_are_stable_and_distinct(self, name: str) -> None:
        """Ingesting a log twice gives the same ids; no two events of one run share an id."""
        first, _ = _classify(log_lines(name))
        second, _ = _classify(log_lines(name))
        assert [e.event_id for e in first] == [e.event_id for e in second]
        assert len(first) == len({e.event_id for e in first})

    @pytest.mark.parametrize("name", LOG_FILES)
    def test_fast_path_equals_parse_then_consume(self, name: str) -> None:
        """`feed` gives the same events and counters as `consume(parse_line(…))`."""
        fast, fast_classifier = _classify(log_lines(name))
        slow_classifier = LogClassifier()
        slow = [e for line in log_lines(name) for e in slow_classifier.consume(parse_line(line))]
        assert (slow, slow_classifier.counters) == (fast, fast_classifier.counters)

    @pytest.mark.parametrize("name", LOG_FILES)
    def test_feed_one_line_at_a_time_equals_feed_many(self, name: str) -> None:
        """Feeding lines one by one gives what feeding them all at once gives."""
        many, many_classifier = _classify(log_lines(name))
        one_classifier = LogClassifier()
        one = [e for line in log_lines(name) for e in one_classifier.feed(line)]
        assert (many, many_classifier.counters) == (one, one_classifier.counters)

    @pytest.mark.parametrize("name", LOG_FILES)
    def test_most_lines_skip_the_full_parse(self, name: str) -> None:
        """Lines that complete no event and record no request are recognised without the full
        parse; the 40 requests that send notifications are read in full."""
        _, classifier = _classify(log_lines(name))
        # auth, manifests, catalog, tags, startup; plus the 40 requests that emit events
        expected_full = (20 if "text" in name else 45) + 40
        assert expected_full >= len(log_lines(name)) - classifier.shortcuts
        assert 40 == len(classifier.take_records()[0])

    @pytest.mark.parametrize("name", LOG_FILES)
    def test_access_log_alone_gives_the_same_requests(self, name: str) -> None:
        """From the access lines alone the same enumeration requests are derived."""
        from_app, _ = _classify(log_lines(name))
        from_access, classifier = _classify(_access_only(name))

        def shape(event: Event) -> tuple[Any, ...]:
            return (event.action, event.route, event.http_status, event.repository, event.tag)

        expected = [shape(e) for e in from_app if e.action is Action.REQUEST]
        assert expected == [shape(e) for e in from_access]
        expected_counts = (24, 0)
        counters = classifier.counters
        assert expected_counts == (counters.unattributed_401, counters.auth_failures)

    def test_access_lines_of_a_mixed_stream_are_not_events(self) -> None:
        """With app lines present, access lines feed the counters only, so nothing is doubled."""
        events, _ = _classify(log_lines("registry-text.log"))
        assert all(e.request_id is not None for e in events)


def _app(msg: str, request_id: str | None = "r1", **fields: str) -> str:
    parts = [f'time="2026-11-27T04:52:06.5Z" level=warning msg="{msg}"']
    if request_id is not None:
        parts.append(f"http.request.id={request_id}")
    parts.append('http.request.remoteaddr="10.0.0.9:5000" http.request.uri=/v2/')
    parts.extend(f'{key.replace("_", ".")}="{value}"' for key, value in fields.items())
    return " ".join(parts)


_CHALLENGE = 'error authorizing context: basic authentication challenge for realm \\"r\\": '


class TestLogClassifierHandWritten:
    def test_registry_31_wrong_password(self) -> None:
        """3.1's `user failed to authenticate` names the user of the failure that follows."""
        events, classifier = _classify(
            [
                _app("user failed to authenticate", username="carol"),
                _app(_CHALLENGE + "authentication failure"),
            ]
        )
        expected = [("carol", "10.0.0.9")]
        assert expected == [(e.actor, e.remote_ip) for e in events]
        assert classifier.pending == 0

    def test_registry_31_unknown_user(self) -> None:
        """3.1 logs nothing for an unknown user: the failure has no actor."""
        events, _ = _classify([_app(_CHALLENGE + "authentication failure")])
        expected = [(Action.AUTH_FAILURE, None)]
        assert expected == [(e.action, e.actor) for e in events]

    @pytest.mark.parametrize(
        ("reason", "action"),
        [
            ("authorization token required", None),
            ("insufficient scope", Action.ACCESS_DENIED),
            ("invalid token", Action.AUTH_FAILURE),
            ("malformed token", Action.AUTH_FAILURE),
        ],
    )
    def test_token_auth(self, reason: str, action: Action | None) -> None:
        """No token is a challenge; a bad token a failure; a valid token without scope a denial."""
        events, classifier = _classify([_app(f"error authorizing context: {reason}")])
        expected = [action] if action else []
        assert expected == [e.action for e in events]
        assert (0 if action else 1) == classifier.counters.anonymous_challenges

    def test_forbidden_response(self) -> None:
        """A 403 response is an access_denied event with the user that got it."""
        line = _app(
            "response completed with error",
            auth_user_name="dave",
            http_response_status="403",
            err_code="denied",
        )
        events, _ = _classify([line])
        expected = [(Action.ACCESS_DENIED, "dave", 403, "denied")]
        assert expected == [(e.action, e.actor, e.http_status, e.detail) for e in events]

    def test_app_line_without_time_uses_the_previous_time(self) -> None:
        """A line without a time takes the time of the line before it."""
        lines = [
            _app("authorized request"),
            'level=warning msg="error authorizing context: invalid token" http.request.id=r2',
        ]
        events, _ = _classify(lines)
        expected = ["2026-11-27T04:52:06.500000+00:00"]
        assert expected == [e.occurred_at.isoformat() for e in events]

    def test_line_without_time_after_a_skipped_access_line(self) -> None:
        """The previous time comes from the access line even when it skipped the full parse."""
        lines = [
            _app("authorized request"),
            '127.0.0.1 - - [27/Nov/2026:04:53:00 +0000] "GET /v2/ HTTP/1.1" 401 87 "" "curl/7"',
            'level=warning msg="error authorizing context: invalid token" http.request.id=r2',
        ]
        fast, _ = _classify(lines)
        slow_classifier = LogClassifier()
        slow = [e for line in lines for e in slow_classifier.consume(parse_line(line))]
        expected = ["2026-11-27T04:53:00+00:00"]
        assert expected == [e.occurred_at.isoformat() for e in fast]
        assert slow == fast

    def test_pending_users_are_bounded(self) -> None:
        """Failed-login names waiting for their last line never exceed `max_pending`."""
        lines = [
            _app('error authenticating user \\"u\\": x', request_id=f"r{n}") for n in range(50)
        ]
        _, classifier = _classify(lines, max_pending=8)
        assert classifier.pending == 8

    def test_proxy_log(self) -> None:
        """A proxy's 401 with a user is a failure of that user; a 403 is a denial."""
        lines = [
            '10.1.1.1 - eve [27/Nov/2026:04:52:05 +0000] "GET /v2/ HTTP/1.1" 401 87 '
            '"-" "docker/27"',
            '10.1.1.1 - - [27/Nov/2026:04:52:05 +0000] "GET /v2/ HTTP/1.1" 401 87 "-" "docker/27"',
            '10.1.1.2 - dave [27/Nov/2026:04:52:06 +0000] "DELETE /v2/a/b/manifests/sha256:ab '
            'HTTP/1.1" 403 0 "-" "curl/8" 0.003',
        ]
        events, classifier = _classify(lines)
        expected = [
            (Action.AUTH_FAILURE, "eve", "10.1.1.1", Client.DOCKER, None),
            (Action.ACCESS_DENIED, "dave", "10.1.1.2", Client.OTHER, "sha256:ab"),
        ]
        assert expected == [(e.action, e.actor, e.remote_ip, e.client, e.digest) for e in events]
        assert classifier.counters.unattributed_401 == 1

    def test_identical_access_lines_get_distinct_stable_ids(self) -> None:
        """Two identical lines are two requests with two ids, the same ids on every run."""
        line = '10.1.1.1 - - [27/Nov/2026:04:52:05 +0000] "GET /v2/_catalog HTTP/1.1" 200 2 "" "x"'
        first, _ = _classify([line, line])
        second, _ = _classify([line, line])
        assert len({e.event_id for e in first}) == 2
        assert [e.event_id for e in first] == [e.event_id for e in second]

    def test_access_events_can_be_forced(self) -> None:
        """`access_events=False` keeps even a bare access log to counters."""
        events, classifier = _classify(_access_only("registry-text.log"), access_events=False)
        expected: tuple[list[Event], int] = ([], 108)
        assert expected == (events, classifier.counters.lines_by_kind["access"])

    def test_malformed_lines_are_counted_and_skipped(self) -> None:
        """Garbage between real lines is counted as malformed and changes nothing else."""
        lines = list(log_lines("registry-text.log"))
        noisy = [item for line in lines for item in (line, "garbage ]]", "")]
        events, classifier = _classify(noisy)
        clean, _ = _classify(lines)
        assert [e.event_id for e in clean] == [e.event_id for e in events]
        expected = {"parsed": 310, "ignored": 310, "malformed": 310}
        assert expected == classifier.counters.lines_by_result


def _real_lines() -> list[str]:
    return [line for name in LOG_FILES for line in log_lines(name)]


# Pieces that matter to parsing and to the fast path's shortcuts.
_TOKENS = [
    *'"\\= {}[]:-/xZT04\n\té',
    "403",
    "404",
    '"403"',
    ":403",
    "status=",
    "/_catalog",
    "/tags/list",
    "/manifests/",
    "\\u002f",
    "\\x2f",
    '{"a":1}',
    " msg=x",
    " time=x",
]


def _mutated() -> st.SearchStrategy[str]:
    def mutate(line: str, at: int, cut: int, insert: str) -> str:
        at %= len(line) + 1
        return line[:at] + insert + line[at + cut :]

    return st.builds(
        mutate,
        st.sampled_from(_real_lines()),
        st.integers(min_value=0, max_value=2000),
        st.integers(min_value=0, max_value=12),
        st.lists(st.sampled_from(_TOKENS), max_size=3).map("".join),
    )


class TestLogClassifierProperties:
    @given(st.lists(st.one_of(_mutated(), st.text(max_size=200)), max_size=30))
    def test_any_lines_are_classified_without_error(self, lines: list[str]) -> None:
        """Mutated and random lines never raise; each is counted exactly once."""
        events, classifier = _classify(lines)
        assert len(lines) == sum(classifier.counters.lines_by_result.values())
        assert all(isinstance(e, Event) for e in events)

    @settings(max_examples=400, deadline=None)
    @given(st.lists(st.one_of(_mutated(), st.sampled_from(_real_lines())), max_size=30))
    def test_fast_path_is_equivalent(self, lines: list[str]) -> None:
        """On any mix of real and mutated lines `feed` equals `consume(parse_line(…))`."""
        fast, fast_classifier = _classify(lines)
        slow_classifier = LogClassifier()
        slow = [e for line in lines for e in slow_classifier.consume(parse_line(line))]
        assert (slow, slow_classifier.counters) == (fast, fast_classifier.counters)

    @given(st.lists(_mutated(), max_size=20))
    def test_malformed_lines_are_counted(self, lines: list[str]) -> None:
        """The malformed counter equals the number of lines `parse_line` calls malformed."""
        _, classifier = _classify(lines)
        expected = sum(parse_line(line).kind is LineKind.MALFORMED for line in lines)
        assert expected == classifier.counters.lines_by_result["malformed"]
