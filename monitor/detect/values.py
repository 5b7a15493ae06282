"""Readers of the values in the detection YAML files (rules and roles): each returns the value
or raises ConfigError naming the key."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import time, timedelta
from pathlib import Path
from typing import Any

import yaml

from monitor.errors import ConfigError

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def read_yaml(path: Path, key: str) -> Any:
    """The parsed YAML document in `path`; ConfigError naming `key` when unreadable."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(key, f"{path} is not valid YAML: {exc}") from exc


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(key: str, value: Any) -> timedelta:
    """Seconds (a number) or `<n>s|m|h|d` → timedelta; ConfigError naming `key` otherwise."""
    if isinstance(value, bool):
        raise ConfigError(key, f"expected a duration like 10m, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ConfigError(key, f"expected a duration like 30s, 10m, 1h or 7d, got {value!r}")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        raise ConfigError(key, "must not be negative")
    return timedelta(seconds=seconds)


def mapping(key: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected a mapping, got {type(value).__name__}")
    return value


def strings(key: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(key, "expected a list of strings")
    return list(value)


def networks(key: str, texts: list[str]) -> tuple[IpNetwork, ...]:
    networks: list[IpNetwork] = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ConfigError(key, f"not a CIDR: {text!r}") from None
    return tuple(networks)


def clock_time(key: str, value: Any) -> time:
    if isinstance(value, int) and not isinstance(value, bool):
        value = f"{value // 60:02d}:{value % 60:02d}"  # YAML 1.1 reads 09:00 as 540
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(key, f"expected HH:MM, got {value!r}") from None
