"""Parsed registry log lines → events and counters; pure (no I/O, no clock).

Times come from the lines. One `LogClassifier` per stream (a file, or stdin): it keeps the small
state needed to join the 2-3 app lines the registry writes for one request (by `http.request.id`)
and to give access lines stable ids.

What becomes an event:
- `auth_failure`: a request that carried credentials and was rejected (`error authenticating user
  "X"` in 2.8/3.0, `user failed to authenticate` with `username=` in 3.1, a bad bearer token), or a
  401 in a proxy log whose `$remote_user` is set. An anonymous challenge (`invalid authorization
  credential`, `authorization token required`) is only counted.
- `access_denied`: token auth's `insufficient scope`, and 403 responses.
- `request`: `/v2/_catalog`, tag lists and 404s on manifests, so detection can see enumeration.

When a stream has registry app lines, its access lines only feed the counters (each request is then
reported once, from the app lines); a stream of access or proxy lines alone yields the same events.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson

from monitor.events import Action, Event, Source, TargetKind, classify_client, host_of
from monitor.ingest.logline import (
    CLF_TIMES_SEEN,
    COMBINED_PLAIN,
    SECONDS_SEEN,
    LineKind,
    ParsedLine,
    is_rfc3339,
    parse_clf_time,
    parse_line,
    parse_rfc3339,
    unquote_go,
)

ROUTES = ("base", "manifest", "blob", "upload", "tags", "catalog", "other")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
_STATUS_CLASS = {int(name[0]): name for name in STATUS_CLASSES}
_EOL = ("\n", "\r")

ANONYMOUS_REASONS = frozenset({"invalid authorization credential", "authorization token required"})
DENIED_REASONS = frozenset({"insufficient scope"})
AUTH_CONTEXT_PREFIX = "error authorizing context: "
AUTH_USER_PREFIX = "error authenticating user "
AUTH_USER_31 = "user failed to authenticate"

_RESPONSE = "response completed"
_RESPONSE_ERROR = "response completed with error"
_USER_IN_MSG = re.compile(r'error authenticating user ("[^"\\]*(?:\\.[^"\\]*)*"|\S+)')
# The head of a text line in the usual form (a UTC time, no escape but `\"` in msg): what
# `_TEXT_HEAD` reads, only faster. Groups: time and msg without their quotes.
_TEXT_HEAD_PLAIN = re.compile(
    r'time="([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?Z)" '
    r'level=[^\s"\\]* msg="([^"\\]*(?:\\"[^"\\]*)*)"(?=\s|$)'
)
_TEXT_HEAD = re.compile(
    r'time=("[^"\\]*(?:\\.[^"\\]*)*"|[^\s"]*)(?=\s|$)\s+level=("[^"\\]*(?:\\.[^"\\]*)*"|[^\s"]*)(?=\s|$)'
    r'\s+msg=("[^"\\]*(?:\\.[^"\\]*)*"|[^\s"]*)(?=\s|$)'
)


def route_of(uri: str | None) -> str:
    """The route kind of a request URI: base, manifest, blob, upload, tags, catalog or other."""
    if not uri:
        return "other"
    query = uri.find("?")
    path = uri if query < 0 else uri[:query]
    if path in ("/v2/", "/v2"):
        return "base"
    if not path.startswith("/v2/"):
        return "other"
    if path == "/v2/_catalog":
        return "catalog"
    if path.endswith("/tags/list"):
        return "tags"
    if "/manifests/" in path:
        return "manifest"
    if "/blobs/uploads" in path:
        return "upload"
    if "/blobs/" in path:
        return "blob"
    return "other"


def repository_of(uri: str | None) -> str | None:
    """The repository named by a `/v2/<name>/…` URI, or None."""
    if not uri or not uri.startswith("/v2/"):
        return None
    path = uri.split("?", 1)[0][4:]
    for marker in ("/manifests/", "/blobs/", "/tags/list"):
        index = path.find(marker)
        if index > 0:
            return path[:index]
    return None


def _reference_of(uri: str | None) -> str | None:
    if not uri:
        return None
    path = uri.split("?", 1)[0]
    index = path.find("/manifests/")
    if index < 0:
        return None
    return path[index + len("/manifests/") :] or None


@dataclasses.dataclass
class LogCounters:
    """Plain counters for metrics; keys are bounded (results, kinds, statuses, route kinds)."""

    lines_by_result: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"parsed": 0, "ignored": 0, "malformed": 0}
    )
    lines_by_kind: dict[str, int] = dataclasses.field(
        default_factory=lambda: {kind.value: 0 for kind in LineKind}
    )
    auth_failures: int = 0
    anonymous_challenges: int = 0
    access_denied: int = 0
    unattributed_401: int = 0
    events_without_time: int = 0
    responses_by_status: dict[int, int] = dataclasses.field(default_factory=dict)
    responses_by_class: dict[str, int] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(STATUS_CLASSES, 0)
    )
    responses_by_route: dict[str, int] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(ROUTES, 0)
    )


class LogClassifier:
    """Turns the lines of one stream into events; see the module docstring.

    `access_events`: True makes access/proxy lines produce events, False only counts them, None
    (default) decides per stream: events from them until the first app line of a request is seen.
    `max_pending` bounds the map of requests waiting for their last app line.
    """

    def __init__(self, *, access_events: bool | None = None, max_pending: int = 10_000) -> None:
        self.counters = LogCounters()
        self._access_events = access_events
        self._max_pending = max_pending
        self._pending: OrderedDict[str, str | None] = OrderedDict()
        self._app_seen = False
        self._last_when: datetime | str | None = None
        self._same_second: dict[str, int] = {}
        self._same_second_stamp: datetime | None = None
        # Lines recognised by `feed` without a full parse (for profiling; not a metric).
        self.shortcuts = 0

    @property
    def pending(self) -> int:
        """Requests whose user name is known but whose final auth line has not arrived."""
        return len(self._pending)

    def feed_many(self, lines: Iterable[str]) -> list[Event]:
        """`feed` over many lines, with the two commonest shortcuts inlined."""
        events: list[Event] = []
        counters = self.counters
        by_status = counters.responses_by_status
        by_class = counters.responses_by_class
        by_route = counters.responses_by_route
        text_head, access_line = _TEXT_HEAD_PLAIN.match, COMBINED_PLAIN.match
        seconds, clf_times, categories = SECONDS_SEEN, CLF_TIMES_SEEN, _MSG_CATEGORY
        app_lines = access_lines = anonymous = 0
        try:
            for line in lines:
                first = line[:1]
                if first == "t" and line[-1:] not in _EOL:
                    head = text_head(line)
                    if head is not None:
                        stamp, msg = head.groups()
                        if "\\" in msg:
                            msg = msg.replace('\\"', '"')
                        category = categories.get(msg)
                        if category is None:
                            category = _categorise(msg)
                        if (
                            category == _PLAIN
                            or (category == _RESPONSE_LINE and not _text_response_may_matter(line))
                            or (category == _ANONYMOUS and not self._pending)
                        ) and (stamp[:19] in seconds or is_rfc3339(stamp)):
                            app_lines += 1
                            if category == _ANONYMOUS:
                                anonymous += 1
                            self._last_when = stamp
                            self._app_seen = True
                            continue
                elif (
                    first.isdigit()
                    and line[-1:] not in _EOL
                    and (
                        self._access_events is False or (self._app_seen and not self._access_events)
                    )
                ):
                    plain = access_line(line) if "\\" not in line and line.count('"') == 6 else None
                    if plain is not None:
                        stamp, uri, status_text = plain.groups()
                        if stamp in clf_times or parse_clf_time(stamp) is not None:
                            access_lines += 1
                            status = int(status_text)
                            by_status[status] = by_status.get(status, 0) + 1
                            status_class = _STATUS_CLASS.get(status // 100)
                            if status_class is not None:
                                by_class[status_class] += 1
                            by_route[route_of(uri)] += 1
                            continue
                found = self.feed(line)
                if found:
                    events.extend(found)
        finally:
            counters.lines_by_result["parsed"] += app_lines + access_lines
            counters.lines_by_kind["app"] += app_lines
            counters.lines_by_kind["access"] += access_lines
            counters.anonymous_challenges += anonymous
            self.shortcuts += app_lines + access_lines
        return events

    def feed(self, line: str) -> list[Event]:
        """Classify one raw line; the same result as `consume(parse_line(line))`, only faster.

        Lines that can neither complete an event nor change a counter beyond "one more line" are
        recognised with one regex and a time check, without building a `ParsedLine`.
        """
        if line[-1:] in ("\n", "\r"):
            line = line.rstrip("\r\n")
        first = line[:1]
        if first == "t":
            plain = _TEXT_HEAD_PLAIN.match(line)
            if plain is not None:
                stamp, msg = plain.groups()
                if "\\" in msg:
                    msg = msg.replace('\\"', '"')
                if self._shortcut(msg, stamp, line, None, stamp[:19] in SECONDS_SEEN):
                    return []
            elif line.startswith('time="'):
                head = _TEXT_HEAD.match(line)
                if head is not None:
                    stamp, msg = unquote_go(head.group(1)), unquote_go(head.group(3))
                    if self._shortcut(msg, stamp, line, None, False):
                        return []
        elif first == "{":
            try:
                document = orjson.loads(line)
            except orjson.JSONDecodeError:
                document = None
            if type(document) is dict:
                msg, stamp = document.get("msg"), document.get("time")
                if (
                    type(msg) is str
                    and type(stamp) is str
                    and self._shortcut(msg, stamp, line, document, False)
                ):
                    return []
        elif first.isdigit() and not self._emits_access():
            plain = None
            if "\\" not in line and line.count('"') == 6:
                plain = COMBINED_PLAIN.match(line)
            if plain is not None:
                stamp, uri, status = plain.groups()
                if stamp in CLF_TIMES_SEEN or parse_clf_time(stamp) is not None:
                    counters = self.counters
                    counters.lines_by_result["parsed"] += 1
                    counters.lines_by_kind["access"] += 1
                    self._count_response(int(status), route_of(uri))
                    self.shortcuts += 1
                    return []
        return self.consume(parse_line(line))

    def _shortcut(
        self,
        msg: str,
        stamp: str,
        line: str,
        document: dict[str, Any] | None,
        time_known: bool,
    ) -> bool:
        """Count an app line that completes no event without parsing its fields, if it is one.

        `document` is the decoded JSON object of a JSON line, None for a text line;
        `time_known` says that `stamp` is already known to be a valid time.
        """
        category = _MSG_CATEGORY.get(msg)
        if category is None:
            category = _categorise(msg)
        if category == _FULL:
            return False
        if category == _RESPONSE_LINE:
            if document is None:
                if _text_response_may_matter(line):
                    return False
            elif _json_response_may_matter(document, line):
                return False
        elif category == _ANONYMOUS and self._pending:
            return False
        if not time_known and not is_rfc3339(stamp):
            return False
        self._last_when = stamp
        self._app_seen = True
        self.shortcuts += 1
        counters = self.counters
        counters.lines_by_result["parsed"] += 1
        counters.lines_by_kind["app"] += 1
        if category == _ANONYMOUS:
            counters.anonymous_challenges += 1
        return True

    def consume(self, parsed: ParsedLine) -> list[Event]:
        """Classify one parsed line and return the events it completes (usually none)."""
        counters = self.counters
        kind = parsed.kind
        counters.lines_by_kind[kind.value] += 1
        if kind is LineKind.MALFORMED:
            counters.lines_by_result["malformed"] += 1
            return []
        if kind is LineKind.IGNORED:
            counters.lines_by_result["ignored"] += 1
            return []
        counters.lines_by_result["parsed"] += 1
        if parsed.time is not None:
            self._last_when = parsed.time
        if kind is LineKind.APP:
            return self._app(parsed)
        return self._access(parsed)

    # ------------------------------------------------------------------------ app lines

    def _app(self, parsed: ParsedLine) -> list[Event]:
        msg = parsed.msg or ""
        fields = parsed.fields
        request_id = fields.get("http.request.id")
        self._app_seen = True
        if msg.startswith(AUTH_CONTEXT_PREFIX):
            reason = msg.rpartition(": ")[2]
            actor = self._pending.pop(request_id, None) if request_id is not None else None
            if reason in ANONYMOUS_REASONS:
                self.counters.anonymous_challenges += 1
                return []
            if reason in DENIED_REASONS:
                self.counters.access_denied += 1
                return self._app_event(parsed, Action.ACCESS_DENIED, 401, actor, reason)
            self.counters.auth_failures += 1
            return self._app_event(parsed, Action.AUTH_FAILURE, 401, actor, reason)
        if request_id is None:
            return []
        if msg.startswith(AUTH_USER_PREFIX):
            match = _USER_IN_MSG.match(msg)
            if match is not None:
                self._remember(request_id, unquote_go(match.group(1)))
            return []
        if msg == AUTH_USER_31:
            self._remember(request_id, fields.get("username") or None)
            return []
        if msg in (_RESPONSE, _RESPONSE_ERROR):
            status = _status(fields.get("http.response.status"))
            if status is None:
                return []
            uri = fields.get("http.request.uri")
            actor = fields.get("auth.user.name") or None
            if status == 403:
                self.counters.access_denied += 1
                return self._app_event(
                    parsed, Action.ACCESS_DENIED, status, actor, fields.get("err.code")
                )
            if _is_enumeration(route_of(uri), status):
                return self._app_event(
                    parsed, Action.REQUEST, status, actor, fields.get("err.code")
                )
        return []

    def _last_time(self) -> datetime | None:
        last = self._last_when
        if isinstance(last, str):
            last = self._last_when = parse_rfc3339(last)
        return last

    def _line_event_id(self, line: str, when: datetime) -> str:
        """A stable id for a line without a request id: its text and how often it came before.

        Identical lines share their time, so the count restarts whenever the time changes.
        """
        if when != self._same_second_stamp:
            self._same_second.clear()
            self._same_second_stamp = when
        seen = self._same_second.get(line, 0)
        self._same_second[line] = seen + 1
        return _event_id(f"line\x00{line}\x00{seen}")

    def _remember(self, request_id: str, user: str | None) -> None:
        self._pending[request_id] = user
        self._pending.move_to_end(request_id)
        while len(self._pending) > self._max_pending:
            self._pending.popitem(last=False)

    def _app_event(
        self,
        parsed: ParsedLine,
        action: Action,
        status: int,
        actor: str | None,
        detail: str | None,
    ) -> list[Event]:
        when = parsed.time or self._last_time()
        if when is None:
            self.counters.events_without_time += 1
            return []
        fields = parsed.fields
        request_id = fields.get("http.request.id")
        uri = fields.get("http.request.uri")
        route = route_of(uri)
        agent = fields.get("http.request.useragent") or None
        repository = fields.get("vars.name") or repository_of(uri)
        reference = fields.get("vars.reference") or (
            _reference_of(uri) if route == "manifest" else None
        )
        tag, digest = _split_reference(reference)
        digest = digest or fields.get("vars.digest") or None
        if request_id is not None:
            event_id = _event_id(f"req\x00{request_id}\x00{action.value}")
        else:
            event_id = self._line_event_id(parsed.line, when)
        return [
            Event(
                event_id=event_id,
                source=Source.LOG,
                action=action,
                occurred_at=when,
                target_kind=_target_kind(route),
                repository=repository,
                tag=tag,
                digest=digest,
                actor=actor,
                remote_ip=host_of(fields.get("http.request.remoteaddr")),
                user_agent=agent,
                http_method=fields.get("http.request.method") or None,
                http_status=status,
                request_id=request_id,
                request_uri=uri,
                client=classify_client(agent),
                route=route,
                detail=detail,
            )
        ]

    # ------------------------------------------------------------------------ access lines

    def _emits_access(self) -> bool:
        if self._access_events is None:
            return not self._app_seen
        return self._access_events

    def _count_response(self, status: int, route: str) -> None:
        counters = self.counters
        by_status = counters.responses_by_status
        by_status[status] = by_status.get(status, 0) + 1
        status_class = _STATUS_CLASS.get(status // 100)
        if status_class is not None:
            counters.responses_by_class[status_class] += 1
        counters.responses_by_route[route] += 1

    def _access(self, parsed: ParsedLine) -> list[Event]:
        counters = self.counters
        status = parsed.status or 0
        route = route_of(parsed.uri)
        self._count_response(status, route)
        if not self._emits_access():
            return []
        if status == 401:
            if parsed.user is None:
                counters.unattributed_401 += 1
                return []
            counters.auth_failures += 1
            return self._access_event(parsed, Action.AUTH_FAILURE, route)
        if status == 403:
            counters.access_denied += 1
            return self._access_event(parsed, Action.ACCESS_DENIED, route)
        if _is_enumeration(route, status):
            return self._access_event(parsed, Action.REQUEST, route)
        return []

    def _access_event(self, parsed: ParsedLine, action: Action, route: str) -> list[Event]:
        when = parsed.time
        if when is None:  # pragma: no cover - access lines always carry a time
            return []
        event_id = self._line_event_id(parsed.line, when)
        tag, digest = _split_reference(_reference_of(parsed.uri) if route == "manifest" else None)
        return [
            Event(
                event_id=event_id,
                source=Source.LOG,
                action=action,
                occurred_at=when,
                target_kind=_target_kind(route),
                repository=repository_of(parsed.uri),
                tag=tag,
                digest=digest,
                actor=parsed.user,
                remote_ip=host_of(parsed.remote),
                user_agent=parsed.user_agent,
                http_method=parsed.method,
                http_status=parsed.status,
                request_uri=parsed.uri,
                client=classify_client(parsed.user_agent),
                route=route,
            )
        ]


_PLAIN, _RESPONSE_LINE, _ANONYMOUS, _FULL = range(4)
_MSG_CATEGORY: dict[str, int] = {}
_MSG_CATEGORY_MAX = 4096


def _categorise(msg: str) -> int:
    """What the shortcut may do with an app line of this message (memoised, bounded)."""
    if not msg.startswith(("error auth", "user failed", _RESPONSE)):
        category = _PLAIN
    elif msg in (_RESPONSE, _RESPONSE_ERROR):
        category = _RESPONSE_LINE
    elif msg.startswith(AUTH_CONTEXT_PREFIX) and msg.rpartition(": ")[2] in ANONYMOUS_REASONS:
        category = _ANONYMOUS
    else:
        category = _FULL
    if len(_MSG_CATEGORY) >= _MSG_CATEGORY_MAX:
        _MSG_CATEGORY.clear()
    _MSG_CATEGORY[msg] = category
    return category


def _status(text: str | None) -> int | None:
    """An HTTP status written as three digits, else None."""
    if text is None or len(text) != 3 or not text.isdigit() or not text.isascii():
        return None
    return None if text[0] == "0" else int(text)


def _text_response_may_matter(line: str) -> bool:
    """False only when a text response line certainly completes no event (cheap checks).

    Without backslashes, a value the full parse reads is written verbatim in the line.
    """
    if "\\" in line or "/_catalog" in line or "/tags/list" in line:
        return True
    if "status=403" in line or 'status="403' in line:
        return True
    return "/manifests/" in line and ("status=404" in line or 'status="404' in line)


def _json_response_may_matter(document: dict[str, Any], line: str) -> bool:
    """False only when a JSON response line certainly completes no event."""
    if line.find("{", 1) != -1:
        return True  # nested objects are flattened into dotted keys by the full parse
    uri = document.get("http.request.uri")
    status = document.get("http.response.status")
    if status in (403, "403"):
        return True
    if uri is None:
        return False
    if type(uri) is not str:
        return True
    route = route_of(uri)
    return route in ("catalog", "tags") or (route == "manifest" and status in (404, "404"))


def _is_enumeration(route: str, status: int) -> bool:
    return route in ("catalog", "tags") or (route == "manifest" and status == 404)


def _target_kind(route: str) -> TargetKind | None:
    if route == "manifest":
        return TargetKind.MANIFEST
    if route in ("blob", "upload"):
        return TargetKind.BLOB
    if route == "tags":
        return TargetKind.REPOSITORY
    return None


def _split_reference(reference: str | None) -> tuple[str | None, str | None]:
    if not reference:
        return None, None
    if ":" in reference:
        return None, reference
    return reference, None


def _event_id(key: str) -> str:
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16)
    return "log:" + digest.hexdigest()
