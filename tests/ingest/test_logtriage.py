from __future__ import annotations

import pytest

from monitor.ingest import logtriage as triage

_RESPONSE = (
    'time="2026-11-27T04:52:11Z" level=info msg="response completed" http.request.id=r '
    "http.request.uri={uri} http.response.status={status}"
)


class TestCategorise:
    @pytest.mark.parametrize(
        ("msg", "expected"),
        [
            ("authorized request", triage.PLAIN),
            ("redis not configured", triage.PLAIN),
            ("response completed", triage.RESPONSE),
            ("response completed with error", triage.RESPONSE),
            (
                'error authorizing context: basic authentication challenge for realm "r": '
                "invalid authorization credential",
                triage.ANONYMOUS,
            ),
            ("error authorizing context: authorization token required", triage.ANONYMOUS),
            ("error authorizing context: insufficient scope", triage.FULL),
            ('error authenticating user "x": authentication failure', triage.FULL),
            ("user failed to authenticate", triage.FULL),
        ],
    )
    def test_messages(self, msg: str, expected: int) -> None:
        """Only messages that can never complete an event are plain."""
        assert expected == triage.categorise(msg)


class TestStatusOf:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [("404", 404), ("200", 200), ("0404", None), ("40", None), (" 40", None), (None, None)],
    )
    def test_three_digits(self, text: str | None, expected: int | None) -> None:
        """A status is exactly three ASCII digits, the first not zero."""
        assert expected == triage.status_of(text)


class TestResponseMayMatter:
    @pytest.mark.parametrize(
        ("uri", "status", "expected"),
        [
            ("/v2/a/blobs/sha256:00", "404", False),
            ("/v2/", "200", False),
            ("/v2/a/blobs/uploads/u1?_state=s", "202", False),
            ("/v2/a/manifests/1.0", "200", True),
            ("/v2/a/manifests/sha256:00", "202", True),
            ("/v2/a/blobs/sha256:00", "200", True),
            ("/v2/a/blobs/uploads/u1?_state=s&digest=sha256:00", "201", True),
            ("/v2/a/manifests/1.0", "404", True),
            ("/v2/a/blobs/sha256:00", "403", True),
            ("/v2/_catalog", "200", True),
            ("/v2/a/tags/list", "200", True),
            ('"/v2/a/\\x2fmanifests/x"', "404", True),
        ],
    )
    def test_text_lines(self, uri: str, status: str, expected: bool) -> None:
        """A text response line may complete an event or record a request that sends
        notifications (a manifest or blob answered 2xx) when its URI or status could say so."""
        line = _RESPONSE.format(uri=uri, status=status)
        assert expected == triage.text_response_may_matter(line)

    @pytest.mark.parametrize(
        ("document", "expected"),
        [
            ({"http.request.uri": "/v2/a/blobs/x", "http.response.status": 404}, False),
            ({"http.request.uri": "/v2/a/manifests/x", "http.response.status": 404}, True),
            ({"http.request.uri": "/v2/a/manifests/x", "http.response.status": 200}, True),
            ({"http.request.uri": "/v2/a/blobs/x", "http.response.status": 200}, True),
            ({"http.request.uri": "/v2/", "http.response.status": 200}, False),
            ({"http.request.uri": "/v2/a/blobs/x", "http.response.status": "403"}, True),
            ({"http.request.uri": ["/v2/_catalog"], "http.response.status": 200}, True),
            ({"http.response.status": 200}, False),
        ],
    )
    def test_json_lines(self, document: dict[str, object], expected: bool) -> None:
        """A JSON response line may complete an event when its URI or status could say so."""
        assert expected == triage.json_response_may_matter(document, "{}")

    def test_nested_json_always_matters(self) -> None:
        """Nested objects could hide the fields after flattening, so they take the full parse."""
        assert triage.json_response_may_matter({}, '{"http": {"response": {"status": 403}}}')
