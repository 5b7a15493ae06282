"""TLS checks: tls_disabled, tls_cert_expiry, tls_weak. Pure, `now` passed in."""

from __future__ import annotations

from datetime import datetime

from monitor.audit.facts import Facts
from monitor.audit.model import CheckResult, Status
from monitor.audit.registry_config import url_host
from monitor.audit.x509 import CertificateInfo

EXPIRY_WARN_DAYS = 30
EXPIRY_FAIL_DAYS = 7
MIN_RSA_BITS = 2048
WEAK_MINIMUMS = frozenset({"tls1.0", "tls1.1"})
TLS_REMEDY = (
    "http.tls: {certificate: /etc/docker/registry/tls.crt, key: /etc/docker/registry/tls.key}"
)


def _https(facts: Facts) -> bool:
    return facts.url is not None and url_host(facts.url)[2] == "https"


def tls_disabled(facts: Facts, now: datetime) -> CheckResult:
    """No `http.tls` and the URL is not https: credentials and images cross the network in
    the clear."""
    check = "tls_disabled"
    config = facts.config
    if config is None and facts.url is None:
        return CheckResult(check, Status.SKIPPED, f"{facts.config_problem}, and no --url")
    configured = config is not None and config.tls_enabled
    if configured or _https(facts):
        where = "http.tls is set" if configured else f"{facts.url} is served over TLS"
        if not configured and config is not None:
            where += " (terminated in front of the registry: its own http.tls is unset)"
        return CheckResult(check, Status.PASS, where)
    if config is not None:
        detail = "no http.tls in the registry config"
        if facts.url is not None:
            detail += f" and {facts.url} is plain http"
    else:
        detail = f"{facts.url} is plain http"
    return CheckResult(
        check, Status.FAIL, detail + ": passwords and tokens travel in the clear", TLS_REMEDY
    )


def _certificate(facts: Facts) -> tuple[CertificateInfo | None, str, str]:
    """(certificate, where it was read, why none): the served one first, else the file."""
    if facts.served_cert is not None:
        return facts.served_cert, f"served at {facts.url}", ""
    if facts.configured_cert is not None:
        path = facts.config.tls_certificate if facts.config is not None else ""
        return facts.configured_cert, f"in {path}", ""
    problems = [p for p in (facts.served_cert_problem, facts.configured_cert_problem) if p]
    if problems:
        return None, "", "; ".join(problems)
    return None, "", "no TLS: no https --url and no http.tls.certificate in the registry config"


def certificate_expiry(facts: Facts) -> datetime | None:
    """When the judged certificate (served, else configured) expires; None without one."""
    cert, _where, _problem = _certificate(facts)
    return cert.not_after if cert is not None else None


def tls_cert_expiry(facts: Facts, now: datetime) -> CheckResult:
    """Days left on the certificate: warn under 30, fail under 7 or expired."""
    check = "tls_cert_expiry"
    cert, where, problem = _certificate(facts)
    if cert is None:
        if facts.config is not None and facts.config.tls_letsencrypt and not problem:
            return CheckResult(check, Status.PASS, "certificates come from Let's Encrypt")
        return CheckResult(check, Status.SKIPPED, problem)
    left = cert.not_after - now
    days = left.total_seconds() / 86_400
    name = f" for {cert.common_name}" if cert.common_name else ""
    note = " (self-signed)" if cert.self_signed else ""
    until = cert.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    path = facts.config.tls_certificate if facts.config is not None else None
    remedy = f"renew http.tls.certificate ({path})" if path else "renew the served certificate"
    if days < 0:
        detail = f"the certificate{name} {where}{note} expired on {until}"
        return CheckResult(check, Status.FAIL, detail, remedy)
    detail = f"the certificate{name} {where}{note} expires on {until}, in {days:.1f} days"
    if days < EXPIRY_FAIL_DAYS:
        return CheckResult(check, Status.FAIL, detail, remedy)
    if days < EXPIRY_WARN_DAYS:
        return CheckResult(check, Status.WARN, detail, remedy)
    return CheckResult(check, Status.PASS, detail)


def tls_weak(facts: Facts, now: datetime) -> CheckResult:
    """An RSA key under 2048 bits, or a TLS version below 1.2 accepted (by the configured
    `http.tls.minimumtls` or by the live server)."""
    check = "tls_weak"
    cert, where, problem = _certificate(facts)
    minimum = (facts.config.tls_minimum or "").lower() if facts.config is not None else ""
    tls = facts.tls
    if cert is None and not minimum and (tls is None or not tls.version):
        return CheckResult(check, Status.SKIPPED, problem)
    findings: list[str] = []
    remedies: list[str] = []
    if cert is not None and cert.key_type == "rsa" and cert.key_bits < MIN_RSA_BITS:
        findings.append(f"the certificate {where} has a {cert.key_bits}-bit RSA key")
        remedies.append(
            f"reissue http.tls.certificate with an RSA key of at least {MIN_RSA_BITS} bits"
        )
    if minimum in WEAK_MINIMUMS:
        findings.append(f"http.tls.minimumtls is {minimum}")
    if tls is not None and tls.legacy_accepted:
        findings.append(f"{facts.url} accepted a {tls.legacy_accepted} handshake")
    if minimum in WEAK_MINIMUMS or (tls is not None and tls.legacy_accepted):
        remedies.append("http.tls.minimumtls: tls1.2")
    if findings:
        return CheckResult(check, Status.FAIL, "; ".join(findings), "; ".join(remedies))
    parts: list[str] = []
    if cert is not None:
        parts.append(f"{cert.key_type.upper()} {cert.key_bits}-bit key")
    if tls is not None and tls.version:
        tested = " (TLS 1.0 and 1.1 refused)" if tls.legacy_tested else ""
        parts.append(f"negotiated {tls.version}{tested}")
    elif minimum:
        parts.append(f"http.tls.minimumtls is {minimum}")
    return CheckResult(check, Status.PASS, ", ".join(parts))
