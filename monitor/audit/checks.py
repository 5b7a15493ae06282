"""The check table and `evaluate`: one row per check, in report order. Pure."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from monitor.audit.checks_access import (
    anonymous_catalog,
    auth_disabled,
    credentials_stale,
    htpasswd_weak,
)
from monitor.audit.checks_exposure import (
    debug_exposed,
    delete_enabled_without_cleanup,
    http_secret_missing,
    listen_all_interfaces,
    notification_token_in_logs,
    notifications_insecure,
    readonly_available,
)
from monitor.audit.checks_tls import tls_cert_expiry, tls_disabled, tls_weak
from monitor.audit.facts import Facts
from monitor.audit.model import CHECK_IDS, CheckResult

Check = Callable[[Facts, datetime], CheckResult]

CHECKS: dict[str, Check] = {
    "tls_disabled": tls_disabled,
    "tls_cert_expiry": tls_cert_expiry,
    "tls_weak": tls_weak,
    "auth_disabled": auth_disabled,
    "anonymous_catalog": anonymous_catalog,
    "htpasswd_weak": htpasswd_weak,
    "credentials_stale": credentials_stale,
    "listen_all_interfaces": listen_all_interfaces,
    "debug_exposed": debug_exposed,
    "http_secret_missing": http_secret_missing,
    "delete_enabled_without_cleanup": delete_enabled_without_cleanup,
    "readonly_available": readonly_available,
    "notifications_insecure": notifications_insecure,
    "notification_token_in_logs": notification_token_in_logs,
}
assert tuple(CHECKS) == CHECK_IDS


def evaluate(facts: Facts, now: datetime) -> list[CheckResult]:
    """Every check over `facts`, at `now` (aware UTC)."""
    return [check(facts, now) for check in CHECKS.values()]
