"""Exposure and operations checks: listen_all_interfaces, debug_exposed, http_secret_missing,
delete_enabled_without_cleanup, readonly_available, notifications_insecure,
notification_token_in_logs. Pure, `now` passed in."""

from __future__ import annotations

from datetime import datetime

from monitor.audit.facts import Facts
from monitor.audit.model import CheckResult, Status
from monitor.audit.registry_config import is_loopback, listens_everywhere, split_addr, url_host

KNOWN_SECRETS = frozenset({"asecretforlocaldevelopment", "secret", "registry", "password"})
"""Secrets copied from the distribution's sample configs and tutorials."""
PLACEHOLDERS = ("changeme", "change-me", "change_me")
"""A secret containing one of these is a sample value nobody replaced."""
MIN_SECRET_LENGTH = 16


def listen_all_interfaces(facts: Facts, now: datetime) -> CheckResult:
    """`http.addr` on all interfaces (0.0.0.0, ::, or no host) without TLS."""
    check = "listen_all_interfaces"
    config = facts.config
    if config is None:
        return CheckResult(check, Status.SKIPPED, facts.config_problem)
    addr = config.http_addr or ":5000"
    if config.http_net == "unix":
        return CheckResult(check, Status.PASS, f"listens on the unix socket {addr}")
    host, _port = split_addr(addr)
    if not listens_everywhere(host):
        return CheckResult(check, Status.PASS, f"http.addr {addr} is one interface")
    if config.tls_enabled:
        return CheckResult(check, Status.PASS, f"http.addr {addr} is every interface, with TLS")
    _, port = split_addr(addr)
    return CheckResult(
        check,
        Status.FAIL,
        f"http.addr {addr} listens on every interface without TLS",
        f"http.addr: 127.0.0.1:{port or 5000} (behind a TLS proxy), or set http.tls",
    )


def debug_exposed(facts: Facts, now: datetime) -> CheckResult:
    """`http.debug.addr` not on loopback, or reachable from the URL's host: the debug listener
    serves pprof, expvar (notification headers, tokens included) and metrics unauthenticated."""
    check = "debug_exposed"
    config = facts.config
    if config is None:
        return CheckResult(check, Status.SKIPPED, facts.config_problem)
    addr = config.debug_addr
    if not addr:
        return CheckResult(check, Status.PASS, "no debug listener (http.debug.addr unset)")
    host, port = split_addr(addr)
    remedy = f"http.debug.addr: 127.0.0.1:{port or 5001}"
    if listens_everywhere(host) or not is_loopback(host):
        where = "every interface" if listens_everywhere(host) else f"{host}, not loopback"
        detail = (
            f"http.debug.addr {addr} listens on {where}: pprof and /debug/vars "
            "(notification tokens) without authentication"
        )
        return CheckResult(check, Status.FAIL, detail, remedy)
    if facts.debug_reachable:
        url_name = url_host(facts.url or "")[0]
        detail = f"the debug port {port} answers on {url_name}, the registry's public host"
        return CheckResult(check, Status.FAIL, detail, remedy)
    return CheckResult(check, Status.PASS, f"http.debug.addr {addr} is loopback only")


def http_secret_missing(facts: Facts, now: datetime) -> CheckResult:
    """`http.secret` unset or a known sample value. Unset, each instance draws a random one at
    start, so replicas behind a load balancer reject each other's uploads."""
    check = "http_secret_missing"
    config = facts.config
    if config is None:
        return CheckResult(check, Status.SKIPPED, facts.config_problem)
    remedy = (
        "http.secret: <openssl rand -hex 32>, the same on every replica (or REGISTRY_HTTP_SECRET)"
    )
    secret = config.http_secret
    if secret is None:
        detail = (
            "http.secret is unset (unless REGISTRY_HTTP_SECRET sets it): each instance draws "
            "its own, so load-balanced replicas break uploads"
        )
        return CheckResult(check, Status.FAIL, detail, remedy)
    lowered = secret.strip().lower()
    if lowered in KNOWN_SECRETS or any(p in lowered for p in PLACEHOLDERS):
        return CheckResult(
            check,
            Status.FAIL,
            "http.secret is a well-known sample value: upload state can be forged",
            remedy,
        )
    if len(secret) < MIN_SECRET_LENGTH:
        return CheckResult(
            check, Status.WARN, f"http.secret has only {len(secret)} characters", remedy
        )
    return CheckResult(check, Status.PASS, "http.secret is set")


def delete_enabled_without_cleanup(facts: Facts, now: datetime) -> CheckResult:
    """Informational: deletes enabled while registry-monitor has no cleanup policy (deletes
    then come only from people and scripts)."""
    check = "delete_enabled_without_cleanup"
    config = facts.config
    if config is None:
        return CheckResult(check, Status.SKIPPED, facts.config_problem)
    if not config.delete_enabled:
        return CheckResult(check, Status.PASS, "storage.delete.enabled is off: deletes are refused")
    if facts.cleanup_configured:
        return CheckResult(
            check, Status.PASS, "deletes are enabled and cleanup.policies_file governs them"
        )
    return CheckResult(
        check,
        Status.WARN,
        "storage.delete.enabled is on and no cleanup policy is configured: any account with "
        "delete rights can remove images",
        "storage.delete.enabled: false, or set cleanup.policies_file in registry-monitor",
    )


def readonly_available(facts: Facts, now: datetime) -> CheckResult:
    """Informational: `storage.maintenance.readonly` keeps garbage collection safe (the
    registry must not take pushes while it runs)."""
    check = "readonly_available"
    config = facts.config
    if config is None:
        return CheckResult(check, Status.SKIPPED, facts.config_problem)
    if config.readonly_enabled:
        return CheckResult(
            check, Status.PASS, "storage.maintenance.readonly is on: pushes and deletes are refused"
        )
    return CheckResult(
        check,
        Status.PASS,
        "writable; for garbage collection, switch to read-only first, and keep a registry "
        "that only serves pulls read-only",
        "storage.maintenance.readonly: {enabled: true}",
    )


def notifications_insecure(facts: Facts, now: datetime) -> CheckResult:
    """An endpoint URL over http to a non-loopback host, or without an Authorization header."""
    check = "notifications_insecure"
    config = facts.config
    if config is None:
        return CheckResult(check, Status.SKIPPED, facts.config_problem)
    endpoints = [e for e in config.endpoints if not e.disabled]
    if not endpoints:
        return CheckResult(check, Status.SKIPPED, "no notification endpoints are configured")
    findings: list[str] = []
    remedies: list[str] = []
    for endpoint in endpoints:
        host, _port, scheme = url_host(endpoint.url)
        if scheme != "https" and not is_loopback(host):
            findings.append(f"{endpoint.name} sends to {endpoint.url} in the clear")
            remedies.append(f"notifications.endpoints[{endpoint.name}].url: https://…")
        if not endpoint.has_authorization:
            findings.append(f"{endpoint.name} sends no Authorization header")
            remedies.append(
                f"notifications.endpoints[{endpoint.name}].headers: {{Authorization: [Bearer …]}}"
            )
    if findings:
        return CheckResult(check, Status.FAIL, "; ".join(findings), "; ".join(remedies))
    names = ", ".join(e.name for e in endpoints)
    return CheckResult(check, Status.PASS, f"endpoints {names}: authenticated, not in the clear")


def notification_token_in_logs(facts: Facts, now: datetime) -> CheckResult:
    """The registry prints every endpoint's headers (the token) at startup: its log must not
    be world-readable."""
    check = "notification_token_in_logs"
    config = facts.config
    if config is None:
        return CheckResult(check, Status.SKIPPED, facts.config_problem)
    with_headers = [e.name for e in config.endpoints if e.header_names and not e.disabled]
    if not with_headers:
        return CheckResult(check, Status.PASS, "no endpoint headers to print")
    if not facts.log_files:
        return CheckResult(
            check, Status.SKIPPED, "no registry log file known (logs.paths, or --registry-log)"
        )
    exposed = [f for f in facts.log_files if f.world_readable]
    if exposed:
        paths = ", ".join(f"{f.path} ({f.mode & 0o777:o})" for f in exposed)
        return CheckResult(
            check,
            Status.FAIL,
            f"the registry log prints the headers of {', '.join(with_headers)} and is "
            f"world-readable: {paths}",
            "chmod o-r " + " ".join(f.path for f in exposed),
        )
    return CheckResult(
        check, Status.PASS, f"{len(facts.log_files)} registry log file(s), none world-readable"
    )
