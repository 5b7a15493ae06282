"""Plain-text tables: columns, and text a client chose that cannot disturb a terminal."""

from __future__ import annotations

import pytest

from monitor.tables import escape, table


class TestTable:
    def test_columns_line_up_and_none_is_a_dash(self) -> None:
        """Left-aligned columns two spaces apart; None prints as '-'."""
        expected = "repository  tag\nteam/app    -\na           v1"
        assert expected == table([("team/app", None), ("a", "v1")], ("repository", "tag"))

    def test_a_hostile_repository_is_one_escaped_row(self) -> None:
        """CR, LF and an ANSI colour code print as escapes, so the row stays one line."""
        out = table([("evil\r\n\x1b[31mred", "v1")], ("repository", "tag"))
        expected = "repository           tag\nevil\\r\\n\\x1b[31mred  v1"
        assert expected == out


class TestEscape:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("team/app", "team/app"),
            ("a\tb", "a\\tb"),
            ("back\\slash", "back\\\\slash"),
            ("nul\x00", "nul\\x00"),
            ("del\x7f c1\x9b", "del\\x7f c1\\x9b"),
            ("\u202egnp.exe", "\\u202egnp.exe"),
            ("line\u2028sep", "line\\u2028sep"),
            ("café ✓", "café ✓"),
        ],
    )
    def test_escapes(self, text: str, expected: str) -> None:
        """Control, bidi-override and line-separator characters and the backslash are escaped;
        other text is unchanged."""
        assert expected == escape(text)
