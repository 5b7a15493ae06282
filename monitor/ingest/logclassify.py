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

import re
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson

from monitor.events import Action, Event
from monitor.ingest import logtriage as triage
from monitor.ingest import memo
from monitor.ingest.logcounters import LogCounters
from monitor.ingest.logevents import access_event, app_event, line_event_id, request_event_id
from monitor.ingest.logline import COMBINED_PLAIN, LineKind, ParsedLine, parse_line, unquote_go
from monitor.ingest.requestlog import RegistryStart, RequestRecord, record_of
from monitor.ingest.routes import is_enumeration, route_of
from monitor.ingest.timestamps import is_rfc3339, parse_clf_time, parse_rfc3339

_USER_IN_MSG = re.compile(r'error authenticating user ("[^"\\]*(?:\\.[^"\\]*)*"|\S+)')


class LogClassifier:
    """Turns the lines of one stream into events; see the module docstring.

    `access_events`: True makes access/proxy lines produce events, False only counts them, None
    (default) decides per stream: events from them until the stream's first app line.
    `max_pending` bounds the map of requests waiting for their last app line.
    Feed lines in stream order; `feed_many` is the fast way to feed a batch.
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
        # Requests that emit notification events, and registry starts; `take_records` drains.
        self.records: list[RequestRecord] = []
        self.starts: list[RegistryStart] = []

    def take_records(self) -> tuple[list[RequestRecord], list[RegistryStart]]:
        """The request records and registry starts seen since the last call."""
        records, starts = self.records, self.starts
        self.records, self.starts = [], []
        return records, starts

    def last_time(self) -> datetime | None:
        """The time of the newest line seen, if any had one."""
        return self._last_time()

    @property
    def pending(self) -> int:
        """Requests whose user name is known but whose final auth line has not arrived."""
        return len(self._pending)

    def feed_many(self, lines: Iterable[str]) -> list[Event]:
        """`feed` over many lines, with the two commonest shortcuts inlined."""
        events: list[Event] = []
        counters = self.counters
        # (status as written, route kind) → access lines counted inline, added up at the end
        responses: dict[tuple[str, str], int] = {}
        text_head, access_line = triage.TEXT_HEAD_PLAIN.match, COMBINED_PLAIN.match
        minutes, clf_times = memo.RFC3339_MINUTES, memo.CLF_TIMES
        categories, routes = memo.MSG_CATEGORIES, memo.ROUTES
        plain_msg, response, anonymous_msg = triage.PLAIN, triage.RESPONSE, triage.ANONYMOUS
        categorise, may_matter = triage.categorise, triage.text_response_may_matter
        pending, other, consume = self._pending, self._feed_other, self.consume
        app_lines = anonymous = 0
        app_seen = self._app_seen
        counts_only = self._counts_only()
        last_when: datetime | str | None = self._last_when
        try:
            for line in lines:
                first = line[:1]
                if first == "t":
                    head = text_head(line)
                    if head is not None and line[-1] not in "\r\n":
                        stamp, msg = head.groups()
                        if "\\" in msg:
                            msg = msg.replace('\\"', '"')
                        category = categories.get(msg)
                        if category is None:
                            category = categorise(msg)
                        if (
                            category == plain_msg
                            or (category == response and not may_matter(line))
                            or (category == anonymous_msg and not pending)
                        ) and (
                            (stamp[:16] in minutes and stamp[17:19] < "60") or is_rfc3339(stamp)
                        ):
                            app_lines += 1
                            if category == anonymous_msg:
                                anonymous += 1
                            last_when = stamp
                            if not app_seen:
                                self._app_seen = app_seen = True
                                counts_only = self._counts_only()
                            continue
                        self._last_when = last_when
                        found = consume(parse_line(line))  # what `_feed_other` would do
                        last_when, app_seen = self._last_when, self._app_seen
                        counts_only = self._counts_only()
                        if found:
                            events.extend(found)
                        continue
                elif counts_only and "0" <= first <= "9":
                    plain = access_line(line) if "\\" not in line and line.count('"') == 6 else None
                    if plain is not None:
                        stamp, uri, status_text = plain.groups()
                        when = clf_times.get(stamp) or parse_clf_time(stamp)
                        if when is not None:
                            last_when = when
                            key = (status_text, routes.get(uri) or route_of(uri))
                            responses[key] = responses.get(key, 0) + 1
                            continue
                self._last_when = last_when
                found = other(line)
                last_when, app_seen = self._last_when, self._app_seen
                counts_only = self._counts_only()
                if found:
                    events.extend(found)
        finally:
            self._last_when = last_when
            access_lines = sum(responses.values())
            for (status_text, route), count in responses.items():
                counters.count_response(int(status_text), route, count)
            counters.lines_by_result["parsed"] += app_lines + access_lines
            counters.lines_by_kind["app"] += app_lines
            counters.lines_by_kind["access"] += access_lines
            counters.anonymous_challenges += anonymous
            self.shortcuts += app_lines + access_lines
        return events

    def _counts_only(self) -> bool:
        """Whether access lines now only feed the counters."""
        return self._access_events is False or (self._app_seen and not self._access_events)

    def feed(self, line: str) -> list[Event]:
        """Classify one raw line; the same result as `consume(parse_line(line))`, only faster.

        Lines that can neither complete an event nor change a counter beyond "one more line" are
        recognised with one regex and a time check, without building a `ParsedLine`.
        """
        return self.feed_many((line,))

    def _feed_other(self, line: str) -> list[Event]:
        """`feed` for the lines `feed_many` does not recognise inline."""
        line = line.rstrip("\r\n")
        first = line[:1]
        if first == "t" and line.startswith('time="'):
            head = triage.TEXT_HEAD.match(line)
            if head is not None:
                stamp, msg = unquote_go(head.group(1)), unquote_go(head.group(3))
                if self._shortcut(msg, stamp, line, None):
                    return []
        elif first == "{":
            try:
                document = orjson.loads(line)
            except orjson.JSONDecodeError:
                document = None
            if type(document) is dict:
                json_msg, json_time = document.get("msg"), document.get("time")
                if (
                    type(json_msg) is str
                    and type(json_time) is str
                    and self._shortcut(json_msg, json_time, line, document)
                ):
                    return []
        return self.consume(parse_line(line))

    def _shortcut(self, msg: str, stamp: str, line: str, document: dict[str, Any] | None) -> bool:
        """Count an app line that completes no event without parsing its fields, if it is one.

        `document` is the decoded JSON object of a JSON line, None for a text line.
        """
        category = memo.MSG_CATEGORIES.get(msg)
        if category is None:
            category = triage.categorise(msg)
        if category == triage.FULL:
            return False
        if category == triage.RESPONSE:
            if document is None:
                if triage.text_response_may_matter(line):
                    return False
            elif triage.json_response_may_matter(document, line):
                return False
        elif category == triage.ANONYMOUS and self._pending:
            return False
        if not is_rfc3339(stamp):
            return False
        self._last_when = stamp
        self._app_seen = True
        self.shortcuts += 1
        counters = self.counters
        counters.lines_by_result["parsed"] += 1
        counters.lines_by_kind["app"] += 1
        if category == triage.ANONYMOUS:
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
        if msg.startswith(triage.STARTUP_MSG):
            instance = fields.get("instance.id")
            if instance and parsed.time is not None:
                self.starts.append(
                    RegistryStart(instance, parsed.time, fields.get("version") or None)
                )
            return []
        if msg.startswith(triage.AUTH_CONTEXT_PREFIX):
            reason = msg.rpartition(": ")[2]
            actor = self._pending.pop(request_id, None) if request_id is not None else None
            if reason in triage.ANONYMOUS_REASONS:
                self.counters.anonymous_challenges += 1
                return []
            if reason in triage.DENIED_REASONS:
                self.counters.access_denied += 1
                return self._app_event(parsed, Action.ACCESS_DENIED, 401, actor, reason)
            self.counters.auth_failures += 1
            return self._app_event(parsed, Action.AUTH_FAILURE, 401, actor, reason)
        if request_id is None:
            return []
        if msg.startswith(triage.AUTH_USER_PREFIX):
            match = _USER_IN_MSG.match(msg)
            if match is not None:
                self._remember(request_id, unquote_go(match.group(1)))
            return []
        if msg == triage.AUTH_USER_31:
            self._remember(request_id, fields.get("username") or None)
            return []
        if msg in (triage.RESPONSE_MSG, triage.RESPONSE_ERROR_MSG):
            status = triage.status_of(fields.get("http.response.status"))
            if status is None:
                return []
            uri = fields.get("http.request.uri")
            actor = fields.get("auth.user.name") or None
            if msg == triage.RESPONSE_MSG and 200 <= status < 300:
                when = parsed.time or self._last_time()
                record = record_of(fields, when) if when is not None else None
                if record is not None:
                    self.records.append(record)
            if status == 403:
                self.counters.access_denied += 1
                return self._app_event(
                    parsed, Action.ACCESS_DENIED, status, actor, fields.get("err.code")
                )
            if is_enumeration(route_of(uri), status):
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
        return line_event_id(line, seen)

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
        request_id = parsed.fields.get("http.request.id")
        if request_id is not None:
            event_id = request_event_id(request_id, action)
        else:
            event_id = self._line_event_id(parsed.line, when)
        return [
            app_event(
                parsed,
                event_id=event_id,
                when=when,
                action=action,
                status=status,
                actor=actor,
                detail=detail,
            )
        ]

    # ------------------------------------------------------------------------ access lines

    def _emits_access(self) -> bool:
        if self._access_events is None:
            return not self._app_seen
        return self._access_events

    def _access(self, parsed: ParsedLine) -> list[Event]:
        counters = self.counters
        status = parsed.status or 0
        route = route_of(parsed.uri)
        counters.count_response(status, route)
        if not self._emits_access():
            return []
        if status == 401:
            if parsed.user is None:
                counters.unattributed_401 += 1
                return []
            counters.auth_failures += 1
            return self._access_event(parsed, Action.AUTH_FAILURE)
        if status == 403:
            counters.access_denied += 1
            return self._access_event(parsed, Action.ACCESS_DENIED)
        if is_enumeration(route, status):
            return self._access_event(parsed, Action.REQUEST)
        return []

    def _access_event(self, parsed: ParsedLine, action: Action) -> list[Event]:
        when = parsed.time
        if when is None:  # pragma: no cover - access lines always carry a time
            return []
        event_id = self._line_event_id(parsed.line, when)
        return [access_event(parsed, event_id=event_id, when=when, action=action)]
