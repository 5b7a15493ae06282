"""Cheap, conservative decisions about registry app lines, so most skip the full parse; pure.

`LogClassifier.feed` uses these to recognise lines that cannot complete an event: it may only
skip a line when the full parse would certainly lead to nothing but "one more line" (and, for
an anonymous challenge, one more challenge). Every check errs towards the full parse.
"""

from __future__ import annotations

import re
from typing import Any

from monitor.ingest import memo
from monitor.ingest.routes import route_of

ANONYMOUS_REASONS = frozenset({"invalid authorization credential", "authorization token required"})
DENIED_REASONS = frozenset({"insufficient scope"})
AUTH_CONTEXT_PREFIX = "error authorizing context: "
AUTH_USER_PREFIX = "error authenticating user "
AUTH_USER_31 = "user failed to authenticate"
RESPONSE_MSG = "response completed"
RESPONSE_ERROR_MSG = "response completed with error"
STARTUP_MSG = "listening on "

# The head of a text line in the usual form (a UTC time, no escape but `\"` in msg): what
# `TEXT_HEAD` reads, only faster. Groups: time and msg without their quotes.
TEXT_HEAD_PLAIN = re.compile(
    r'time="([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?Z)" '
    r'level=[^\s"\\]* msg="([^"\\]*(?:\\"[^"\\]*)*)"(?=\s|$)'
)
# The first three keys of a logrus text line, as the full parse tokenises them (values raw).
_QUOTED_OR_BARE = r'("[^"\\]*(?:\\.[^"\\]*)*"|[^\s"]*)(?=\s|$)'
TEXT_HEAD = re.compile(rf"time={_QUOTED_OR_BARE}\s+level={_QUOTED_OR_BARE}\s+msg={_QUOTED_OR_BARE}")


PLAIN, RESPONSE, ANONYMOUS, FULL = range(4)


def categorise(msg: str) -> int:
    """What the shortcut may do with an app line of this message (memoised, bounded)."""
    if not msg.startswith(("error auth", "user failed", RESPONSE_MSG, STARTUP_MSG)):
        category = PLAIN
    elif msg in (RESPONSE_MSG, RESPONSE_ERROR_MSG):
        category = RESPONSE
    elif msg.startswith(AUTH_CONTEXT_PREFIX) and msg.rpartition(": ")[2] in ANONYMOUS_REASONS:
        category = ANONYMOUS
    else:
        category = FULL
    return memo.MSG_CATEGORIES.remember(msg, category)


def status_of(text: str | None) -> int | None:
    """An HTTP status written as three digits, else None."""
    if text is None or len(text) != 3 or not text.isdigit() or not text.isascii():
        return None
    return None if text[0] == "0" else int(text)


def text_response_may_matter(line: str) -> bool:
    """False only when a text response line certainly completes no event (cheap checks).

    Without backslashes, a value the full parse reads is written verbatim in the line.
    """
    if "\\" in line or "/_catalog" in line or "/tags/list" in line:
        return True
    if text_response_emits(line):
        return True
    if "status=403" in line or 'status="403' in line:
        return True
    return "/manifests/" in line and ("status=404" in line or 'status="404' in line)


EMITTING_STATUSES = frozenset({200, 201, 202, "200", "201", "202"})


def text_response_emits(line: str) -> bool:
    """False only when a text response line certainly is no request that emits notification
    events (a manifest or blob request answered 200, 201 or 202)."""
    if "/manifests/" not in line and "/blobs/" not in line:
        return False
    if "status=20" not in line and 'status="20' not in line:
        return False
    if "/manifests/" in line or "/blobs/uploads/" not in line:
        return True
    # an upload's POST and PATCH answer 202 and emit nothing; its last PUT answers 201
    return any(
        status in line for status in ("status=200", "status=201", 'status="200', 'status="201')
    )


def json_response_may_matter(document: dict[str, Any], line: str) -> bool:
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
    if route in ("manifest", "blob", "upload") and status in EMITTING_STATUSES:
        return True
    return route in ("catalog", "tags") or (route == "manifest" and status in (404, "404"))
