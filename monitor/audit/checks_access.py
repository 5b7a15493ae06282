"""Access checks: auth_disabled, anonymous_catalog, htpasswd_weak, credentials_stale."""

from __future__ import annotations

from datetime import datetime, timedelta

from monitor.audit.facts import Facts
from monitor.audit.model import CheckResult, Status

AUTH_REMEDY = "auth: {htpasswd: {realm: registry, path: /etc/docker/registry/htpasswd}}"
MIN_BCRYPT_COST = 10
SECURE_PROVIDERS = frozenset({"htpasswd", "token"})


def auth_disabled(facts: Facts, now: datetime) -> CheckResult:
    """No `auth` section (or only `silly`), or anonymous pushes succeed against the URL. A
    registry that serves anonymous pulls but refuses anonymous pushes (a public registry, or
    a proxy guarding only writes) warns."""
    check = "auth_disabled"
    config, v2, upload = facts.config, facts.v2, facts.upload
    findings: list[str] = []
    if config is not None:
        kinds = config.auth_kinds
        if not kinds:
            findings.append("the registry config has no auth section")
        elif not SECURE_PROVIDERS & set(kinds):
            findings.append(f"auth is {', '.join(kinds)} only (for development)")
    pushes = upload is not None and upload.status == 202
    if pushes:
        findings.append(f"an anonymous upload to {facts.url} was accepted (202, then cancelled)")
    if findings:
        detail = "; ".join(findings) + ": anyone who reaches it can pull and push"
        return CheckResult(check, Status.FAIL, detail, AUTH_REMEDY)
    if v2 is not None and v2.status == 200:
        refused = (
            f" and an anonymous upload answered {upload.status}" if upload and upload.status else ""
        )
        return CheckResult(
            check,
            Status.WARN,
            f"an anonymous GET {facts.url}/v2/ answered 200{refused}: anyone who reaches it "
            "can pull (intended only for a public registry)",
            AUTH_REMEDY,
        )
    if config is None and (v2 is None or v2.status is None):
        why = v2.error if v2 is not None and v2.error else "no --url"
        return CheckResult(check, Status.SKIPPED, f"{facts.config_problem}; {why}")
    parts = []
    if config is not None:
        parts.append(f"auth: {', '.join(config.auth_kinds)}")
    if v2 is not None and v2.status is not None:
        parts.append(f"anonymous GET /v2/ answered {v2.status}")
    elif v2 is not None:
        parts.append(f"not probed live: {v2.error}")
    return CheckResult(check, Status.PASS, "; ".join(parts))


def anonymous_catalog(facts: Facts, now: datetime) -> CheckResult:
    """`GET /v2/_catalog` without credentials answers 200: every repository name is public."""
    check = "anonymous_catalog"
    catalog = facts.catalog
    if catalog is None:
        return CheckResult(check, Status.SKIPPED, "no --url to probe")
    if catalog.status is None:
        return CheckResult(check, Status.SKIPPED, catalog.error)
    detail = f"an anonymous GET {facts.url}/v2/_catalog answered {catalog.status}"
    if catalog.status == 200:
        return CheckResult(
            check, Status.FAIL, detail + ": the repository list is public", AUTH_REMEDY
        )
    return CheckResult(check, Status.PASS, detail)


def htpasswd_weak(facts: Facts, now: datetime) -> CheckResult:
    """Entries not hashed with bcrypt, or with a bcrypt cost under 10."""
    check = "htpasswd_weak"
    entries = facts.htpasswd
    if entries is None:
        return CheckResult(check, Status.SKIPPED, facts.htpasswd_problem)
    weak: list[str] = []
    for entry in entries:
        if entry.scheme != "bcrypt":
            weak.append(
                f"{entry.user} ({entry.scheme}, line {entry.line}; the registry rejects it)"
            )
        elif entry.cost is not None and entry.cost < MIN_BCRYPT_COST:
            weak.append(f"{entry.user} (bcrypt cost {entry.cost}, line {entry.line})")
    if weak:
        users = " ".join(sorted({w.split(" ", 1)[0] for w in weak}))
        return CheckResult(
            check,
            Status.FAIL,
            f"{len(weak)} of {len(entries)} entries in {facts.htpasswd_source} are weak: "
            + ", ".join(weak),
            f"htpasswd -B -C 12 {facts.htpasswd_source} USER (for {users})",
        )
    if not entries:
        return CheckResult(check, Status.WARN, f"{facts.htpasswd_source} has no entries")
    return CheckResult(
        check,
        Status.PASS,
        f"{len(entries)} entries in {facts.htpasswd_source}, all bcrypt with cost "
        f">= {MIN_BCRYPT_COST}",
    )


def credentials_stale(facts: Facts, now: datetime) -> CheckResult:
    """Accounts in htpasswd with no successful event in `stale_days`, or never seen."""
    check = "credentials_stale"
    if facts.htpasswd is None:
        return CheckResult(check, Status.SKIPPED, facts.htpasswd_problem)
    activity = facts.activity
    if activity is None:
        return CheckResult(check, Status.SKIPPED, facts.activity_problem)
    since = now - timedelta(days=facts.stale_days)
    stale: list[str] = []
    for entry in facts.htpasswd:
        last = activity.last_success.get(entry.user)
        if last is None:
            stale.append(f"{entry.user} (never seen)")
        elif last < since:
            stale.append(f"{entry.user} (last {last.date().isoformat()})")
    window = f"{facts.stale_days} days"
    listening = activity.listening_since
    if listening is None:
        note = "; the monitor has recorded no listening time yet"
    elif listening > since:
        note = f"; the monitor has listened only since {listening.date().isoformat()}"
    else:
        note = ""
    if stale:
        users = " ".join(item.split(" ", 1)[0] for item in stale)
        return CheckResult(
            check,
            Status.WARN,
            f"{len(stale)} of {len(facts.htpasswd)} accounts had no successful request in "
            f"{window}: {', '.join(stale)}{note}",
            f"remove or rotate them: htpasswd -D {facts.htpasswd_source} USER (for {users})",
        )
    return CheckResult(
        check,
        Status.PASS,
        f"every account in {facts.htpasswd_source} made a successful request in {window}",
    )
