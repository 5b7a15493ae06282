"""The one error tree of registry-monitor.

    MonitorError                 code, message, details
    ├── ConfigError              a setting is invalid (names the key)
    ├── ParseError               input that cannot be understood (a body, a log line, a query)
    ├── AuthError                missing or wrong credentials
    ├── PayloadTooLarge          a request body above the configured limit
    ├── RequestTimeout           a request body that did not arrive in time
    ├── Busy                     too much work of one kind at once (retry later)
    ├── NotFound                 an object that does not exist
    ├── StoreUnavailable         the store cannot commit or answer right now
    ├── RegistryError            the registry's HTTP API failed or answered unexpectedly
    └── NotifyError              an alert could not be delivered

Nothing below `monitor.api` knows about HTTP; `monitor.api.errors` maps this tree to answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class MonitorError(Exception):
    """Root of every error registry-monitor raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        return self.message


class ConfigError(MonitorError):
    """A setting is invalid; `key` names it."""

    code = "invalid_config"

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}", details={"key": key})
        self.key = key
        self.reason = reason


class ParseError(MonitorError):
    """Input that cannot be understood; `reason` is a short stable code."""

    code = "parse_error"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, details={"reason": reason})
        self.reason = reason


class InvalidQuery(ParseError):
    """A query parameter that is not valid."""

    code = "invalid_query"


class AuthError(MonitorError):
    code = "unauthorized"


class PayloadTooLarge(MonitorError):
    code = "payload_too_large"


class Busy(MonitorError):
    """Too much work of one kind at once; the client should retry (503 with Retry-After)."""

    code = "busy"


class RequestTimeout(MonitorError):
    """A client that did not send its request body in time."""

    code = "request_timeout"


class NotFound(MonitorError):
    code = "not_found"


class StoreUnavailable(MonitorError):
    code = "store_unavailable"


class RegistryError(MonitorError):
    code = "registry_error"


class NotifyError(MonitorError):
    code = "notify_error"
