"""Reading the registry's files: config.yml, htpasswd and certificates."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.audit.htpasswd import parse_htpasswd
from monitor.audit.registry_config import (
    is_loopback,
    listens_everywhere,
    parse_registry_config,
    split_addr,
)
from monitor.audit.x509 import pem_certificates, read_certificate
from monitor.errors import ParseError
from tests.audit.support import VERSIONS, capture_dir, htpasswd_line, make_certificate


class TestRegistryConfig:
    @pytest.mark.parametrize("version", VERSIONS)
    def test_capture_config(self, version: str) -> None:
        """The captures' configs read as they are: loopback, htpasswd, deletes, one endpoint."""
        text = (capture_dir(version) / "config-text.yml").read_text()
        config = parse_registry_config(text)

        assert config.http_addr is not None and config.http_addr.startswith("127.0.0.1:")
        assert ("htpasswd",) == config.auth_kinds
        assert config.delete_enabled
        assert not config.tls_enabled
        assert config.debug_addr is None
        assert "fixture-shared-http-secret" == config.http_secret
        [endpoint] = config.endpoints
        assert ("monitor", True) == (endpoint.name, endpoint.has_authorization)

    def test_not_a_mapping(self) -> None:
        """A file that is not a YAML mapping is refused with the reason."""
        with pytest.raises(ParseError, match="mapping"):
            parse_registry_config("- a\n- b\n")
        with pytest.raises(ParseError, match="not valid YAML"):
            parse_registry_config("http: {addr: [\n")

    @pytest.mark.parametrize(
        ("addr", "expected"),
        [
            (":5000", ("", 5000)),
            ("0.0.0.0:5000", ("0.0.0.0", 5000)),
            ("[::]:5001", ("::", 5001)),
            ("localhost:5001", ("localhost", 5001)),
            ("registry.example", ("registry.example", None)),
        ],
    )
    def test_split_addr(self, addr: str, expected: tuple[str, int | None]) -> None:
        """Listen addresses split as Go writes them (empty host is every interface)."""
        assert expected == split_addr(addr)

    def test_loopback_and_everywhere(self) -> None:
        """Loopback is localhost, 127/8 and ::1; every interface is 0.0.0.0, :: or no host."""
        assert [True, True, True, False] == [
            is_loopback(h) for h in ("localhost", "127.0.0.2", "::1", "10.0.0.1")
        ]
        assert [True, True, True, False] == [
            listens_everywhere(h) for h in ("", "0.0.0.0", "::", "127.0.0.1")
        ]


class TestHtpasswd:
    @pytest.mark.parametrize("version", VERSIONS)
    def test_capture_htpasswd(self, version: str) -> None:
        """The captures' htpasswd files: bcrypt at cost 5 (what `htpasswd -B` makes)."""
        entries = parse_htpasswd((capture_dir(version) / "htpasswd").read_text())

        assert [("alice", "bcrypt", 5), ("bob", "bcrypt", 5)] == [
            (e.user, e.scheme, e.cost) for e in entries
        ]

    def test_schemes_made_by_apache_htpasswd(self) -> None:
        """Every scheme Apache's htpasswd writes is told apart, with the line number."""
        text = "\n".join(
            [
                "# accounts",
                htpasswd_line("strong", "pw", "-B", "-C", "12"),
                htpasswd_line("md5", "pw", "-m"),
                htpasswd_line("sha", "pw", "-s"),
                "",
                "plain:pw",
            ]
        )
        entries = parse_htpasswd(text)

        assert [
            ("strong", "bcrypt", 12, 2),
            ("md5", "md5", None, 3),
            ("sha", "sha1", None, 4),
            ("plain", "plain", None, 6),
        ] == [(e.user, e.scheme, e.cost, e.line) for e in entries]

    def test_line_without_colon(self) -> None:
        """A line that is not user:hash is refused, naming the line, as the registry does."""
        with pytest.raises(ParseError, match="htpasswd:2"):
            parse_htpasswd("alice:$apr1$x$y\nbob\n")


class TestCertificate:
    def test_self_signed_rsa(self, tmp_path: Path) -> None:
        """An `openssl req -x509` certificate: its expiry, key size, name, and self-signed."""
        cert, _key = make_certificate(tmp_path, days=5)
        [der] = pem_certificates(cert.read_bytes())
        info = read_certificate(der)

        now = datetime.now(UTC)
        assert timedelta(days=4, hours=23) < info.not_after - now <= timedelta(days=5)
        assert ("rsa", 2048, "127.0.0.1", True) == (
            info.key_type,
            info.key_bits,
            info.common_name,
            info.self_signed,
        )

    @pytest.mark.parametrize(
        ("key", "expected"), [("rsa:1024", ("rsa", 1024)), ("ec", ("ec", 256))]
    )
    def test_key_kinds(self, tmp_path: Path, key: str, expected: tuple[str, int]) -> None:
        """Small RSA keys are measured; an EC P-256 key is 256 bits."""
        if key == "ec":
            params = tmp_path / "p256.pem"
            subprocess.run(
                ["openssl", "ecparam", "-name", "prime256v1", "-out", str(params)],
                check=True,
                capture_output=True,
                timeout=60,
            )
            key = f"ec:{params}"
        cert, _key = make_certificate(tmp_path, days=30, key=key)
        info = read_certificate(pem_certificates(cert.read_bytes())[0])

        assert expected == (info.key_type, info.key_bits)

    def test_signed_by_a_ca_is_not_self_signed(self, tmp_path: Path) -> None:
        """A leaf signed by another certificate is not self-signed."""
        ca, ca_key = make_certificate(tmp_path, days=30, name="ca")
        subprocess.run(
            [
                "openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=registry",
                "-keyout", str(tmp_path / "leaf.key"), "-out", str(tmp_path / "leaf.csr"),
            ],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        subprocess.run(
            [
                "openssl", "x509", "-req", "-in", str(tmp_path / "leaf.csr"), "-CA", str(ca),
                "-CAkey", str(ca_key), "-CAcreateserial", "-days", "30",
                "-out", str(tmp_path / "leaf.crt"),
            ],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        info = read_certificate(pem_certificates((tmp_path / "leaf.crt").read_bytes())[0])

        assert (False, "registry") == (info.self_signed, info.common_name)

    def test_garbage_is_refused(self) -> None:
        """Bytes that are not a certificate raise ParseError, never anything else."""
        for data in (b"", b"\x30\x05\x02\x01", b"\x30\x03\x02\x01\x01", b"not der at all"):
            with pytest.raises(ParseError):
                read_certificate(data)
