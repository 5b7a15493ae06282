from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.errors import ParseError
from monitor.ingest.logline import (
    LineKind,
    ParsedLine,
    parse_line,
    unquote_go,
)
from tests.ingest.scenario import LOG_FILES, expected_log, log_lines

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _parsed(name: str) -> list[ParsedLine]:
    return [parse_line(line) for line in log_lines(name)]


class TestParseLineOnCaptures:
    @pytest.mark.parametrize("name", LOG_FILES)
    def test_every_line_is_an_app_or_access_line(self, name: str) -> None:
        """Each captured line is recognised, as many app and access lines as the capture holds."""
        facts = expected_log(name)
        expected = {"app": facts["app_lines"], "access": facts["access_lines"]}
        assert expected == dict(Counter(p.kind.value for p in _parsed(name)))

    @pytest.mark.parametrize("name", LOG_FILES)
    def test_app_messages_match_the_capture(self, name: str) -> None:
        """The msg of every app line is read in full, so its prefixes count as recorded."""
        actual = Counter(
            _DIGEST.sub("sha256:<digest>", p.msg or "")[:70]
            for p in _parsed(name)
            if p.kind is LineKind.APP
        )
        assert expected_log(name)["app_by_msg_prefix"] == dict(actual)

    @pytest.mark.parametrize("name", LOG_FILES)
    def test_access_lines_match_the_capture(self, name: str) -> None:
        """Status, method and user agent of every access line are read as recorded."""
        access = [p for p in _parsed(name) if p.kind is LineKind.ACCESS]
        facts = expected_log(name)
        assert facts["access_by_status"] == dict(Counter(str(p.status) for p in access))
        assert facts["access_by_method"] == dict(Counter(p.method for p in access))
        assert facts["access_by_useragent"] == dict(Counter(p.user_agent for p in access))

    @pytest.mark.parametrize("name", LOG_FILES)
    def test_app_lines_carry_times_and_request_fields(self, name: str) -> None:
        """Every app line has a UTC time and every request line its id, URI and remote address."""
        for parsed in _parsed(name):
            if parsed.kind is not LineKind.APP:
                continue
            assert parsed.time is not None and parsed.time.tzinfo is UTC
            if "http.request.id" in parsed.fields:
                assert {"http.request.uri", "http.request.remoteaddr"} <= set(parsed.fields)

    def test_text_and_json_formatters_give_the_same_fields(self) -> None:
        """Line by line, both formatters yield the same msg, level and stable field values."""
        unstable = re.compile(
            r"^(http\.request\.id|http\.request\.remoteaddr|http\.response\.duration"
            r"|instance\.id|vars\.uuid)$"
        )
        upload = re.compile(r"/uploads/[^ ]+")

        def stable(fields: dict[str, str]) -> dict[str, str]:
            return {
                k: upload.sub("/uploads/<id>", v)
                for k, v in fields.items()
                if not unstable.match(k)
            }

        text, json_ = _parsed("registry-text.log"), _parsed("registry-json.log")
        for one, two in zip(text, json_, strict=True):
            assert one.kind == two.kind
            if one.kind is LineKind.ACCESS:
                assert (one.method, upload.sub("", one.uri or ""), one.status, one.user_agent) == (
                    two.method,
                    upload.sub("", two.uri or ""),
                    two.status,
                    two.user_agent,
                )
                continue
            if (one.msg or "").startswith(("Starting upload purge", "response completed")):
                continue  # purge delay is random; `written`/`uuid` state differ between runs
            assert (one.msg, one.level, stable(one.fields)) == (
                two.msg,
                two.level,
                stable(two.fields),
            )

    def test_response_status_is_the_same_in_both_formatters(self) -> None:
        """A JSON number and a text value give the same string for the response status."""
        text, json_ = _parsed("registry-text.log"), _parsed("registry-json.log")
        statuses = [
            (one.fields.get("http.response.status"), two.fields.get("http.response.status"))
            for one, two in zip(text, json_, strict=True)
        ]
        assert [a for a, _ in statuses] == [b for _, b in statuses]


class TestParseLineHandWritten:
    def test_go_quoted_values_are_unescaped(self) -> None:
        """Go %q escapes in msg and field values are decoded."""
        line = (
            'time="2026-01-02T03:04:05.123456789Z" level=error msg="error authenticating user '
            '\\"ev\\\\il\\tuser\\u00e9\\": authentication failure" http.request.id=r1 '
            'http.request.useragent="curl/8 (x\\x7f)"'
        )
        parsed = parse_line(line)
        expected = 'error authenticating user "ev\\il\tuseré": authentication failure'
        assert expected == parsed.msg
        assert parsed.fields["http.request.useragent"] == "curl/8 (x\x7f)"
        assert datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC) == parsed.time

    def test_registry_31_failed_login_line(self) -> None:
        """The 3.1 wrong-password line keeps `username` and `error` as fields."""
        line = (
            'time="2026-01-02T03:04:05Z" level=info msg="user failed to authenticate" '
            'error="authentication failure" http.request.id=abc username=carol'
        )
        parsed = parse_line(line)
        expected = ("user failed to authenticate", "carol", "authentication failure")
        assert expected == (parsed.msg, parsed.fields["username"], parsed.fields["error"])

    @pytest.mark.parametrize(
        "reason",
        ["authorization token required", "insufficient scope", "invalid token", "malformed token"],
    )
    def test_token_auth_warnings(self, reason: str) -> None:
        """Token auth's challenge texts from distribution's token package come through verbatim."""
        line = (
            'time="2026-01-02T03:04:05Z" level=warning '
            f'msg="error authorizing context: {reason}" http.request.id=abc'
        )
        assert f"error authorizing context: {reason}" == parse_line(line).msg

    def test_proxy_line_with_user_and_request_time(self) -> None:
        """An nginx line with `$remote_user` and a trailing request time is a proxy line."""
        line = (
            '127.0.0.1 - mallory [27/Nov/2026:05:52:05 +0100] "GET /v2/ HTTP/1.1" 401 87 '
            '"-" "docker/27.0 go/go1.22 \\x22quoted\\x22" 0.004'
        )
        parsed = parse_line(line)
        assert parsed.kind == LineKind.PROXY
        expected = ("mallory", "GET", "/v2/", 401, 87)
        assert expected == (parsed.user, parsed.method, parsed.uri, parsed.status, parsed.size)
        assert parsed.user_agent == 'docker/27.0 go/go1.22 "quoted"'
        assert datetime(2026, 11, 27, 4, 52, 5, tzinfo=UTC) == parsed.time

    def test_registry_access_line(self) -> None:
        """The registry's own access line (user `-`, nothing after the agent) is an access line."""
        line = '127.0.0.1 - - [27/Nov/2026:04:52:05 +0000] "GET /v2/ HTTP/1.1" 401 87 "" "curl/7"'
        parsed = parse_line(line)
        expected = (LineKind.ACCESS, None, None, "curl/7")
        assert expected == (parsed.kind, parsed.user, parsed.referer, parsed.user_agent)

    @pytest.mark.parametrize(
        ("line", "kind", "reason"),
        [
            ("", LineKind.IGNORED, None),
            ("   \t", LineKind.IGNORED, None),
            ("panic: runtime error", LineKind.MALFORMED, "unknown_format"),
            ('time="yesterday" level=info msg=x', LineKind.MALFORMED, "bad_time"),
            ('time="2026-01-02T03:04:05Z" level=info', LineKind.MALFORMED, "no_msg"),
            ('{"msg": "x", "time": 5', LineKind.MALFORMED, "bad_json"),
            ("[1, 2]", LineKind.MALFORMED, "unknown_format"),
            ('{"level": "info"}', LineKind.MALFORMED, "no_msg"),
            (
                '1.2.3.4 - - [99/Nov/2026:04:52:05 +0000] "GET / HTTP/1.1" 200 1 "" ""',
                LineKind.MALFORMED,
                "bad_time",
            ),
        ],
    )
    def test_lines_that_are_not_log_records(
        self, line: str, kind: LineKind, reason: str | None
    ) -> None:
        """Blank lines are ignored; anything else unrecognised is malformed with a reason."""
        parsed = parse_line(line)
        assert (kind, reason) == (parsed.kind, parsed.reason)

    def test_json_nested_and_non_string_values_are_flattened(self) -> None:
        """Nested objects become dotted keys; numbers, booleans and null become strings."""
        line = '{"msg":"m","time":"2026-01-02T03:04:05Z","a":{"b":1,"c":true},"d":null,"e":[1]}'
        expected = {"a.b": "1", "a.c": "true", "d": "", "e": "[1]"}
        assert expected == parse_line(line).fields

    def test_only_text_is_accepted(self) -> None:
        """A non-string input is the one case that raises, as ParseError."""
        with pytest.raises(ParseError):
            parse_line(b"bytes")  # type: ignore[arg-type]


class TestUnquoteGo:
    @pytest.mark.parametrize(
        ("quoted", "expected"),
        [
            ('"plain"', "plain"),
            ('"a\\"b\\\\c"', 'a"b\\c'),
            ('"\\x41\\xff\\101"', "A\ufffdA"),
            ('"\\U0001F600\\ud800"', "\U0001f600\ufffd"),
            ("bare", "bare"),
        ],
    )
    def test_escapes(self, quoted: str, expected: str) -> None:
        """Go %q escapes decode; bytes that are not UTF-8 become U+FFFD."""
        assert expected == unquote_go(quoted)


def _mutations() -> st.SearchStrategy[str]:
    lines = [line for name in LOG_FILES for line in log_lines(name)]

    def mutate(line: str, at: int, cut: int, insert: str) -> str:
        at %= len(line) + 1
        return line[:at] + insert + line[at + cut :]

    return st.builds(
        mutate,
        st.sampled_from(lines),
        st.integers(min_value=0, max_value=2000),
        st.integers(min_value=0, max_value=8),
        st.text(alphabet=st.sampled_from('"\\= {}[]:-/xZT0123456789\n\t\x00é'), max_size=6),
    )


class TestParseLineProperties:
    @given(st.text(max_size=400))
    def test_any_text_gives_a_parsed_line(self, line: str) -> None:
        """Arbitrary text never raises; it becomes some kind of ParsedLine."""
        assert isinstance(parse_line(line).kind, LineKind)

    @given(st.binary(max_size=400))
    def test_any_bytes_decoded_give_a_parsed_line(self, data: bytes) -> None:
        """Arbitrary bytes, decoded as the follower does, never raise."""
        assert isinstance(parse_line(data.decode("utf-8", "replace")).kind, LineKind)

    @given(_mutations())
    def test_mutated_real_lines_give_a_parsed_line(self, line: str) -> None:
        """Real lines with characters inserted or cut never raise; malformed ones say why."""
        parsed = parse_line(line)
        assert (parsed.kind is LineKind.MALFORMED) == (parsed.reason is not None)


class TestHostileLines:
    """Lines built to make a backtracking tokenizer take quadratic time parse in one pass; each
    would take hours at a megabyte before keys had to follow whitespace."""

    HEAD = 'time="2026-11-27T04:52:06Z" level=info '

    @pytest.mark.parametrize(
        "tail",
        [
            'msg="' + "a" * 1_000_000,
            'msg="\\' + "a" * 1_000_000,
            'msg="error authenticating user" x="' + "a" * 1_000_000,
            'msg="x"' + ' k="\\"' * 150_000,
        ],
    )
    def test_an_unclosed_quote_in_a_megabyte_line(self, tail: str) -> None:
        """The line is read (app line or malformed), never stuck."""
        parsed = parse_line(self.HEAD + tail)
        assert parsed.kind in (LineKind.APP, LineKind.MALFORMED)
