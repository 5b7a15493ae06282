"""Slack delivery behind our own `Notifier` seam, with two slack-sdk implementations.

- `WebhookNotifier` posts to an incoming webhook (`slack_sdk.webhook.WebhookClient`). A webhook
  answers `ok` without the message `ts`, so it can neither thread nor update: repeats and
  resolves go out as new messages.
- `BotNotifier` uses a bot token and a channel (`slack_sdk.WebClient`): `chat.postMessage`
  returns channel + ts, repeats go into that message's thread (`thread_ts`) and a resolve
  rewrites it with `chat.update`.

Both are built with `retry_handlers=[]`, so slack-sdk never sleeps or retries inside a call;
every call returns a `Delivery` whose `outcome` tells the outbox what to do next.
"""

from __future__ import annotations

import http.client
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient

from monitor.alerting.notifier import Delivery, DeliveryRef
from monitor.alerting.render import (
    SlackMessage,
    render_alert,
    render_digest,
    render_repeat,
    render_resolved,
)
from monitor.alerts import Alert, Digest

DEFAULT_RETRY_AFTER_SECONDS = 1.0
MAX_RETRY_AFTER_SECONDS = 3600.0

# Web API error codes that say "try again later" rather than "this will never work".
_RETRYABLE_API_ERRORS = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "timeout"}
)


def parse_retry_after(value: str | None) -> float:
    """Seconds from a `Retry-After` header (Slack sends whole seconds), within sane bounds."""
    try:
        seconds = float(value) if value is not None else DEFAULT_RETRY_AFTER_SECONDS
    except ValueError:
        seconds = DEFAULT_RETRY_AFTER_SECONDS
    if seconds != seconds:  # NaN
        seconds = DEFAULT_RETRY_AFTER_SECONDS
    return min(max(seconds, DEFAULT_RETRY_AFTER_SECONDS), MAX_RETRY_AFTER_SECONDS)


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    for key, value in dict(headers).items():
        if str(key).lower() == name.lower():
            if isinstance(value, list | tuple):
                return str(value[0]) if value else None
            return str(value)
    return None


def classify_http(status: int, headers: Any, error: str) -> Delivery:
    """A failed HTTP answer as an outcome: 429 honours Retry-After, 5xx and 408 retry."""
    if status == 429:
        return Delivery.rate_limited(parse_retry_after(_header(headers, "Retry-After")), error)
    if status >= 500 or status == 408:
        return Delivery.retryable(f"HTTP {status}: {error}")
    return Delivery.permanent(f"HTTP {status}: {error}")


def _network_error(exc: BaseException) -> Delivery:
    return Delivery.retryable(f"{type(exc).__name__}: {exc}")


_NETWORK_ERRORS = (URLError, OSError, http.client.HTTPException, TimeoutError)


class WebhookNotifier:
    """Incoming-webhook delivery: no threads and no updates, so every call is a new message."""

    def __init__(self, url: str, *, timeout: int = 10) -> None:
        self._client = WebhookClient(url=url, timeout=timeout, retry_handlers=[])

    def _post(self, message: SlackMessage) -> Delivery:
        try:
            response = self._client.send(
                text=message.text,
                blocks=message.blocks_list(),
                unfurl_links=False,
                unfurl_media=False,
            )
        except _NETWORK_ERRORS as exc:
            return _network_error(exc)
        if response.status_code == 200:
            return Delivery.delivered(None)
        body = (response.body or "").strip()[:200]
        return classify_http(response.status_code, response.headers, body or "no body")

    def send_new(self, alert: Alert) -> Delivery:
        return self._post(render_alert(alert))

    def send_repeat(self, alert: Alert, first: DeliveryRef | None) -> Delivery:
        return self._post(render_repeat(alert))

    def send_resolved(self, alert: Alert, first: DeliveryRef | None) -> Delivery:
        return self._post(render_resolved(alert))

    def send_digest(self, digest: Digest) -> Delivery:
        return self._post(render_digest(digest))


class BotNotifier:
    """Bot-token delivery to one channel: threads repeats and updates the message on resolve."""

    def __init__(
        self,
        token: str,
        channel: str,
        *,
        base_url: str = WebClient.BASE_URL,
        timeout: int = 10,
    ) -> None:
        self._client = WebClient(token=token, base_url=base_url, timeout=timeout, retry_handlers=[])
        self._channel = channel

    def _call(self, method: str, **kwargs: Any) -> Delivery:
        try:
            if method == "chat.update":
                response = self._client.chat_update(**kwargs)
            else:
                response = self._client.chat_postMessage(**kwargs)
        except SlackApiError as exc:
            return _classify_api_error(exc)
        except _NETWORK_ERRORS as exc:
            return _network_error(exc)
        except SlackClientError as exc:
            return Delivery.permanent(f"{type(exc).__name__}: {exc}")
        channel = response.get("channel")
        ts = response.get("ts")
        if not isinstance(channel, str) or not isinstance(ts, str):
            return Delivery.delivered(None)
        return Delivery.delivered(DeliveryRef(channel=channel, ts=ts))

    def _post(self, message: SlackMessage, thread: DeliveryRef | None = None) -> Delivery:
        kwargs: dict[str, Any] = {
            "channel": thread.channel if thread is not None else self._channel,
            "text": message.text,
            "blocks": message.blocks_list(),
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if thread is not None:
            kwargs["thread_ts"] = thread.ts
        return self._call("chat.postMessage", **kwargs)

    def send_new(self, alert: Alert) -> Delivery:
        return self._post(render_alert(alert))

    def send_repeat(self, alert: Alert, first: DeliveryRef | None) -> Delivery:
        return self._post(render_repeat(alert), thread=first)

    def send_resolved(self, alert: Alert, first: DeliveryRef | None) -> Delivery:
        message = render_resolved(alert)
        if first is None:
            return self._post(message)
        return self._call(
            "chat.update",
            channel=first.channel,
            ts=first.ts,
            text=message.text,
            blocks=message.blocks_list(),
        )

    def send_digest(self, digest: Digest) -> Delivery:
        return self._post(render_digest(digest))


def _classify_api_error(exc: SlackApiError) -> Delivery:
    response = exc.response
    status = int(getattr(response, "status_code", 0) or 0)
    data = getattr(response, "data", None)
    error = "unknown_error"
    if isinstance(data, dict):
        error = str(data.get("error") or error)
    elif isinstance(data, bytes | str):
        error = str(data[:200])
    headers = getattr(response, "headers", None)
    if status == 429 or error == "ratelimited":
        return Delivery.rate_limited(parse_retry_after(_header(headers, "Retry-After")), error)
    if status != 200:
        return classify_http(status, headers, error)
    if error in _RETRYABLE_API_ERRORS:
        return Delivery.retryable(error)
    return Delivery.permanent(error)
