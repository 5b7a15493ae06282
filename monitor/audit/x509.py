"""What the checks need from an X.509 certificate, read from its DER bytes. No I/O.

A small DER reader (RFC 5280 structure): expiry, self-signed (issuer equals subject), the
subject's common name and the public key's algorithm and size. Nothing is verified here.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from datetime import UTC, datetime

from monitor.errors import ParseError

_SEQUENCE, _SET, _INTEGER, _BIT_STRING, _OID = 0x30, 0x31, 0x02, 0x03, 0x06
_UTC_TIME, _GENERALIZED_TIME, _VERSION = 0x17, 0x18, 0xA0

_RSA = bytes.fromhex("2a864886f70d010101")
_EC = bytes.fromhex("2a8648ce3d0201")
_ED25519, _ED448 = bytes.fromhex("2b6570"), bytes.fromhex("2b6571")
_CURVES = {
    bytes.fromhex("2a8648ce3d030107"): 256,  # P-256
    bytes.fromhex("2b81040022"): 384,  # P-384
    bytes.fromhex("2b81040023"): 521,  # P-521
}
_COMMON_NAME = bytes.fromhex("550403")
_PEM = re.compile(
    rb"-----BEGIN CERTIFICATE-----\s*(?P<body>[A-Za-z0-9+/=\s]+?)\s*-----END CERTIFICATE-----"
)


@dataclasses.dataclass(frozen=True, slots=True)
class CertificateInfo:
    not_before: datetime
    not_after: datetime
    self_signed: bool
    key_type: str
    """rsa, ec, ed25519, ed448 or unknown."""
    key_bits: int
    common_name: str = ""


def _tlv(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the element at `at`."""
    if at + 2 > len(data):
        raise ParseError("invalid_certificate", "truncated DER element")
    tag, length = data[at], data[at + 1]
    start = at + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or start + count > len(data):
            raise ParseError("invalid_certificate", "unsupported DER length")
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    end = start + length
    if end > len(data):
        raise ParseError("invalid_certificate", "truncated DER element")
    return tag, start, end


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    at = start
    while at < end:
        element = _tlv(data, at)
        out.append(element)
        at = element[2]
    return out


def _expect(element: tuple[int, int, int], tag: int, what: str) -> tuple[int, int, int]:
    if element[0] != tag:
        raise ParseError("invalid_certificate", f"expected {what}")
    return element


def _time(data: bytes, element: tuple[int, int, int]) -> datetime:
    tag, start, end = element
    text = data[start:end].decode("ascii", "replace")
    try:
        if tag == _UTC_TIME:
            moment = datetime.strptime(text, "%y%m%d%H%M%SZ")  # noqa: DTZ007 - UTC by RFC 5280
        elif tag == _GENERALIZED_TIME:
            moment = datetime.strptime(text, "%Y%m%d%H%M%SZ")  # noqa: DTZ007 - UTC by RFC 5280
        else:
            raise ParseError("invalid_certificate", "expected a validity time")
    except ValueError as exc:
        raise ParseError("invalid_certificate", f"bad validity time {text!r}") from exc
    return moment.replace(tzinfo=UTC)


def _common_name(data: bytes, name: tuple[int, int, int]) -> str:
    for rdn in _children(data, name[1], name[2]):
        for attribute in _children(data, rdn[1], rdn[2]):
            parts = _children(data, attribute[1], attribute[2])
            if len(parts) == 2 and data[parts[0][1] : parts[0][2]] == _COMMON_NAME:
                return data[parts[1][1] : parts[1][2]].decode("utf-8", "replace")
    return ""


def _public_key(data: bytes, spki: tuple[int, int, int]) -> tuple[str, int]:
    algorithm, key = _children(data, spki[1], spki[2])[:2]
    parts = _children(data, algorithm[1], algorithm[2])
    oid = data[parts[0][1] : parts[0][2]]
    if oid == _RSA:
        _expect(key, _BIT_STRING, "a public key bit string")
        rsa = _expect(_tlv(data, key[1] + 1), _SEQUENCE, "an RSA public key")
        modulus = _expect(_children(data, rsa[1], rsa[2])[0], _INTEGER, "an RSA modulus")
        return "rsa", int.from_bytes(data[modulus[1] : modulus[2]], "big").bit_length()
    if oid == _EC:
        curve = data[parts[1][1] : parts[1][2]] if len(parts) > 1 else b""
        return "ec", _CURVES.get(curve, 0)
    if oid == _ED25519:
        return "ed25519", 256
    if oid == _ED448:
        return "ed448", 456
    return "unknown", 0


def read_certificate(der: bytes) -> CertificateInfo:
    """The facts of the DER certificate `der`; ParseError when it is not one."""
    try:
        cert = _expect(_tlv(der, 0), _SEQUENCE, "a certificate")
        tbs = _expect(_children(der, cert[1], cert[2])[0], _SEQUENCE, "a TBS certificate")
        fields = _children(der, tbs[1], tbs[2])
        if fields and fields[0][0] == _VERSION:
            fields = fields[1:]
        _serial, _signature, issuer, validity, subject, spki = fields[:6]
        times = _children(der, validity[1], validity[2])
        key_type, key_bits = _public_key(der, _expect(spki, _SEQUENCE, "a public key info"))
        return CertificateInfo(
            not_before=_time(der, times[0]),
            not_after=_time(der, times[1]),
            self_signed=der[issuer[1] : issuer[2]] == der[subject[1] : subject[2]],
            key_type=key_type,
            key_bits=key_bits,
            common_name=_common_name(der, subject),
        )
    except (IndexError, ValueError) as exc:
        raise ParseError("invalid_certificate", f"not an X.509 certificate: {exc}") from exc


def pem_certificates(text: bytes) -> list[bytes]:
    """The DER bytes of every certificate in a PEM file, leaf first."""
    out: list[bytes] = []
    for match in _PEM.finditer(text):
        body = re.sub(rb"\s+", b"", match.group("body"))
        try:
            out.append(base64.b64decode(body, validate=True))
        except ValueError as exc:
            raise ParseError("invalid_certificate", "a PEM block is not base64") from exc
    return out
