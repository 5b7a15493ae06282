"""The file readers never raise anything but ParseError, whatever the bytes."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.audit.htpasswd import parse_htpasswd
from monitor.audit.registry_config import parse_registry_config
from monitor.audit.x509 import pem_certificates, read_certificate
from monitor.errors import ParseError


class TestReaders:
    @settings(max_examples=300)
    @given(st.binary(max_size=400))
    def test_certificate_reader(self, data: bytes) -> None:
        """Arbitrary bytes are a certificate or a ParseError."""
        with contextlib.suppress(ParseError):
            read_certificate(data)

    @settings(max_examples=300)
    @given(st.binary(max_size=60).map(lambda tail: b"\x30\x82\x01\x00\x30\x81\xf0" + tail))
    def test_truncated_certificate_shapes(self, data: bytes) -> None:
        """Bytes that start like a certificate and break off are a ParseError."""
        with contextlib.suppress(ParseError):
            read_certificate(data)

    @given(st.binary(max_size=300))
    def test_pem_reader(self, data: bytes) -> None:
        """Arbitrary bytes hold some PEM certificates or none, or raise ParseError."""
        with contextlib.suppress(ParseError):
            pem_certificates(
                b"-----BEGIN CERTIFICATE-----\n" + data + b"\n-----END CERTIFICATE-----"
            )

    @given(st.text(max_size=300))
    def test_htpasswd_reader(self, text: str) -> None:
        """Any text is entries or a ParseError naming the line."""
        try:
            entries = parse_htpasswd(text)
        except ParseError as exc:
            assert "htpasswd:" in exc.message
        else:
            assert all(e.user and ":" not in e.user for e in entries)

    @given(st.text(max_size=300))
    def test_registry_config_reader(self, text: str) -> None:
        """Any text is a config mapping or a ParseError."""
        with contextlib.suppress(ParseError):
            parse_registry_config(text)
