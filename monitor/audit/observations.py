"""What the live probes observed, as plain data. No I/O."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class TlsObservation:
    """A handshake with the registry: the leaf certificate (DER), the negotiated version, and
    the first version below TLS 1.2 the server accepted ("" when it refused them all)."""

    certificate: bytes | None = None
    version: str = ""
    legacy_accepted: str = ""
    legacy_tested: bool = False
    error: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class HttpObservation:
    """An anonymous GET: the status, or the error that prevented one."""

    status: int | None = None
    error: str = ""
