"""Detection rule configuration: defaults for every rule, overridden from a YAML document.

    business_hours: {timezone: Europe/Berlin, weekdays: [mon, tue, wed, thu, fri],
                     start: "09:00", end: "18:00"}
    allow: {cidrs: [10.0.0.0/8], users: [ci-bot], clients: [monitor]}   # every rule
    rules:   # a rule's own `allow` replaces its default one (clients: [monitor, scanner])
      brute_force_account: {threshold: 5, window: 10m, cooldown: 10m, severity: warning,
                            mode: alert, group_by: [actor], allow: {...}}
      mass_pull: {threshold: 10, critical_threshold: 25, max_bytes: 10737418240}

Durations are seconds or `<n>s|m|h|d`. Unknown keys are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping, Sequence
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from monitor.alerts import Mode, Severity
from monitor.detect import values
from monitor.errors import ConfigError
from monitor.events import Client, Event

IpNetwork = values.IpNetwork


GROUP_FIELDS = ("actor", "remote_ip", "repository", "tag", "action", "client")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclasses.dataclass(frozen=True)
class AllowList:
    """Events matching any entry are ignored by the rule (pre-detection suppression)."""

    cidrs: tuple[IpNetwork, ...] = ()
    users: frozenset[str] = frozenset()
    clients: frozenset[Client] = frozenset()

    def merged(self, other: AllowList) -> AllowList:
        return AllowList(
            cidrs=self.cidrs + other.cidrs,
            users=self.users | other.users,
            clients=self.clients | other.clients,
        )

    def matches(self, event: Event) -> bool:
        if event.actor is not None and event.actor in self.users:
            return True
        if event.client in self.clients:
            return True
        if self.cidrs and event.remote_ip:
            try:
                address = ipaddress.ip_address(event.remote_ip)
            except ValueError:
                return False
            return any(address in network for network in self.cidrs)
        return False


@dataclasses.dataclass(frozen=True)
class BusinessHours:
    timezone: str = "UTC"
    weekdays: frozenset[int] = frozenset(range(5))
    start: time = time(9, 0)
    end: time = time(18, 0)

    def contains(self, moment: datetime) -> bool:
        """Whether the aware `moment` falls inside business hours in the configured zone."""
        local = moment.astimezone(ZoneInfo(self.timezone))
        if local.weekday() not in self.weekdays:
            return False
        clock = local.time().replace(tzinfo=None)
        if self.start <= self.end:
            return self.start <= clock < self.end
        return clock >= self.start or clock < self.end


@dataclasses.dataclass(frozen=True)
class RuleConfig:
    name: str
    threshold: int
    window: timedelta
    cooldown: timedelta
    severity: Severity
    mode: Mode
    group_by: tuple[str, ...]
    allow: AllowList
    options: Mapping[str, Any]

    def option(self, key: str) -> Any:
        return self.options[key]


@dataclasses.dataclass(frozen=True)
class _Default:
    threshold: int
    window: str
    cooldown: str
    severity: Severity
    mode: Mode
    group_by: tuple[str, ...]
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


_W, _C, _I = Severity.WARNING, Severity.CRITICAL, Severity.INFO
_A, _S = Mode.ALERT, Mode.SHADOW
# Every rule ignores these clients unless its own `allow` says otherwise: the monitor's own
# requests (cleanup, restore, reconciliation) and vulnerability scanners are not suspicious.
QUIET_CLIENTS = frozenset({Client.MONITOR, Client.SCANNER})

# Anchors: fail2ban maxretry 5 / findtime 10m / bantime 10m; CrowdSec http-probing
# (10 distinct, blackhole 5m) and ssh-bf_user-enum (5 distinct users); Elastic GitHub clone
# rules (10 distinct repositories in 6m, a higher tier at 25); Datadog new value (learning 7d,
# forget 28d); the success-after-failures conditional of CrowdSec (failures > 5, then success).
DEFAULTS: dict[str, _Default] = {
    "brute_force_account": _Default(5, "10m", "10m", _W, _A, ("actor",)),
    "brute_force_address": _Default(5, "10m", "10m", _W, _A, ("remote_ip",)),
    "password_spray": _Default(5, "10m", "10m", _W, _A, ("remote_ip",)),
    "success_after_failures": _Default(5, "10m", "1h", _C, _A, ("actor", "remote_ip")),
    "enumeration": _Default(10, "5m", "5m", _W, _A, ("remote_ip",)),
    "mass_pull": _Default(
        10,
        "6m",
        "1h",
        _W,
        _A,
        ("actor",),
        {"critical_threshold": 25, "max_bytes": 10 * 1024**3, "count_manifest_heads": False},
    ),
    "new_source": _Default(
        1,
        "1d",
        "1d",
        _I,
        _S,
        ("actor", "remote_ip"),
        options={"learning_period": "7d", "forget_after": "28d", "max_addresses": 256},
    ),
    "out_of_role": _Default(1, "1h", "1h", _C, _A, ("actor", "repository", "action")),
    "off_hours_write": _Default(1, "1h", "1h", _I, _S, ("actor",)),
    "tag_moved": _Default(
        1, "1h", "0s", _C, _A, ("repository", "tag"), options={"patterns": ["v*", "[0-9]*"]}
    ),
    "delete_outside_cleanup": _Default(
        1, "10m", "10m", _W, _A, ("actor", "repository"), options={"cleanup_accounts": []}
    ),
    "source_not_allowed": _Default(1, "1h", "1h", _C, _A, ("remote_ip",), options={"networks": []}),
}

_COMMON_KEYS = frozenset(
    {"threshold", "window", "cooldown", "severity", "mode", "group_by", "allow"}
)
_FIXED_GROUPS = {"success_after_failures": frozenset({"actor", "remote_ip"})}


@dataclasses.dataclass(frozen=True)
class DetectConfig:
    rules: Mapping[str, RuleConfig]
    business_hours: BusinessHours = BusinessHours()
    allow: AllowList = AllowList()


def _allow(key: str, value: Any) -> AllowList:
    document = values.mapping(key, value)
    for name in document:
        if name not in {"cidrs", "users", "clients"}:
            raise ConfigError(f"{key}.{name}", "unknown setting")
    cidrs = values.networks(f"{key}.cidrs", values.strings(f"{key}.cidrs", document.get("cidrs")))
    clients: set[Client] = set()
    for text in values.strings(f"{key}.clients", document.get("clients")):
        try:
            clients.add(Client(text))
        except ValueError:
            known = ", ".join(c.value for c in Client)
            raise ConfigError(
                f"{key}.clients", f"unknown client {text!r}; one of {known}"
            ) from None
    users = frozenset(values.strings(f"{key}.users", document.get("users")))
    return AllowList(cidrs=cidrs, users=users, clients=frozenset(clients))


def _business_hours(value: Any) -> BusinessHours:
    document = values.mapping("business_hours", value)
    for name in document:
        if name not in {"timezone", "weekdays", "start", "end"}:
            raise ConfigError(f"business_hours.{name}", "unknown setting")
    default = BusinessHours()
    zone = str(document.get("timezone", default.timezone))
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("business_hours.timezone", f"unknown IANA time zone {zone!r}") from None
    weekdays = default.weekdays
    if "weekdays" in document:
        names = [
            n.lower()[:3] for n in values.strings("business_hours.weekdays", document["weekdays"])
        ]
        for name in names:
            if name not in WEEKDAYS:
                raise ConfigError("business_hours.weekdays", f"unknown weekday {name!r}")
        weekdays = frozenset(WEEKDAYS.index(n) for n in names)
    start = values.clock_time("business_hours.start", document.get("start", "09:00"))
    end = values.clock_time("business_hours.end", document.get("end", "18:00"))
    if start == end:
        raise ConfigError("business_hours.end", "must differ from start")
    return BusinessHours(timezone=zone, weekdays=weekdays, start=start, end=end)


def _option(key: str, default: Any, value: Any) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(key, f"expected a non-negative integer, got {value!r}")
        return value
    if isinstance(default, list):
        return values.strings(key, value)
    return values.parse_duration(key, value)


def _rule(name: str, document: Mapping[str, Any], allow: AllowList) -> RuleConfig:
    base = DEFAULTS[name]
    prefix = f"rules.{name}"
    for key in document:
        if key not in _COMMON_KEYS and key not in base.options:
            raise ConfigError(f"{prefix}.{key}", "unknown setting")
    threshold = document.get("threshold", base.threshold)
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise ConfigError(f"{prefix}.threshold", f"expected an integer >= 1, got {threshold!r}")
    window = values.parse_duration(f"{prefix}.window", document.get("window", base.window))
    if window <= timedelta(0):
        raise ConfigError(f"{prefix}.window", "must be positive")
    cooldown = values.parse_duration(f"{prefix}.cooldown", document.get("cooldown", base.cooldown))
    try:
        severity = Severity(document.get("severity", base.severity))
    except ValueError:
        raise ConfigError(f"{prefix}.severity", "expected info, warning or critical") from None
    try:
        mode = Mode(document.get("mode", base.mode))
    except ValueError:
        raise ConfigError(f"{prefix}.mode", "expected alert, shadow or off") from None
    group_by = tuple(values.strings(f"{prefix}.group_by", document.get("group_by", base.group_by)))
    allowed = _FIXED_GROUPS.get(name, frozenset(GROUP_FIELDS))
    if not group_by or any(field not in allowed for field in group_by):
        choices = ", ".join(sorted(allowed))
        raise ConfigError(f"{prefix}.group_by", f"expected a non-empty list from {choices}")
    rule_allow = AllowList(clients=QUIET_CLIENTS)
    if "allow" in document:
        rule_allow = _allow(f"{prefix}.allow", document["allow"])
    options = {
        key: _option(f"{prefix}.{key}", default, document.get(key, default))
        for key, default in base.options.items()
    }
    if "networks" in options:
        options["networks"] = values.networks(f"{prefix}.networks", options["networks"])
    return RuleConfig(
        name=name,
        threshold=threshold,
        window=window,
        cooldown=cooldown,
        severity=severity,
        mode=mode,
        group_by=group_by,
        allow=rule_allow.merged(allow),
        options=options,
    )


def parse_detect_config(document: Any, *, allow_cidrs: Sequence[str] = ()) -> DetectConfig:
    """A validated DetectConfig from a parsed YAML document (None means all defaults).

    `allow_cidrs` (the `detect.allow_cidrs` setting) are added to the networks of
    `source_not_allowed`: with any, access from outside them fires it.
    """
    root = values.mapping("detect", document)
    for key in root:
        if key not in {"business_hours", "allow", "rules"}:
            raise ConfigError(str(key), "unknown setting")
    allow = _allow("allow", root.get("allow"))
    rules_doc = values.mapping("rules", root.get("rules"))
    for name in rules_doc:
        if name not in DEFAULTS:
            raise ConfigError(f"rules.{name}", f"unknown rule; one of {', '.join(DEFAULTS)}")
    rules = {
        name: _rule(name, values.mapping(f"rules.{name}", rules_doc.get(name)), allow)
        for name in DEFAULTS
    }
    if allow_cidrs:
        source = rules["source_not_allowed"]
        extra = values.networks("detect.allow_cidrs", list(allow_cidrs))
        networks = source.option("networks") + extra
        rules["source_not_allowed"] = dataclasses.replace(
            source, options={**source.options, "networks": networks}
        )
    return DetectConfig(
        rules=rules, business_hours=_business_hours(root.get("business_hours")), allow=allow
    )


def default_detect_config() -> DetectConfig:
    return parse_detect_config(None)


def load_detect_config(path: Path | None, *, allow_cidrs: Sequence[str] = ()) -> DetectConfig:
    """Rules from the YAML file at `path`, or the defaults when `path` is None."""
    document = None if path is None else values.read_yaml(path, "detect.rules_file")
    return parse_detect_config(document, allow_cidrs=allow_cidrs)
