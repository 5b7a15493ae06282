"""Checks across settings, run once they are loaded: each problem is a ConfigError naming the
key."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from monitor import inbox_files
from monitor.errors import ConfigError
from monitor.settings.sections import Settings


def validate(settings: Settings) -> None:
    """Cross-field checks; raises ConfigError naming the key."""
    http = settings.http
    if ":" not in http.addr:
        raise ConfigError("http.addr", f"expected host:port, got {http.addr!r}")
    port_text = http.addr.rsplit(":", 1)[1]
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError("http.addr", f"port must be a number from 0 to 65535, got {port_text!r}")
    if (http.tls_cert is None) != (http.tls_key is None):
        raise ConfigError("http.tls_cert", "tls_cert and tls_key must be set together")
    for key, path in (("http.tls_cert", http.tls_cert), ("http.tls_key", http.tls_key)):
        if path is not None and not path.is_file():
            raise ConfigError(key, f"file not found: {path}")
    if http.max_body_bytes < 1024:
        raise ConfigError("http.max_body_bytes", "must be at least 1024")
    if http.read_slots < 1:
        raise ConfigError("http.read_slots", "must be at least 1")
    if http.read_queue < 0:
        raise ConfigError("http.read_queue", "must not be negative")
    if http.read_wait_seconds <= 0:
        raise ConfigError("http.read_wait_seconds", "must be positive")
    if not 0 < http.switch_interval_seconds <= 1:
        raise ConfigError("http.switch_interval_seconds", "must be above 0 and at most 1")
    url = settings.database.effective_url()
    if not url.startswith(("sqlite:", "postgresql")):
        raise ConfigError("database.url", "only sqlite and postgresql URLs are supported")
    if settings.cleanup.delete_mode not in {"auto", "tag", "digest"}:
        raise ConfigError("cleanup.delete_mode", "expected auto, tag or digest")
    if settings.database.sqlite_synchronous.upper() not in {"FULL", "NORMAL", "EXTRA"}:
        raise ConfigError("database.sqlite_synchronous", "expected FULL, NORMAL or EXTRA")
    if settings.logs.poll_seconds <= 0:
        raise ConfigError("logs.poll_seconds", "must be positive")
    if settings.reconcile.settle_seconds < 0:
        raise ConfigError("reconcile.settle_seconds", "must not be negative")
    if settings.reconcile.interval_seconds < 0:
        raise ConfigError("reconcile.interval_seconds", "must not be negative")
    if settings.logs.max_body_bytes < 1024:
        raise ConfigError("logs.max_body_bytes", "must be at least 1024")
    if settings.notifications.batch_max < 1:
        raise ConfigError("notifications.batch_max", "must be at least 1")
    _check_inbox_file(settings)
    if settings.notifications.heartbeat_seconds <= 0:
        raise ConfigError("notifications.heartbeat_seconds", "must be positive")
    if settings.retention.events_days < 1:
        raise ConfigError("retention.events_days", "must be at least 1")
    cleanup = settings.cleanup
    if cleanup.registry_url is not None and not cleanup.registry_url.startswith(
        ("http://", "https://")
    ):
        raise ConfigError("cleanup.registry_url", "expected an http:// or https:// URL")
    if (cleanup.username is None) != (cleanup.password is None):
        raise ConfigError("cleanup.username", "username and password must be set together")
    if not 0 < cleanup.max_repository_share <= 1:
        raise ConfigError("cleanup.max_repository_share", "must be above 0 and at most 1")
    for key, number in (
        ("cleanup.max_deletions", cleanup.max_deletions),
        ("cleanup.concurrency", cleanup.concurrency),
        ("cleanup.plans_keep", cleanup.plans_keep),
    ):
        if number < 1:
            raise ConfigError(key, "must be at least 1")
    if cleanup.timeout_seconds <= 0:
        raise ConfigError("cleanup.timeout_seconds", "must be positive")
    for key, cron in (
        ("cleanup.plan_schedule", cleanup.plan_schedule),
        ("cleanup.apply_schedule", cleanup.apply_schedule),
        ("cleanup.reconcile_schedule", cleanup.reconcile_schedule),
        ("retention.schedule", settings.retention.schedule),
    ):
        if cron.strip() and len(cron.split()) != 5:
            raise ConfigError(key, f"expected a 5-field cron expression, got {cron!r}")
    if cleanup.lock_seconds < 10:
        raise ConfigError("cleanup.lock_seconds", "must be at least 10")
    if settings.logging.level.lower() not in {"debug", "info", "warning", "error"}:
        raise ConfigError("logging.level", "expected debug, info, warning or error")
    if settings.notifications.applier not in {"process", "thread"}:
        raise ConfigError("notifications.applier", "expected process or thread")
    if settings.http.reads not in {"process", "thread"}:
        raise ConfigError("http.reads", "expected process or thread")
    if settings.logging.format not in {"json", "console"}:
        raise ConfigError("logging.format", "expected json or console")
    if settings.detect.settle_seconds < 0 or settings.detect.interval_seconds <= 0:
        raise ConfigError("detect.interval_seconds", "need settle >= 0 and interval > 0")
    for cidr in settings.detect.allow_cidrs:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError("detect.allow_cidrs", f"not a CIDR: {cidr!r}") from None
    audit = settings.audit
    if audit.url is not None and not audit.url.startswith(("http://", "https://")):
        raise ConfigError("audit.url", "expected an http:// or https:// URL")
    if audit.interval_seconds < 60:
        raise ConfigError("audit.interval_seconds", "must be at least 60")
    if audit.stale_days < 1:
        raise ConfigError("audit.stale_days", "must be at least 1")
    if audit.timeout_seconds <= 0:
        raise ConfigError("audit.timeout_seconds", "must be positive")
    alerting = settings.alerting
    if alerting.interval_seconds <= 0:
        raise ConfigError("alerting.interval_seconds", "must be positive")
    if alerting.slack_bot_token is not None and not alerting.slack_channel:
        raise ConfigError("alerting.slack_channel", "required with slack_bot_token")
    if alerting.budget_per_hour < 0:
        raise ConfigError("alerting.budget_per_hour", "must not be negative")
    if not 0 < alerting.retry_min_seconds <= alerting.retry_max_seconds:
        raise ConfigError("alerting.retry_min_seconds", "need 0 < retry_min <= retry_max")
    registry = settings.registry
    if registry.debug_url is not None and not registry.debug_url.startswith(
        ("http://", "https://")
    ):
        raise ConfigError("registry.debug_url", "expected an http:// or https:// URL")
    if registry.debug_timeout_seconds <= 0:
        raise ConfigError("registry.debug_timeout_seconds", "must be positive")
    if registry.debug_max_endpoints < 1:
        raise ConfigError("registry.debug_max_endpoints", "must be at least 1")


def _check_inbox_file(settings: Settings) -> None:
    """`notifications.inbox_file` names a file that is neither a directory nor one of an
    SQLite store's own files (the store, or the inbox kept beside it, whose applied bodies
    the store remembers under another name), nor has its second file (`<path>-2`) be one."""
    path = settings.notifications.inbox_file
    if path is None:
        return
    if path.is_dir():
        raise ConfigError("notifications.inbox_file", f"{path} is a directory; name a file in it")
    url = settings.database.effective_url()
    database = (
        url.removeprefix("sqlite:///").split("?", 1)[0] if url.startswith("sqlite:///") else ""
    )
    if database not in ("", ":memory:") and not database.startswith("file:"):
        store = Path(database).absolute()
        intake = inbox_files.beside_store(store)
        own = {store, intake, inbox_files.second(intake)}
        if {path.absolute(), inbox_files.second(path.absolute())} & own:
            raise ConfigError(
                "notifications.inbox_file",
                f"{path} is the SQLite store's own file; name another, or leave it unset",
            )
