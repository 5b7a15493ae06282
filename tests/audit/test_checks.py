"""Each check over the captures' real registry configs and variants of them (no network)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.audit.checks import CHECKS, evaluate
from monitor.audit.facts import Activity, Facts, LogFile
from monitor.audit.htpasswd import parse_htpasswd
from monitor.audit.model import CHECK_IDS, CheckResult, Status, accept, check_ids, failed
from monitor.audit.observations import HttpObservation, TlsObservation
from monitor.audit.x509 import CertificateInfo, pem_certificates, read_certificate
from monitor.errors import ConfigError
from tests.audit.support import (
    VERSIONS,
    capture_dir,
    capture_document,
    config_of,
    htpasswd_line,
    make_certificate,
    variant,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def facts_for(version: str, changes: dict[str, Any] | None = None, **fields: Any) -> Facts:
    """Facts holding the capture's config of `version` with `changes` applied."""
    config = config_of(variant(capture_document(version), changes or {}))
    return dataclasses.replace(Facts(config=config, config_problem=""), **fields)


def run(check: str, facts: Facts, now: datetime = NOW) -> CheckResult:
    result = CHECKS[check](facts, now)
    assert check == result.id
    return result


def cert(not_after: datetime, *, bits: int = 2048, self_signed: bool = True) -> CertificateInfo:
    return CertificateInfo(
        not_before=not_after - timedelta(days=365),
        not_after=not_after,
        self_signed=self_signed,
        key_type="rsa",
        key_bits=bits,
        common_name="registry.example",
    )


class TestReport:
    @pytest.mark.parametrize("version", VERSIONS)
    def test_capture_config_alone(self, version: str) -> None:
        """The capture's config without any other input: one row per check, in order; what
        needs the network or a readable htpasswd is skipped and says why."""
        results = evaluate(facts_for(version), NOW)

        assert CHECK_IDS == tuple(r.id for r in results)
        assert {
            "tls_disabled": Status.FAIL,
            "tls_cert_expiry": Status.SKIPPED,
            "tls_weak": Status.SKIPPED,
            "auth_disabled": Status.PASS,
            "anonymous_catalog": Status.SKIPPED,
            "htpasswd_weak": Status.SKIPPED,
            "credentials_stale": Status.SKIPPED,
            "listen_all_interfaces": Status.PASS,
            "debug_exposed": Status.PASS,
            "http_secret_missing": Status.PASS,
            "delete_enabled_without_cleanup": Status.WARN,
            "readonly_available": Status.PASS,
            "notifications_insecure": Status.PASS,
            "notification_token_in_logs": Status.SKIPPED,
        } == {r.id: r.status for r in results}
        assert all(r.detail for r in results)

    def test_nothing_given(self) -> None:
        """With no input at all every check is skipped, none fails."""
        results = evaluate(Facts(), NOW)

        assert {Status.SKIPPED} == {r.status for r in results}


class TestTls:
    def test_disabled_by_config_and_url(self) -> None:
        """No http.tls and a plain-http URL fail; an https URL in front passes (a proxy)."""
        plain = facts_for("distribution-3.1", url="http://127.0.0.1:5000")
        proxied = facts_for("distribution-3.1", url="https://registry.example")

        assert Status.FAIL == run("tls_disabled", plain).status
        assert "http.tls:" in run("tls_disabled", plain).remedy
        assert Status.PASS == run("tls_disabled", proxied).status
        assert "terminated in front" in run("tls_disabled", proxied).detail

    def test_enabled_in_config(self, tmp_path: Path) -> None:
        """A certificate and key in http.tls pass."""
        crt, key = make_certificate(tmp_path, days=90)
        changes = {"http.tls": {"certificate": str(crt), "key": str(key)}}

        assert Status.PASS == run("tls_disabled", facts_for("distribution-2.8", changes)).status

    @pytest.mark.parametrize(
        ("days", "expected"),
        [
            (90, Status.PASS),
            (29, Status.WARN),
            (7.5, Status.WARN),
            (5, Status.FAIL),
            (-1, Status.FAIL),
        ],
    )
    def test_expiry_thresholds(self, days: float, expected: Status) -> None:
        """Warn under 30 days left, fail under 7 or when expired; self-signed is noted."""
        facts = facts_for("distribution-2.8", configured_cert=cert(NOW + timedelta(days=days)))
        result = run("tls_cert_expiry", facts)

        assert expected == result.status
        assert "self-signed" in result.detail
        assert ("expired" in result.detail) == (days < 0)

    def test_served_certificate_wins(self) -> None:
        """The certificate the registry serves is judged, not the file (it may be stale)."""
        facts = facts_for(
            "distribution-2.8",
            url="https://127.0.0.1:5000",
            configured_cert=cert(NOW + timedelta(days=300)),
            served_cert=cert(NOW + timedelta(days=3), self_signed=False),
        )
        result = run("tls_cert_expiry", facts)

        assert Status.FAIL == result.status
        assert "served at https://127.0.0.1:5000" in result.detail
        assert "self-signed" not in result.detail

    def test_real_certificate_five_days(self, tmp_path: Path) -> None:
        """An openssl certificate made to expire in 5 days fails, read from its file."""
        crt, _key = make_certificate(tmp_path, days=5)
        info = read_certificate(pem_certificates(crt.read_bytes())[0])
        facts = facts_for("distribution-3.1", configured_cert=info)

        result = run("tls_cert_expiry", facts, datetime.now(UTC))

        assert Status.FAIL == result.status
        assert "in 4.9 days" in result.detail or "in 5.0 days" in result.detail

    def test_unreadable_certificate_is_skipped_with_why(self) -> None:
        """A certificate file on another host: skipped, and the detail says so."""
        facts = facts_for(
            "distribution-2.8",
            {"http.tls": {"certificate": "/nowhere/tls.crt", "key": "/nowhere/tls.key"}},
            configured_cert_problem="cannot read /nowhere/tls.crt (http.tls.certificate)",
        )
        result = run("tls_cert_expiry", facts)

        assert (Status.SKIPPED, "cannot read /nowhere/tls.crt (http.tls.certificate)") == (
            result.status,
            result.detail,
        )

    @pytest.mark.parametrize(
        ("fields", "changes", "expected", "remedy"),
        [
            (
                {"configured_cert": cert(NOW + timedelta(days=90), bits=1024)},
                {},
                Status.FAIL,
                "2048",
            ),
            (
                {"configured_cert": cert(NOW + timedelta(days=90))},
                {"http.tls.minimumtls": "tls1.0"},
                Status.FAIL,
                "minimumtls: tls1.2",
            ),
            (
                {
                    "tls": TlsObservation(
                        version="TLSv1.3", legacy_accepted="TLSv1.1", legacy_tested=True
                    ),
                    "url": "https://h",
                },
                {},
                Status.FAIL,
                "minimumtls: tls1.2",
            ),
            (
                {
                    "tls": TlsObservation(version="TLSv1.3", legacy_tested=True),
                    "url": "https://h",
                    "served_cert": cert(NOW + timedelta(days=90)),
                },
                {},
                Status.PASS,
                "",
            ),
        ],
    )
    def test_weak(
        self, fields: dict[str, Any], changes: dict[str, Any], expected: Status, remedy: str
    ) -> None:
        """RSA under 2048 bits, minimumtls below 1.2, or a legacy handshake accepted fail."""
        changes = {"http.tls": {"certificate": "/c.crt", "key": "/c.key"}, **changes}
        result = run("tls_weak", facts_for("distribution-2.8", changes, **fields))

        assert expected == result.status
        assert remedy in result.remedy


class TestAccess:
    def test_no_auth_section(self) -> None:
        """A config without auth fails with the line to add."""
        result = run("auth_disabled", facts_for("distribution-2.8", {"auth": None}))

        assert Status.FAIL == result.status
        assert result.remedy.startswith("auth: {htpasswd:")

    def test_silly_auth_is_not_auth(self) -> None:
        """`auth.silly` (any credentials pass) fails."""
        changes = {"auth": {"silly": {"realm": "r", "service": "s"}}}

        assert Status.FAIL == run("auth_disabled", facts_for("distribution-3.1", changes)).status

    @pytest.mark.parametrize(
        ("upload", "expected"),
        [(202, Status.FAIL), (401, Status.WARN), (None, Status.WARN)],
        ids=["anonymous-push", "public-pulls", "push-not-probed"],
    )
    def test_anonymous_v2_answers_200(self, upload: int | None, expected: Status) -> None:
        """A live anonymous GET /v2/ answering 200: with an anonymous upload accepted it fails
        even when the file has auth (the file given may not be the one the registry runs);
        pulls alone warn (a public registry)."""
        facts = facts_for(
            "distribution-3.1",
            url="http://h",
            v2=HttpObservation(status=200),
            upload=None if upload is None else HttpObservation(status=upload),
        )

        assert expected == run("auth_disabled", facts).status

    @pytest.mark.parametrize(("status", "expected"), [(200, Status.FAIL), (401, Status.PASS)])
    def test_anonymous_catalog(self, status: int, expected: Status) -> None:
        """GET /v2/_catalog without credentials: 200 fails, 401 passes."""
        facts = Facts(url="http://h", catalog=HttpObservation(status=status))

        assert expected == run("anonymous_catalog", facts).status

    def test_unreachable_is_skipped(self) -> None:
        """An unreachable registry skips the live checks with the error."""
        facts = Facts(url="http://h", catalog=HttpObservation(error="GET http://h failed"))
        result = run("anonymous_catalog", facts)

        assert (Status.SKIPPED, "GET http://h failed") == (result.status, result.detail)

    @pytest.mark.parametrize("version", VERSIONS)
    def test_capture_htpasswd_is_weak(self, version: str) -> None:
        """The captures' htpasswd (bcrypt cost 5) fails, naming both accounts."""
        entries = tuple(parse_htpasswd((capture_dir(version) / "htpasswd").read_text()))
        result = run("htpasswd_weak", Facts(htpasswd=entries, htpasswd_source="htpasswd"))

        assert Status.FAIL == result.status
        assert "alice (bcrypt cost 5, line 1), bob (bcrypt cost 5, line 2)" in result.detail
        assert "htpasswd -B -C 12 htpasswd USER (for alice bob)" == result.remedy

    def test_md5_entry_is_weak_and_strong_passes(self) -> None:
        """An MD5 entry fails; bcrypt at cost 10 and more passes."""
        strong = htpasswd_line("alice", "pw", "-B", "-C", "10")
        md5 = htpasswd_line("bob", "pw", "-m")
        weak = tuple(parse_htpasswd(f"{strong}\n{md5}\n"))
        good = tuple(parse_htpasswd(f"{strong}\n"))

        assert Status.FAIL == run("htpasswd_weak", Facts(htpasswd=weak)).status
        assert "bob (md5, line 2" in run("htpasswd_weak", Facts(htpasswd=weak)).detail
        assert Status.PASS == run("htpasswd_weak", Facts(htpasswd=good)).status

    def test_stale_and_never_seen(self) -> None:
        """Accounts without a successful request in stale_days, or never seen, are listed."""
        entries = tuple(parse_htpasswd("alice:x\nbob:x\ncarol:x\n"))
        activity = Activity(
            last_success={"alice": NOW - timedelta(days=3), "bob": NOW - timedelta(days=91)},
            listening_since=NOW - timedelta(days=400),
        )
        facts = Facts(htpasswd=entries, htpasswd_source="/h", activity=activity)
        result = run("credentials_stale", facts)

        assert Status.WARN == result.status
        assert "2 of 3 accounts" in result.detail
        assert "bob (last 2026-08-31), carol (never seen)" in result.detail
        assert "(for bob carol)" in result.remedy
        fresh = dataclasses.replace(facts, stale_days=120, htpasswd=entries[:2])
        assert Status.PASS == run("credentials_stale", fresh).status

    def test_short_listening_is_noted(self) -> None:
        """When the monitor has listened for less than stale_days, the detail says so."""
        entries = tuple(parse_htpasswd("alice:x\n"))
        activity = Activity(last_success={"alice": None}, listening_since=NOW - timedelta(days=2))
        result = run("credentials_stale", Facts(htpasswd=entries, activity=activity))

        assert "listened only since 2026-11-28" in result.detail


class TestExposure:
    @pytest.mark.parametrize(
        ("addr", "tls", "expected"),
        [
            ("0.0.0.0:5000", False, Status.FAIL),
            (":5000", False, Status.FAIL),
            ("[::]:5000", False, Status.FAIL),
            ("0.0.0.0:5000", True, Status.PASS),
            ("10.0.0.5:5000", False, Status.PASS),
        ],
    )
    def test_listen_all_interfaces(self, addr: str, tls: bool, expected: Status) -> None:
        """Every interface without TLS fails; with TLS, or one interface, passes."""
        changes: dict[str, Any] = {"http.addr": addr}
        if tls:
            changes["http.tls"] = {"certificate": "/c.crt", "key": "/c.key"}

        assert (
            expected == run("listen_all_interfaces", facts_for("distribution-2.8", changes)).status
        )

    @pytest.mark.parametrize(
        ("addr", "reachable", "expected"),
        [
            ("0.0.0.0:5001", None, Status.FAIL),
            (":5001", None, Status.FAIL),
            ("10.0.0.5:5001", None, Status.FAIL),
            ("127.0.0.1:5001", None, Status.PASS),
            ("localhost:5001", True, Status.FAIL),
        ],
    )
    def test_debug_exposed(self, addr: str, reachable: bool | None, expected: Status) -> None:
        """A debug listener off loopback, or answering on the public host, fails."""
        facts = facts_for(
            "distribution-3.1",
            {"http.debug": {"addr": addr}},
            url="https://registry.example",
            debug_reachable=reachable,
        )
        result = run("debug_exposed", facts)

        assert expected == result.status
        if expected is Status.FAIL:
            assert result.remedy.startswith("http.debug.addr: 127.0.0.1:5001")

    @pytest.mark.parametrize(
        ("secret", "expected"),
        [
            (None, Status.FAIL),
            ("asecretforlocaldevelopment", Status.FAIL),
            ("change-me-registry-http-secret", Status.FAIL),
            ("short", Status.WARN),
            ("fixture-shared-http-secret", Status.PASS),
        ],
    )
    def test_http_secret(self, secret: str | None, expected: Status) -> None:
        """Unset or a sample value (deploy/registry/config.yml's placeholder too) fails; a
        short one warns."""
        facts = facts_for("distribution-2.8", {"http.secret": secret})

        assert expected == run("http_secret_missing", facts).status

    def test_delete_and_cleanup(self) -> None:
        """Deletes enabled without a cleanup policy warn (informational, never fail)."""
        assert (
            Status.PASS
            == run(
                "delete_enabled_without_cleanup",
                facts_for("distribution-2.8", cleanup_configured=True),
            ).status
        )
        disabled = facts_for("distribution-2.8", {"storage.delete.enabled": False})
        assert Status.PASS == run("delete_enabled_without_cleanup", disabled).status

    def test_readonly(self) -> None:
        """Read-only mode is reported, with the line for garbage-collection windows."""
        writable = run("readonly_available", facts_for("distribution-2.8"))
        readonly = run(
            "readonly_available",
            facts_for("distribution-2.8", {"storage.maintenance": {"readonly": {"enabled": True}}}),
        )

        assert "storage.maintenance.readonly: {enabled: true}" == writable.remedy
        assert "pushes and deletes are refused" in readonly.detail

    @pytest.mark.parametrize(
        ("endpoint", "expected", "found"),
        [
            (
                {
                    "url": "http://monitor.example:5080/v1/notifications",
                    "headers": {"Authorization": ["Bearer t"]},
                },
                Status.FAIL,
                "in the clear",
            ),
            ({"url": "http://127.0.0.1:5080/v1/notifications"}, Status.FAIL, "no Authorization"),
            (
                {
                    "url": "https://monitor.example/v1/notifications",
                    "headers": {"Authorization": ["Bearer t"]},
                },
                Status.PASS,
                "authenticated",
            ),
        ],
    )
    def test_notifications(self, endpoint: dict[str, Any], expected: Status, found: str) -> None:
        """Cleartext to another host, or no Authorization header, fails."""
        changes = {"notifications.endpoints": [{"name": "monitor", **endpoint}]}
        result = run("notifications_insecure", facts_for("distribution-3.1", changes))

        assert expected == result.status
        assert found in result.detail

    def test_token_in_world_readable_log(self) -> None:
        """The capture's endpoint has a token header: a world-readable log fails."""
        logs = (LogFile("/var/log/registry.log", 0o100644), LogFile("/var/log/old.log", 0o100640))
        result = run("notification_token_in_logs", facts_for("distribution-2.8", log_files=logs))

        assert Status.FAIL == result.status
        assert "/var/log/registry.log (644)" in result.detail
        assert "chmod o-r /var/log/registry.log" == result.remedy
        private = facts_for("distribution-2.8", log_files=logs[1:])
        assert Status.PASS == run("notification_token_in_logs", private).status


class TestAccept:
    def test_accepted_failure_is_a_warning_that_says_so(self) -> None:
        """An accepted check's failure becomes a warning whose detail names the setting; other
        rows are untouched."""
        results = evaluate(facts_for("distribution-2.8", {"http.secret": None}), NOW)
        accepted = {r.id: r for r in accept(results, ["http_secret_missing", "tls_disabled"])}

        assert Status.WARN == accepted["http_secret_missing"].status
        assert accepted["http_secret_missing"].detail.startswith("accepted (audit.accept): ")
        assert [] == failed(accepted.values())
        assert {r.id: r for r in results}["auth_disabled"] == accepted["auth_disabled"]

    def test_unknown_check_is_refused(self) -> None:
        """A check id that does not exist is a ConfigError naming the setting."""
        with pytest.raises(ConfigError, match="unknown check 'tls_expired'") as bad:
            check_ids(["tls_expired"], key="audit.accept")
        assert "audit.accept" == bad.value.key
