"""Reads the registry's files, probes the live registry and asks the store: `Facts` for the
checks. The only part of the audit doing I/O, through what it is given.

A file passed explicitly that cannot be read is an error (ConfigError naming it); a file the
registry config only points at (the htpasswd, the certificate) may live on another host, so
the checks that need it are skipped with the reason instead.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from monitor.audit.facts import DEFAULT_STALE_DAYS, Activity, Facts, LogFile
from monitor.audit.htpasswd import HtpasswdEntry, parse_htpasswd
from monitor.audit.probe import Probe
from monitor.audit.registry_config import (
    RegistryConfig,
    is_loopback,
    parse_registry_config,
    split_addr,
    url_host,
)
from monitor.audit.x509 import CertificateInfo, pem_certificates, read_certificate
from monitor.errors import ConfigError, MonitorError, ParseError

PROBE_REPOSITORY = "registry-monitor-audit/probe"
"""Where the anonymous push probe starts (and cancels) an upload."""

ActivityReader = Callable[[Sequence[str], datetime], Activity]
"""(account names, now) → their last successful events; raises MonitorError when it cannot."""


@dataclasses.dataclass(frozen=True)
class Sources:
    """Where to look: the CLI flags, or the `audit` settings."""

    registry_config: Path | None = None
    htpasswd: Path | None = None
    url: str | None = None
    registry_logs: tuple[str, ...] = ()
    stale_days: int = DEFAULT_STALE_DAYS
    cleanup_configured: bool = False


def _read(path: Path, key: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror}") from exc


def read_registry_config(path: Path) -> RegistryConfig:
    text = _read(path, "--registry-config").decode("utf-8", "replace")
    try:
        return parse_registry_config(text, source=str(path))
    except ParseError as exc:
        raise ConfigError("--registry-config", exc.message) from exc


def _htpasswd(
    sources: Sources, config: RegistryConfig | None
) -> tuple[tuple[HtpasswdEntry, ...] | None, str, str]:
    """(entries, source, why none)."""
    if sources.htpasswd is not None:
        path, explicit = sources.htpasswd, True
    elif config is not None and config.htpasswd_path:
        path, explicit = Path(config.htpasswd_path), False
    else:
        why = "no htpasswd file given (--htpasswd), and the registry config names none"
        if config is not None and config.auth_kinds:
            why = f"the registry authenticates with {', '.join(config.auth_kinds)}, not htpasswd"
        return None, "", why
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        if explicit:
            raise ConfigError("--htpasswd", f"cannot read {path}: {exc.strerror}") from exc
        return None, str(path), f"cannot read {path} (auth.htpasswd.path): {exc.strerror}"
    try:
        return tuple(parse_htpasswd(text, source=str(path))), str(path), ""
    except ParseError as exc:
        raise ConfigError("--htpasswd", exc.message) from exc


def _configured_cert(config: RegistryConfig | None) -> tuple[CertificateInfo | None, str]:
    if config is None or config.tls_certificate is None:
        return None, ""
    path = Path(config.tls_certificate)
    try:
        ders = pem_certificates(path.read_bytes())
        if not ders:
            return None, f"no PEM certificate in {path} (http.tls.certificate)"
        return read_certificate(ders[0]), ""
    except OSError as exc:
        return None, f"cannot read {path} (http.tls.certificate): {exc.strerror}"
    except ParseError as exc:
        return None, f"{path} (http.tls.certificate): {exc.message}"


def _log_files(patterns: Sequence[str]) -> tuple[LogFile, ...]:
    found: dict[str, LogFile] = {}
    for pattern in patterns:
        for name in sorted(glob.glob(pattern)) or [pattern]:
            try:
                found[name] = LogFile(path=name, mode=os.stat(name).st_mode)
            except OSError:
                continue
    return tuple(found.values())


def check_url(url: str) -> str:
    """`url` without a trailing slash; ConfigError unless it is an http(s) URL with a host."""
    host, _port, scheme = url_host(url)
    if scheme not in ("http", "https") or not host:
        raise ConfigError("--url", f"expected an http:// or https:// URL, got {url!r}")
    return url.rstrip("/")


def gather(
    sources: Sources,
    *,
    probe: Probe,
    now: datetime,
    activity: ActivityReader | None = None,
) -> Facts:
    """Everything the checks need, read and observed now."""
    facts = Facts(
        stale_days=sources.stale_days,
        cleanup_configured=sources.cleanup_configured,
        log_files=_log_files(sources.registry_logs),
    )
    config = None
    if sources.registry_config is not None:
        config = read_registry_config(sources.registry_config)
        facts = dataclasses.replace(facts, config=config, config_problem="")
    entries, source, why = _htpasswd(sources, config)
    facts = dataclasses.replace(
        facts, htpasswd=entries, htpasswd_source=source, htpasswd_problem=why
    )
    cert, cert_problem = _configured_cert(config)
    facts = dataclasses.replace(facts, configured_cert=cert, configured_cert_problem=cert_problem)
    if sources.url is not None:
        facts = _live(facts, check_url(sources.url), probe)
    if entries is not None:
        if activity is None:
            facts = dataclasses.replace(facts, activity_problem="the store was not read")
        else:
            try:
                found = activity([e.user for e in entries], now)
            except MonitorError as exc:
                facts = dataclasses.replace(facts, activity_problem=f"store: {exc.message}")
            else:
                facts = dataclasses.replace(facts, activity=found, activity_problem="")
    return facts


def _live(facts: Facts, url: str, probe: Probe) -> Facts:
    host, port, scheme = url_host(url)
    v2 = probe.get(f"{url}/v2/")
    upload = probe.start_upload(url, PROBE_REPOSITORY) if v2.status == 200 else None
    facts = dataclasses.replace(
        facts, url=url, v2=v2, upload=upload, catalog=probe.get(f"{url}/v2/_catalog")
    )
    if scheme == "https" and port is not None:
        tls = probe.tls(host, port)
        served, problem = None, tls.error
        if tls.certificate is not None:
            try:
                served = read_certificate(tls.certificate)
            except ParseError as exc:
                problem = f"the certificate served at {url}: {exc.message}"
        facts = dataclasses.replace(facts, tls=tls, served_cert=served, served_cert_problem=problem)
    config = facts.config
    if config is not None and config.debug_addr and not is_loopback(host):
        _debug_host, debug_port = split_addr(config.debug_addr)
        if debug_port is not None:
            facts = dataclasses.replace(facts, debug_reachable=probe.reachable(host, debug_port))
    return facts
