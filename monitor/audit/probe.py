"""The live registry behind a small interface: a TLS handshake, an anonymous GET, a TCP connect.

`LiveProbe` is the real implementation (the standard library's ssl and socket, httpx for
HTTP); tests run it against the real registry binaries. Nothing here raises for an
unreachable registry: the observation says what failed.
"""

from __future__ import annotations

import socket
import ssl
import warnings
from typing import Protocol

import httpx

from monitor.audit.observations import HttpObservation, TlsObservation

LEGACY_VERSIONS = (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1)
USER_AGENT = "registry-monitor-audit"


class Probe(Protocol):
    def tls(self, host: str, port: int) -> TlsObservation: ...

    def get(self, url: str) -> HttpObservation: ...

    def start_upload(self, url: str, repository: str) -> HttpObservation: ...

    def reachable(self, host: str, port: int) -> bool: ...


def _unverified(minimum: ssl.TLSVersion, maximum: ssl.TLSVersion) -> ssl.SSLContext:
    """A client context that reads any certificate (the point is to inspect it, not trust it)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 on purpose
        context.minimum_version = minimum
        context.maximum_version = maximum
    if maximum < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers("ALL:@SECLEVEL=0")  # let the client offer what old servers take
    return context


class LiveProbe:
    """Probes over the network with `timeout` seconds per connection."""

    def __init__(self, *, timeout: float = 5.0) -> None:
        self._timeout = timeout

    def _handshake(self, host: str, port: int, context: ssl.SSLContext) -> tuple[bytes | None, str]:
        with (
            socket.create_connection((host, port), timeout=self._timeout) as raw,
            context.wrap_socket(raw, server_hostname=host or None) as tls,
        ):
            return tls.getpeercert(binary_form=True), tls.version() or ""

    def tls(self, host: str, port: int) -> TlsObservation:
        """A TLS 1.2+ handshake, then TLS 1.1 and 1.0 ones; a server speaking only the old
        versions is observed through them."""
        certificate: bytes | None = None
        version, error = "", ""
        try:
            certificate, version = self._handshake(
                host, port, _unverified(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.MAXIMUM_SUPPORTED)
            )
        except ssl.SSLError as exc:
            error = f"TLS handshake with {host}:{port} failed: {exc}"
        except OSError as exc:
            return TlsObservation(error=f"TLS handshake with {host}:{port} failed: {exc}")
        legacy, tested = "", False
        for old in LEGACY_VERSIONS:
            try:
                context = _unverified(old, old)
            except (ValueError, ssl.SSLError):
                continue  # this OpenSSL cannot speak `old` at all
            tested = True
            try:
                old_certificate, old_version = self._handshake(host, port, context)
            except (OSError, ssl.SSLError):
                continue
            legacy = old.name.replace("_", ".")
            if certificate is None:
                certificate, version, error = old_certificate, old_version, ""
            break
        return TlsObservation(
            certificate=certificate,
            version=version,
            legacy_accepted=legacy,
            legacy_tested=tested,
            error=error,
        )

    def _client(self) -> httpx.Client:
        return httpx.Client(
            verify=False,  # noqa: S501 - anonymous probes, whatever the certificate
            timeout=self._timeout,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )

    def get(self, url: str) -> HttpObservation:
        try:
            with self._client() as client:
                return HttpObservation(status=client.get(url).status_code)
        except httpx.HTTPError as exc:
            return HttpObservation(error=f"GET {url} failed: {type(exc).__name__}: {exc}")

    def start_upload(self, url: str, repository: str) -> HttpObservation:
        """An anonymous blob upload start (`POST /v2/<repository>/blobs/uploads/`): 202 means
        anyone may push. An upload that starts is cancelled at once (DELETE its location): no
        blob, manifest or repository appears and no notification is sent; the registry's
        upload purging removes the empty upload directory."""
        start = f"{url}/v2/{repository}/blobs/uploads/"
        try:
            with self._client() as client:
                answer = client.post(start)
                location = answer.headers.get("Location")
                if answer.status_code == 202 and location:
                    client.delete(httpx.URL(start).join(location))
                return HttpObservation(status=answer.status_code)
        except httpx.HTTPError as exc:
            return HttpObservation(error=f"POST {start} failed: {type(exc).__name__}: {exc}")

    def reachable(self, host: str, port: int) -> bool:
        try:
            with socket.create_connection((host, port), timeout=self._timeout):
                return True
        except OSError:
            return False
