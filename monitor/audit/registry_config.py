"""A read-only view of the registry's `config.yml` (CNCF distribution 2.x and 3.x). No I/O.

Only the keys the checks read are interpreted; everything else is left alone. The registry
also reads `REGISTRY_<SECTION>_<KEY>` environment overrides, which a file cannot show.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import yaml

from monitor.errors import ParseError

ALL_INTERFACES = frozenset({"", "0.0.0.0", "::", "[::]"})


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoint:
    """One `notifications.endpoints` entry."""

    name: str
    url: str
    header_names: frozenset[str]
    disabled: bool

    @property
    def has_authorization(self) -> bool:
        return "authorization" in self.header_names


def split_addr(addr: str) -> tuple[str, int | None]:
    """`host:port` (host may be empty or a bracketed IPv6 address) → (host, port)."""
    text = addr.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    elif text.count(":") == 1:
        host, port = text.split(":", 1)
    elif ":" in text:  # a bare IPv6 address without a port
        return text, None
    else:
        host, port = text, ""
    return host, int(port) if port.isdigit() else None


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def listens_everywhere(host: str) -> bool:
    return host.strip() in ALL_INTERFACES


@dataclasses.dataclass(frozen=True)
class RegistryConfig:
    """The parsed document and accessors for what the checks need."""

    document: Mapping[str, Any]
    source: str = "config.yml"

    def get(self, *keys: str) -> Any:
        """The value at `keys` (e.g. "http", "tls", "certificate"), or None when absent."""
        node: Any = self.document
        for key in keys:
            if not isinstance(node, Mapping) or key not in node:
                return None
            node = node[key]
        return node

    def _text(self, *keys: str) -> str | None:
        value = self.get(*keys)
        if value is None or isinstance(value, Mapping | list):
            return None
        return str(value)

    @property
    def http_addr(self) -> str | None:
        return self._text("http", "addr")

    @property
    def http_net(self) -> str:
        return (self._text("http", "net") or "tcp").lower()

    @property
    def tls_certificate(self) -> str | None:
        return self._text("http", "tls", "certificate")

    @property
    def tls_letsencrypt(self) -> bool:
        return bool(self._text("http", "tls", "letsencrypt", "cachefile"))

    @property
    def tls_enabled(self) -> bool:
        return self.tls_certificate is not None or self.tls_letsencrypt

    @property
    def tls_minimum(self) -> str | None:
        return self._text("http", "tls", "minimumtls")

    @property
    def debug_addr(self) -> str | None:
        return self._text("http", "debug", "addr")

    @property
    def http_secret(self) -> str | None:
        secret = self._text("http", "secret")
        return secret if secret else None

    @property
    def auth_kinds(self) -> tuple[str, ...]:
        """The configured `auth` providers (htpasswd, token, silly), in file order."""
        auth = self.get("auth")
        if not isinstance(auth, Mapping):
            return ()
        return tuple(str(kind) for kind in auth)

    @property
    def htpasswd_path(self) -> str | None:
        return self._text("auth", "htpasswd", "path")

    @property
    def delete_enabled(self) -> bool:
        return self.get("storage", "delete", "enabled") is True

    @property
    def readonly_enabled(self) -> bool:
        return self.get("storage", "maintenance", "readonly", "enabled") is True

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        items = self.get("notifications", "endpoints")
        if not isinstance(items, list):
            return ()
        out: list[Endpoint] = []
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                continue
            headers = item.get("headers")
            names = frozenset(
                str(name).lower() for name in (headers if isinstance(headers, Mapping) else {})
            )
            out.append(
                Endpoint(
                    name=str(item.get("name") or f"#{index + 1}"),
                    url=str(item.get("url") or ""),
                    header_names=names,
                    disabled=item.get("disabled") is True,
                )
            )
        return tuple(out)


def parse_registry_config(text: str, *, source: str = "config.yml") -> RegistryConfig:
    """The registry configuration in `text`; ParseError when it is not a YAML mapping."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParseError("invalid_registry_config", f"{source} is not valid YAML: {exc}") from exc
    if not isinstance(document, Mapping):
        raise ParseError("invalid_registry_config", f"{source} must hold a YAML mapping")
    return RegistryConfig(document=document, source=source)


def url_host(url: str) -> tuple[str, int | None, str]:
    """(host, port, scheme) of an http(s) URL; the port defaults by scheme."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"https": 443, "http": 80}.get(scheme)
    return parts.hostname or "", port, scheme
