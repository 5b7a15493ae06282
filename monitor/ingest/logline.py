"""One registry log line → a `ParsedLine`; pure, no I/O.

Each line is recognised on its own, so one stream may mix the registry's logrus app lines (text or
JSON formatter, written to stderr) with its combined-format access lines (stdout), or come from a
reverse proxy's combined log where `$remote_user` is filled in:

- `app`: logrus text `time="…" level=… msg="…" key=value …` (values bare or Go `%q`-quoted), or
  one JSON object per line with dotted keys (`http.request.id`), or logstash-style JSON.
- `access`: the registry's own gorilla combined line (user always `-`, nothing after the agent).
- `proxy`: a combined line with a user name or extra trailing fields (nginx, Apache).
- `ignored`: blank lines.
- `malformed`: anything else; parsing never raises for bad input.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson

from monitor.errors import ParseError
from monitor.ingest.timestamps import parse_clf_time, parse_rfc3339


class LineKind(StrEnum):
    APP = "app"
    ACCESS = "access"
    PROXY = "proxy"
    IGNORED = "ignored"
    MALFORMED = "malformed"


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedLine:
    """What one log line says.

    App lines fill `time`, `level`, `msg` and `fields` (every other key, values as strings).
    Access and proxy lines fill `time`, the request parts, `status`, `size`, `referer`,
    `user_agent` and `user` (None for `-`). Malformed lines carry `reason`.
    `line` is the input without its line break.
    """

    kind: LineKind
    line: str
    time: datetime | None = None
    level: str | None = None
    msg: str | None = None
    fields: dict[str, str] = dataclasses.field(default_factory=dict)
    remote: str | None = None
    user: str | None = None
    method: str | None = None
    uri: str | None = None
    protocol: str | None = None
    status: int | None = None
    size: int | None = None
    referer: str | None = None
    user_agent: str | None = None
    reason: str | None = None


def parse_line(line: str) -> ParsedLine:
    """Parse one log line (with or without its trailing newline).

    Bad input gives `kind=malformed` with a `reason`; only a non-string raises `ParseError`.
    """
    if not isinstance(line, str):
        raise ParseError("not_text", f"a log line must be str, not {type(line).__name__}")
    line = line.rstrip("\r\n")
    try:
        return _parse(line)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        return ParsedLine(LineKind.MALFORMED, line, reason=f"unparsable: {type(exc).__name__}")


def _parse(line: str) -> ParsedLine:
    if not line or line.isspace():
        return ParsedLine(LineKind.IGNORED, line)
    first = line[0]
    if first == "t" and line.startswith('time="'):
        return _parse_text(line)
    if first == "{":
        return _parse_json(line)
    if first == "l" and line.startswith("level="):
        return _parse_text(line)
    combined = _COMBINED.match(line)
    if combined is not None:
        return _parse_combined(line, combined)
    return ParsedLine(LineKind.MALFORMED, line, reason="unknown_format")


# ---------------------------------------------------------------------------- logrus text

# A key starts the line or follows whitespace: a quote left open cannot make every position of
# its value a new candidate key (which was quadratic in the line's length).
_TEXT_FIELD = re.compile(r'(?<!\S)([^\s="]+)=("[^"\\]*(?:\\.[^"\\]*)*"|[^\s"]*)(?=\s|$)')
# `_TEXT_FIELD` for a line without backslashes (where no quoted value can hold an escape).
_TEXT_FIELD_PLAIN = re.compile(r'(?<!\S)([^\s="]+)=("[^"]*"|[^\s"]*)(?!\S)')
_GO_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)", re.S)
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
}


def _unescape_match(match: re.Match[str]) -> str:
    code = match.group(1)
    simple = _SIMPLE_ESCAPES.get(code)
    if simple is not None:
        return simple
    head = code[0]
    if head in "xuU" and len(code) > 1:
        value = int(code[1:], 16)
    elif len(code) == 3 and code.isdigit():
        value = int(code, 8)
    else:
        return code  # not an escape Go writes: keep the character
    if head == "x" or len(code) == 3:
        return chr(value) if value < 0x80 else "\ufffd"
    return chr(value) if value <= 0x10FFFF and not 0xD800 <= value <= 0xDFFF else "\ufffd"


def unquote_go(value: str) -> str:
    """The text of a Go `%q` string literal (with its quotes); a bare value is returned as is."""
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return value
    inner = value[1:-1]
    if "\\" not in inner:
        return inner
    return _GO_ESCAPE.sub(_unescape_match, inner)


def _parse_text(line: str) -> ParsedLine:
    fields: dict[str, str] = {}
    tokens = _TEXT_FIELD.findall(line) if "\\" in line else _TEXT_FIELD_PLAIN.findall(line)
    for key, value in tokens:
        if key not in fields:
            if value[:1] == '"':
                value = value[1:-1] if "\\" not in value else unquote_go(value)
            fields[key] = value
    return _app_line(line, fields)


def _app_line(line: str, fields: dict[str, str]) -> ParsedLine:
    msg = fields.pop("msg", None)
    if msg is None:
        msg = fields.pop("message", None)
        if msg is None:
            return ParsedLine(LineKind.MALFORMED, line, reason="no_msg")
    stamp = fields.pop("time", None)
    if stamp is None:
        stamp = fields.pop("@timestamp", None)
    when = None
    if stamp is not None:
        when = parse_rfc3339(stamp)
        if when is None:
            return ParsedLine(LineKind.MALFORMED, line, reason="bad_time")
    level = fields.pop("level", None)
    return ParsedLine(LineKind.APP, line, time=when, level=level, msg=msg, fields=fields)


# ---------------------------------------------------------------------------- logrus JSON


def _parse_json(line: str) -> ParsedLine:
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError:
        return ParsedLine(LineKind.MALFORMED, line, reason="bad_json")
    if type(document) is not dict:
        return ParsedLine(LineKind.MALFORMED, line, reason="json_not_object")
    fields: dict[str, str] = {}
    for key, value in document.items():
        if type(value) is str:
            fields[key] = value
        else:
            _flatten_into(fields, key, value)
    return _app_line(line, fields)


def _flatten_into(fields: dict[str, str], key: str, value: Any) -> None:
    if isinstance(value, dict):
        for sub, inner in value.items():
            _flatten_into(fields, f"{key}.{sub}", inner)
    elif isinstance(value, str):
        fields[key] = value
    elif value is None:
        fields[key] = ""
    elif value is True or value is False:
        fields[key] = "true" if value else "false"
    elif isinstance(value, list):
        fields[key] = orjson.dumps(value).decode()
    else:
        fields[key] = str(value)


# ---------------------------------------------------------------------------- combined format

_COMBINED = re.compile(
    r'(\S+) \S+ (\S+) \[([^\]]+)\] "([^"\\]*(?:\\.[^"\\]*)*)" (\d{3}) (\d+|-)'
    r'(?: "([^"\\]*(?:\\.[^"\\]*)*)" "([^"\\]*(?:\\.[^"\\]*)*)")?(.*)',
    re.S,
)


# The registry's own access line: what `_COMBINED` reads, only faster, when the line has no
# backslash and exactly six double quotes (so no token can hold one). Groups: time, URI, status.
COMBINED_PLAIN = re.compile(
    r'\S+ \S+ - \[([^\]]+)\] "\S+ (\S+) \S+" (\d{3}) (?:\d+|-) "[^"]*" "[^"]*"\Z'
)


def _parse_combined(line: str, match: re.Match[str]) -> ParsedLine:
    remote, user, stamp, request, status, size, referer, agent, rest = match.groups()
    when = parse_clf_time(stamp)
    if when is None:
        return ParsedLine(LineKind.MALFORMED, line, reason="bad_time")
    if rest and not rest[0].isspace():
        return ParsedLine(LineKind.MALFORMED, line, reason="trailing_garbage")
    method, uri, protocol = _request_parts(request)
    if user == "-":
        user = None
    if referer is not None and "\\" in referer:
        referer = _unescape_clf(referer)
    if agent is not None and "\\" in agent:
        agent = _unescape_clf(agent)
    return ParsedLine(
        _combined_kind(user, agent, rest),
        line,
        time=when,
        remote=remote,
        user=user,
        method=method,
        uri=uri,
        protocol=protocol,
        status=int(status),
        size=None if size == "-" else int(size),
        referer=referer or None,
        user_agent=agent or None,
    )


def _request_parts(request: str) -> tuple[str | None, str | None, str | None]:
    parts = request.split(" ")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return parts[0], parts[1], None
    if request in ("", "-"):
        return None, None, None
    return None, request, None


def _combined_kind(user: str | None, agent: str | None, rest: str) -> LineKind:
    if user is None and not rest and agent is not None:
        return LineKind.ACCESS
    return LineKind.PROXY


_CLF_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})|\\(.)", re.S)


def _unescape_clf(value: str) -> str:
    def one(match: re.Match[str]) -> str:
        if match.group(1) is not None:
            code = int(match.group(1), 16)
            return chr(code) if code < 0x80 else "\ufffd"
        return match.group(2)

    return _CLF_ESCAPE.sub(one, value)
