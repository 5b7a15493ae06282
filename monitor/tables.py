"""Plain-text tables for the command line. Pure.

Every cell is escaped: control characters (a CR, a newline, an ANSI escape), backslashes and the
Unicode characters that reorder or break lines print as `\\r`, `\\x1b`, `\\u202e`…, so text a
client chose (a repository, a user, a user agent) can neither recolour the terminal nor fake rows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\\\\\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def escape(text: str) -> str:
    """`text` with every character that could disturb a terminal written as an escape."""
    return _UNSAFE.sub(_escaped, text)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """Left-aligned columns separated by two spaces; None prints as '-'; cells are escaped."""
    cells = [[("-" if v is None else escape(str(v))) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)
