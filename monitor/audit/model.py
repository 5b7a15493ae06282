"""One audit row per check: id, status, detail, remedy. No I/O."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from monitor.errors import ConfigError


class Status(StrEnum):
    PASS = "pass"  # noqa: S105 - a status, not a password
    WARN = "warn"
    FAIL = "fail"
    SKIPPED = "skipped"


CHECK_IDS: tuple[str, ...] = (
    "tls_disabled",
    "tls_cert_expiry",
    "tls_weak",
    "auth_disabled",
    "anonymous_catalog",
    "htpasswd_weak",
    "credentials_stale",
    "listen_all_interfaces",
    "debug_exposed",
    "http_secret_missing",
    "delete_enabled_without_cleanup",
    "readonly_available",
    "notifications_insecure",
    "notification_token_in_logs",
)
"""Every check, in the order they are reported."""


@dataclasses.dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check. `remedy` names the configuration line to change ("" if none);
    a skipped check says why in `detail`."""

    id: str
    status: Status
    detail: str
    remedy: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status.value,
            "detail": self.detail,
            "remedy": self.remedy,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        return cls(
            id=str(data["id"]),
            status=Status(data["status"]),
            detail=str(data.get("detail", "")),
            remedy=str(data.get("remedy", "")),
        )


def check_ids(ids: Iterable[str], *, key: str) -> tuple[str, ...]:
    """`ids` when each is a known check; ConfigError naming `key` otherwise."""
    known = set(CHECK_IDS)
    for check in ids:
        if check not in known:
            raise ConfigError(key, f"unknown check {check!r}; one of {', '.join(CHECK_IDS)}")
    return tuple(ids)


def accept(results: Iterable[CheckResult], accepted: Iterable[str]) -> list[CheckResult]:
    """The failures of `accepted` checks turned into warnings that say so."""
    chosen = set(accepted)
    return [
        dataclasses.replace(
            result, status=Status.WARN, detail=f"accepted (audit.accept): {result.detail}"
        )
        if result.status is Status.FAIL and result.id in chosen
        else result
        for result in results
    ]


def failed(results: Iterable[CheckResult]) -> list[str]:
    """The ids of the checks that failed, in report order."""
    return [result.id for result in results if result.status is Status.FAIL]
