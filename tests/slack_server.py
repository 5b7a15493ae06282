"""A local stand-in for Slack: incoming webhooks and the Web API `chat.postMessage`/`chat.update`.

It listens on 127.0.0.1 on a free port, records every request, and can be scripted to answer
the next requests with a 429 (with Retry-After), a 500, or to be down (connection refused).
Unknown tokens answer `invalid_auth`, unknown channels `channel_not_found`, as Slack does.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

WEBHOOK_PATH = "/services/T000/B000/XXXX"
TOKEN = "xoxb-test-token"
CHANNEL = "C0ALERTS"


@dataclasses.dataclass(frozen=True)
class Fault:
    """One scripted answer: `status` with `body` and headers, instead of the normal answer."""

    status: int
    body: str = ""
    headers: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Recorded:
    """A request as received, with the status it was answered with."""

    method: str
    path: str
    headers: dict[str, str]
    payload: dict[str, Any]
    status: int
    ok: bool = True

    @property
    def api_method(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def text(self) -> str:
        return str(self.payload.get("text", ""))


@dataclasses.dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[Any]
    thread_ts: str | None = None


class SlackServer:
    """The fake; `url` is its base, `webhook_url` and `api_url` what clients are given."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.messages: dict[tuple[str, str], Message] = {}
        self.channels = {CHANNEL}
        self.tokens = {TOKEN}
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def webhook_url(self) -> str:
        return self.url + WEBHOOK_PATH

    @property
    def api_url(self) -> str:
        return self.url + "/api/"

    def up(self) -> None:
        """Listen (again, on the same port once one was chosen)."""
        if self._server is not None:
            return
        handler = type("Handler", (_Handler,), {"slack": self})
        server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.start()

    def down(self) -> None:
        """Stop listening: connections are refused until `up()`."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def fail_next(self, *faults: Fault) -> None:
        """Answer the next requests with `faults`, one each, in order."""
        with self._lock:
            self._faults.extend(faults)

    def rate_limit_next(self, retry_after: int = 1) -> None:
        body = '{"ok":false,"error":"ratelimited"}'
        self.fail_next(Fault(429, body, (("Retry-After", str(retry_after)),)))

    def error_next(self, status: int = 500) -> None:
        self.fail_next(Fault(status, "internal_error"))

    def delivered(self) -> list[Recorded]:
        """Requests that were answered as a success."""
        with self._lock:
            return [r for r in self.requests if r.status == 200 and r.ok]

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _record(self, recorded: Recorded) -> None:
        with self._lock:
            self.requests.append(recorded)

    def _post_message(self, payload: dict[str, Any]) -> dict[str, Any]:
        channel = str(payload.get("channel", ""))
        if channel not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        with self._lock:
            ts = f"1700000000.{next(self._ts):06d}"
            thread_ts = payload.get("thread_ts")
            message = Message(
                channel,
                ts,
                str(payload.get("text", "")),
                list(payload.get("blocks") or []),
                str(thread_ts) if thread_ts else None,
            )
            self.messages[(channel, ts)] = message
        body = {"text": message.text, "ts": ts, "type": "message"}
        return {"ok": True, "channel": channel, "ts": ts, "message": body}

    def _update(self, payload: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(payload.get("channel", "")), str(payload.get("ts", ""))
        if channel not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        with self._lock:
            message = self.messages.get((channel, ts))
            if message is None:
                return {"ok": False, "error": "message_not_found"}
            message.text = str(payload.get("text", ""))
            message.blocks = list(payload.get("blocks") or [])
        body = {"text": message.text, "ts": ts, "type": "message"}
        return {"ok": True, "channel": channel, "ts": ts, "text": message.text, "message": body}

    def __enter__(self) -> SlackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()


def _parse_body(content_type: str, raw: bytes) -> dict[str, Any]:
    if content_type.startswith("application/json"):
        value = json.loads(raw.decode("utf-8") or "{}")
        return value if isinstance(value, dict) else {}
    fields: dict[str, Any] = dict(parse_qsl(raw.decode("utf-8")))
    for key in ("blocks", "attachments"):
        if isinstance(fields.get(key), str):
            fields[key] = json.loads(fields[key])
    return fields


class _Handler(BaseHTTPRequestHandler):
    slack: SlackServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: requests are recorded, not logged."""

    def _answer(self, status: int, body: str, content_type: str, headers=()) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        headers = {k: v for k, v in self.headers.items()}
        try:
            payload = _parse_body(self.headers.get("Content-Type", ""), raw)
        except (ValueError, UnicodeDecodeError):
            payload = {"_unparsed": raw.decode("utf-8", "replace")}
        fault = self.slack._next_fault()
        if fault is not None:
            self.slack._record(Recorded("POST", self.path, headers, payload, fault.status))
            self._answer(fault.status, fault.body, "text/plain", fault.headers)
            return
        if self.path.startswith("/services/"):
            self._webhook(headers, payload)
        elif self.path.startswith("/api/"):
            self._web_api(headers, payload)
        else:
            self.slack._record(Recorded("POST", self.path, headers, payload, 404))
            self._answer(404, "not found", "text/plain")

    def _webhook(self, headers: dict[str, str], payload: dict[str, Any]) -> None:
        if self.path != WEBHOOK_PATH:
            status, body = 404, "no_service"
        elif "_unparsed" in payload or not (
            payload.get("text") or payload.get("blocks") or payload.get("attachments")
        ):
            status, body = 400, "invalid_payload"
        else:
            status, body = 200, "ok"
        self.slack._record(Recorded("POST", self.path, headers, payload, status))
        self._answer(status, body, "text/html")

    def _web_api(self, headers: dict[str, str], payload: dict[str, Any]) -> None:
        auth = headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else payload.get("token")
        method = self.path.removeprefix("/api/").split("?", 1)[0]
        answer: dict[str, Any]
        if token not in self.slack.tokens:
            answer = {"ok": False, "error": "invalid_auth"}
        elif method == "chat.postMessage":
            answer = self.slack._post_message(payload)
        elif method == "chat.update":
            answer = self.slack._update(payload)
        else:
            answer = {"ok": False, "error": "unknown_method"}
        self.slack._record(Recorded("POST", self.path, headers, payload, 200, bool(answer["ok"])))
        self._answer(200, json.dumps(answer), "application/json; charset=utf-8")


def running() -> Iterator[SlackServer]:
    """A started server, stopped afterwards (for a pytest fixture)."""
    server = SlackServer()
    try:
        yield server
    finally:
        server.down()
