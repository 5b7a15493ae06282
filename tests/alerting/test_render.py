from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.alerting.render import (
    ELLIPSIS,
    FIELD_LIMIT,
    HEADER_LIMIT,
    SECTION_LIMIT,
    SlackMessage,
    escape_mrkdwn,
    render_alert,
    render_digest,
    render_repeat,
    render_resolved,
    slack_text,
    truncate,
)
from monitor.alerts import AlertState, Digest, Evidence, Severity
from tests.alerting.factories import T0, make_alert, subject_of
from tests.fixture_events import raw_events

HOSTILE = [
    ("<!channel>", "&lt;!channel&gt;"),
    ("<!here>", "&lt;!here&gt;"),
    ("<@U123>", "&lt;@U123&gt;"),
    ("<#C024BE7LR>", "&lt;#C024BE7LR&gt;"),
    ("<https://evil|click>", "&lt;https://evil|click&gt;"),
    ("a&b", "a&amp;b"),
    ("&lt;", "&amp;lt;"),
    ("team/app\n<!channel>", "team/app &lt;!channel&gt;"),
    ("ab`c```d", "ab'c'''d"),
    ("ev\u202eil\u200bname\x00", "evilname"),
    ("plain/repo:1.0", "plain/repo:1.0"),
]


def all_text(message: SlackMessage) -> list[str]:
    """Every string Slack will display: the fallback and all text objects in the blocks."""
    out = [message.text]

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "text" and isinstance(item, str):
                    out.append(item)
                else:
                    walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(message.blocks_list())
    return out


def assert_within_limits(message: SlackMessage) -> None:
    blocks = message.blocks_list()
    assert len(blocks) <= 50
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= HEADER_LIMIT
        if block["type"] == "section":
            if "text" in block:
                assert len(block["text"]["text"]) <= SECTION_LIMIT
                assert block["text"]["verbatim"] is True
            for field in block.get("fields", []):
                assert len(field["text"]) <= FIELD_LIMIT
            assert len(block.get("fields", [])) <= 10


class TestEscapeMrkdwn:
    @pytest.mark.parametrize(("raw", "expected"), [("<&>", "&lt;&amp;&gt;"), ("", ""), ("x", "x")])
    def test_escapes_the_three_control_characters(self, raw: str, expected: str) -> None:
        """`&`, `<` and `>` become entities, ampersand first so entities are not doubled wrong."""
        assert expected == escape_mrkdwn(raw)


class TestSlackText:
    @pytest.mark.parametrize(("raw", "expected"), HOSTILE)
    def test_hostile_values_are_neutralised(self, raw: str, expected: str) -> None:
        """Mentions, links, newlines, backticks and invisible characters cannot act in Slack."""
        assert expected == slack_text(raw)

    @given(st.text())
    def test_never_leaves_angle_brackets(self, raw: str) -> None:
        """No output of slack_text contains `<` or `>`, whatever the input."""
        out = slack_text(raw)
        expected = (False, False)
        assert expected == ("<" in out, ">" in out)


class TestTruncate:
    @pytest.mark.parametrize(
        ("escaped", "limit", "expected"),
        [
            ("abcdef", 10, "abcdef"),
            ("abcdef", 4, "abc" + ELLIPSIS),
            ("ab&lt;cd", 4, "ab" + ELLIPSIS),
            ("ab&lt;cd", 6, "ab" + ELLIPSIS),
            ("ab&lt;cd", 7, "ab&lt;" + ELLIPSIS),
            ("&amp;&amp;", 9, "&amp;" + ELLIPSIS),
        ],
    )
    def test_cuts_before_a_broken_entity(self, escaped: str, limit: int, expected: str) -> None:
        """A cut that would split `&lt;` or `&amp;` moves back before the ampersand."""
        assert expected == truncate(escaped, limit)

    @given(st.text(alphabet="ab<>&", max_size=60), st.integers(min_value=1, max_value=40))
    def test_result_fits_and_keeps_whole_entities(self, raw: str, limit: int) -> None:
        """The result fits the limit, is a prefix of the input and ends on a whole entity."""
        escaped = escape_mrkdwn(raw)
        out = truncate(escaped, limit)
        head = out.removesuffix(ELLIPSIS) if out != escaped else out
        amp = head.rfind("&")
        expected = (True, True, True)
        assert expected == (
            len(out) <= limit,
            escaped.startswith(head),
            amp == -1 or ";" in head[amp:],
        )


class TestRenderAlert:
    @pytest.mark.parametrize(("name", "event"), raw_events(), ids=lambda v: str(v)[:40])
    def test_captured_values_render_escaped_and_within_limits(
        self, name: str, event: dict[str, Any]
    ) -> None:
        """Every captured event's client values appear, as inline code, in the alert fields."""
        subject = subject_of(event)
        message = render_alert(make_alert(subject=subject))
        assert_within_limits(message)
        fields = [f["text"] for f in message.blocks_list()[2]["fields"]]
        expected = [f"`{slack_text(subject[key])}`" for key in sorted(subject)]
        assert expected == [text.split("\n", 1)[1] for text in fields[2:]]

    def test_channel_mention_in_a_repository_pings_nobody(self) -> None:
        """A repository named `<!channel>` shows as text in every place it appears."""
        alert = make_alert(
            subject={"repository": "<!channel>", "user": "<@U123>"},
            summary="pull of <!channel> by <https://evil|click>",
            evidence=Evidence(event_ids=("e1",), rows=({"repository": "<!here>"},)),
        )
        message = render_alert(alert)
        joined = "\n".join(all_text(message))
        expected = (False, False, True, True)
        assert expected == (
            "<" in joined,
            ">" in joined,
            "`&lt;!channel&gt;`" in joined,
            "&lt;https://evil|click&gt;" in joined,
        )

    def test_layout_is_header_summary_fields_context_evidence(self) -> None:
        """The first message has a header, the summary, fields, a context line and evidence."""
        message = render_alert(make_alert(count=3))
        types = [block["type"] for block in message.blocks_list()]
        context = message.blocks_list()[3]["elements"][0]["text"]
        expected = (["header", "section", "section", "context", "section"], True, True)
        assert expected == (
            types,
            "Count 3" in context,
            "First seen 2026-11-27 04:52:06 UTC" in context,
        )

    def test_fallback_text_names_severity_rule_and_count(self) -> None:
        """The notification text reads `[SEVERITY] rule: summary (count N)`."""
        message = render_alert(make_alert(severity=Severity.CRITICAL, summary="x", count=2))
        expected = "[CRITICAL] auth_brute_force: x (count 2)"
        assert expected == message.text

    def test_huge_values_are_truncated_to_block_limits(self) -> None:
        """A 10 kB user agent and a 10 kB summary still give a message within the limits."""
        alert = make_alert(
            rule="r" * 500,
            subject={"user_agent": "<" * 10_000, "k" * 300: "v"},
            summary="&" * 10_000,
            evidence=Evidence(
                event_ids=tuple(f"id{i}" for i in range(500)),
                rows=tuple({"ua": "<" * 5000} for _ in range(20)),
            ),
        )
        message = render_alert(alert)
        assert_within_limits(message)
        assert len(message.text) <= 3000

    def test_many_subject_keys_spill_into_another_fields_section(self) -> None:
        """More than ten fields are split over sections of at most ten."""
        alert = make_alert(subject={f"key{i:02d}": "v" for i in range(15)})
        sections = [b for b in render_alert(alert).blocks_list() if "fields" in b]
        expected = [10, 7]
        assert expected == [len(s["fields"]) for s in sections]

    @given(st.dictionaries(st.text(max_size=40), st.text(max_size=3000), max_size=12), st.text())
    def test_any_subject_renders_safely(self, subject: dict[str, str], summary: str) -> None:
        """Arbitrary subject and summary text never yields `<`/`>` or oversize blocks."""
        message = render_alert(make_alert(subject=subject, summary=summary))
        assert_within_limits(message)
        expected: list[str] = []
        assert expected == [t for t in all_text(message) if "<" in t or ">" in t]

    def test_payload_is_json_serialisable(self) -> None:
        """The blocks and text go straight into a JSON body."""
        message = render_alert(make_alert())
        assert message.blocks_list() == json.loads(json.dumps(message.blocks_list()))


class TestRenderResolved:
    def test_resolved_variant_marks_the_message(self) -> None:
        """The resolved variant has a check-mark header, state resolved and a RESOLVED text."""
        message = render_resolved(make_alert())
        blocks = message.blocks_list()
        expected = (True, True, "*State*\nresolved")
        assert expected == (
            blocks[0]["text"]["text"].startswith(":white_check_mark: Resolved: "),
            message.text.startswith("[RESOLVED] "),
            blocks[2]["fields"][1]["text"],
        )

    def test_render_alert_follows_the_alert_state(self) -> None:
        """A resolved alert renders like its resolved variant."""
        alert = make_alert(state=AlertState.RESOLVED)
        assert render_resolved(alert) == render_alert(alert)


class TestRenderRepeat:
    def test_repeat_is_one_section_with_count_and_subject(self) -> None:
        """A repeat note carries the rule, the new count, last seen and the escaped subject."""
        message = render_repeat(make_alert(count=7, subject={"repository": "<!channel>"}))
        text = message.blocks_list()[0]["text"]["text"]
        expected = (1, True, True, True)
        assert expected == (
            len(message.blocks),
            "count 7" in text,
            "`&lt;!channel&gt;`" in text,
            message.text.startswith("Repeat [WARNING] "),
        )


class TestRenderDigest:
    def test_digest_lists_ten_and_counts_the_rest(self) -> None:
        """Twelve suppressed alerts show ten lines and an `… and 2 more` line."""
        alerts = tuple(make_alert(subject={"user": f"<u{i}>"}) for i in range(12))
        digest = Digest("auth_brute_force", T0, T0, alerts)
        message = render_digest(digest)
        body = message.blocks_list()[1]["text"]["text"]
        expected = (
            "[DIGEST] 12 suppressed alerts for auth_brute_force",
            12,
            True,
            False,
        )
        assert expected == (
            message.text,
            len(body.splitlines()),
            body.endswith("… and 2 more"),
            "<" in body,
        )
