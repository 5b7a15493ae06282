"""Everything the checks look at, gathered once (files, live probes, the store). No I/O."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from monitor.audit.htpasswd import HtpasswdEntry
from monitor.audit.observations import HttpObservation, TlsObservation
from monitor.audit.registry_config import RegistryConfig
from monitor.audit.x509 import CertificateInfo

DEFAULT_STALE_DAYS = 90


@dataclasses.dataclass(frozen=True, slots=True)
class LogFile:
    """A registry log file and its permission bits."""

    path: str
    mode: int

    @property
    def world_readable(self) -> bool:
        return bool(self.mode & 0o004)


@dataclasses.dataclass(frozen=True, slots=True)
class Activity:
    """Per account, its last successful event (None: never seen), and since when the monitor
    has been listening (None: never)."""

    last_success: dict[str, datetime | None]
    listening_since: datetime | None


@dataclasses.dataclass(frozen=True)
class Facts:
    """What was read and observed. A `*_problem` text says why something could not be read
    (the checks that need it are then skipped with that reason)."""

    config: RegistryConfig | None = None
    config_problem: str = "no registry config given (--registry-config or audit.registry_config)"
    htpasswd: tuple[HtpasswdEntry, ...] | None = None
    htpasswd_source: str = ""
    htpasswd_problem: str = "no htpasswd file given (--htpasswd, or auth.htpasswd.path)"
    configured_cert: CertificateInfo | None = None
    configured_cert_problem: str = ""
    url: str | None = None
    tls: TlsObservation | None = None
    served_cert: CertificateInfo | None = None
    served_cert_problem: str = ""
    v2: HttpObservation | None = None
    upload: HttpObservation | None = None
    """An anonymous push start; probed only when the anonymous GET /v2/ answered 200."""
    catalog: HttpObservation | None = None
    debug_reachable: bool | None = None
    activity: Activity | None = None
    activity_problem: str = "the store was not read"
    stale_days: int = DEFAULT_STALE_DAYS
    log_files: tuple[LogFile, ...] = ()
    cleanup_configured: bool = False
