"""Cleanup policies: parsed and validated from YAML, then handed to the planner.

A policy document is a list (or a mapping with a `policies` list) of entries like::

    - name: ci-builds
      repositories: ["team/**", "!team/secret"]   # globs; a leading ! excludes
      protect:
        tags: ["latest", "v*"]                     # pinned; default ["latest"]
        grace_hours: 48                            # recent pushes are safe; default 48
        min_tags: 1                                # never fewer tags per repository; default 1
      keep:                                        # any one keeps a tag
        most_recent: 5
        pulled_within_days: 30
        pushed_within_days: 7
        tags: ["release-*"]
      delete:                                      # each rule: all its conditions must hold
        - tags: ["pr-*"]
          not_pulled_days: 30
          older_than_days: 14
        - untagged: true
          older_than_days: 7
      pulls:                                       # which pulls count as use
        methods: [GET, HEAD]
        ignore_clients: [scanner, monitor]

Globs: `*` and `?` stay inside one path segment, `**` crosses `/`, `[...]` is a class.
Tags that name attachments (`sha256-<hex>`, `sha256-<hex>.sig|att|sbom`) are never matched.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import yaml

from monitor.cleanup.model import DeployedSet, PullRecord, TagRef
from monitor.errors import ConfigError
from monitor.events import Client

ATTACHMENT_TAG = re.compile(r"^sha256-[0-9a-f]{64}(\.(sig|att|sbom))?$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def _glob_regex(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                raise ValueError(f"unclosed [ in {pattern!r}")
            body = pattern[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


@dataclasses.dataclass(frozen=True, slots=True)
class Matcher:
    """Globs; a name matches when some include matches and no exclude (`!glob`) does."""

    patterns: tuple[str, ...]
    _include: re.Pattern[str] | None = dataclasses.field(compare=False, repr=False)
    _exclude: re.Pattern[str] | None = dataclasses.field(compare=False, repr=False)
    _each: tuple[tuple[str, re.Pattern[str]], ...] = dataclasses.field(compare=False, repr=False)

    @classmethod
    def of(cls, patterns: Iterable[str]) -> Matcher:
        pats = tuple(patterns)
        inc = [_glob_regex(p) for p in pats if not p.startswith("!")]
        exc = [_glob_regex(p[1:]) for p in pats if p.startswith("!")]
        each = tuple((p, re.compile(_glob_regex(p) + r"\Z")) for p in pats if not p.startswith("!"))
        return cls(
            pats,
            re.compile("(?:" + "|".join(inc) + r")\Z") if inc else None,
            re.compile("(?:" + "|".join(exc) + r")\Z") if exc else None,
            each,
        )

    def __call__(self, name: str) -> bool:
        if self._include is None or self._include.match(name) is None:
            return False
        return self._exclude is None or self._exclude.match(name) is None

    def first_include(self, name: str) -> str:
        """The first include pattern that matches `name` (for reason texts)."""
        for pattern, regex in self._each:
            if regex.match(name) is not None:
                return pattern
        return ""


@dataclasses.dataclass(frozen=True, slots=True)
class PullFilter:
    """Which recorded pulls count as use of a tag."""

    methods: frozenset[str] = frozenset({"GET", "HEAD"})
    ignore_clients: frozenset[Client] = frozenset({Client.SCANNER, Client.MONITOR})

    def counts(self, record: PullRecord) -> bool:
        return (
            record.http_method.upper() in self.methods and record.client not in self.ignore_clients
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Protection:
    tags: Matcher = dataclasses.field(default_factory=lambda: Matcher.of(["latest"]))
    grace: timedelta = timedelta(hours=48)
    min_tags: int = 1


@dataclasses.dataclass(frozen=True, slots=True)
class KeepRules:
    most_recent: int | None = None
    pulled_within: timedelta | None = None
    pushed_within: timedelta | None = None
    tags: Matcher | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class DeleteRule:
    """Conditions that must all hold for a tag (or, with `untagged`, a manifest) to go."""

    name: str
    tags: Matcher | None = None
    not_pulled_for: timedelta | None = None
    older_than: timedelta | None = None
    untagged: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    name: str
    repositories: Matcher
    protect: Protection = dataclasses.field(default_factory=Protection)
    keep: KeepRules = dataclasses.field(default_factory=KeepRules)
    delete: tuple[DeleteRule, ...] = ()
    pulls: PullFilter = dataclasses.field(default_factory=PullFilter)
    deployed: DeployedSet = dataclasses.field(default_factory=DeployedSet)


# --- parsing -------------------------------------------------------------------------------


def _mapping(key: str, value: Any, allowed: set[str]) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(key, f"expected a mapping, got {type(value).__name__}")
    for name in value:
        if name not in allowed:
            raise ConfigError(f"{key}.{name}", f"unknown key; expected one of {sorted(allowed)}")
    return value


def _globs(key: str, value: Any) -> Matcher:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(key, "expected a non-empty list of glob patterns")
    for item in value:
        if not isinstance(item, str) or item in ("", "!"):
            raise ConfigError(key, f"expected glob strings, got {item!r}")
    if all(item.startswith("!") for item in value):
        raise ConfigError(key, "needs at least one pattern that is not an exclusion (!)")
    try:
        return Matcher.of(value)
    except (ValueError, re.error) as exc:
        raise ConfigError(key, f"invalid glob: {exc}") from None


def _number(key: str, value: Any, *, integer: bool = False, minimum: float = 0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, f"expected a number, got {value!r}")
    if integer and not isinstance(value, int):
        raise ConfigError(key, f"expected a whole number, got {value!r}")
    if value < minimum:
        raise ConfigError(key, f"must be at least {minimum:g}, got {value!r}")
    return float(value)


def _days(key: str, value: Any) -> timedelta | None:
    return None if value is None else timedelta(days=_number(key, value))


def _pulls(key: str, raw: Any) -> PullFilter:
    section = _mapping(key, raw, {"methods", "ignore_clients"})
    result = PullFilter()
    if "methods" in section:
        methods = section["methods"]
        if not isinstance(methods, list) or not methods:
            raise ConfigError(f"{key}.methods", "expected a non-empty list of GET and/or HEAD")
        upper = {str(m).upper() for m in methods}
        if not upper <= {"GET", "HEAD"}:
            raise ConfigError(f"{key}.methods", f"only GET and HEAD, got {sorted(upper)}")
        result = dataclasses.replace(result, methods=frozenset(upper))
    if "ignore_clients" in section:
        clients = section["ignore_clients"]
        if not isinstance(clients, list):
            raise ConfigError(f"{key}.ignore_clients", "expected a list of client classes")
        try:
            parsed = frozenset(Client(str(c)) for c in clients)
        except ValueError:
            known = [c.value for c in Client]
            raise ConfigError(f"{key}.ignore_clients", f"client classes are {known}") from None
        result = dataclasses.replace(result, ignore_clients=parsed)
    return result


def _delete_rule(key: str, raw: Any, index: int) -> DeleteRule:
    section = _mapping(key, raw, {"name", "tags", "not_pulled_days", "older_than_days", "untagged"})
    untagged = section.get("untagged", False)
    if not isinstance(untagged, bool):
        raise ConfigError(f"{key}.untagged", "expected true or false")
    rule = DeleteRule(
        name=str(section.get("name", f"delete[{index}]")),
        tags=_globs(f"{key}.tags", section["tags"]) if "tags" in section else None,
        not_pulled_for=_days(f"{key}.not_pulled_days", section.get("not_pulled_days")),
        older_than=_days(f"{key}.older_than_days", section.get("older_than_days")),
        untagged=untagged,
    )
    if untagged and (rule.tags is not None or rule.not_pulled_for is not None):
        raise ConfigError(key, "an untagged rule takes only older_than_days")
    conditions = (rule.tags, rule.not_pulled_for, rule.older_than)
    if not untagged and all(c is None for c in conditions):
        raise ConfigError(
            key, "needs at least one condition: tags, not_pulled_days or older_than_days"
        )
    return rule


def _policy(key: str, raw: Any, deployed: DeployedSet) -> Policy:
    section = _mapping(key, raw, {"name", "repositories", "protect", "keep", "delete", "pulls"})
    if "name" not in section or not isinstance(section["name"], str) or not section["name"]:
        raise ConfigError(f"{key}.name", "required: a non-empty string")
    if "repositories" not in section:
        raise ConfigError(f"{key}.repositories", "required: a list of repository globs")
    protect_raw = _mapping(f"{key}.protect", section.get("protect"), _PROTECT_KEYS)
    protect = Protection()
    if "tags" in protect_raw:
        tags = protect_raw["tags"]
        matcher = Matcher.of([]) if tags == [] else _globs(f"{key}.protect.tags", tags)
        protect = dataclasses.replace(protect, tags=matcher)
    if "grace_hours" in protect_raw:
        hours = _number(f"{key}.protect.grace_hours", protect_raw["grace_hours"])
        protect = dataclasses.replace(protect, grace=timedelta(hours=hours))
    if "min_tags" in protect_raw:
        count = _number(f"{key}.protect.min_tags", protect_raw["min_tags"], integer=True)
        protect = dataclasses.replace(protect, min_tags=int(count))
    keep_raw = _mapping(f"{key}.keep", section.get("keep"), _KEEP_KEYS)
    most_recent = keep_raw.get("most_recent")
    keep = KeepRules(
        most_recent=None
        if most_recent is None
        else int(_number(f"{key}.keep.most_recent", most_recent, integer=True, minimum=1)),
        pulled_within=_days(f"{key}.keep.pulled_within_days", keep_raw.get("pulled_within_days")),
        pushed_within=_days(f"{key}.keep.pushed_within_days", keep_raw.get("pushed_within_days")),
        tags=_globs(f"{key}.keep.tags", keep_raw["tags"]) if "tags" in keep_raw else None,
    )
    rules_raw = section.get("delete", [])
    if not isinstance(rules_raw, list):
        raise ConfigError(f"{key}.delete", "expected a list of delete rules")
    rules = tuple(_delete_rule(f"{key}.delete[{i}]", r, i) for i, r in enumerate(rules_raw))
    return Policy(
        name=section["name"],
        repositories=_globs(f"{key}.repositories", section["repositories"]),
        protect=protect,
        keep=keep,
        delete=rules,
        pulls=_pulls(f"{key}.pulls", section.get("pulls")),
        deployed=deployed,
    )


_PROTECT_KEYS = {"tags", "grace_hours", "min_tags"}
_KEEP_KEYS = {"most_recent", "pulled_within_days", "pushed_within_days", "tags"}


def parse_policies(document: Any, *, deployed: DeployedSet | None = None) -> tuple[Policy, ...]:
    """Policies from an already-loaded YAML document; raises ConfigError naming the key."""
    if isinstance(document, dict) and set(document) == {"policies"}:
        document = document["policies"]
    if not isinstance(document, list):
        raise ConfigError("policies", "expected a list of policies")
    deployed = deployed if deployed is not None else DeployedSet()
    policies = tuple(_policy(f"policies[{i}]", p, deployed) for i, p in enumerate(document))
    names = [p.name for p in policies]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"policies[{i}].name", f"duplicate policy name {name!r}")
    return policies


def load_policies(text: str, *, deployed: DeployedSet | None = None) -> tuple[Policy, ...]:
    """Policies from YAML text; raises ConfigError naming the key."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("policies", f"not valid YAML: {exc}") from None
    return parse_policies(document, deployed=deployed)


def _strip_host(name: str) -> str:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return rest
    return name


def parse_image_references(text: str) -> DeployedSet:
    """A deployed set from lines of `repo:tag`, `repo@digest` or `repo:tag@digest`.

    A registry host in front (`host:5000/team/app:v1`) is dropped; `#` starts a comment;
    a reference with neither tag nor digest means `:latest`.
    """
    tags: set[TagRef] = set()
    digests: set[tuple[str, str]] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        ref = line.split("#", 1)[0].strip()
        if not ref:
            continue
        key = f"deployed line {number}"
        name, _, digest = ref.partition("@")
        if digest and DIGEST.match(digest) is None:
            raise ConfigError(key, f"invalid digest in {ref!r}")
        name = _strip_host(name)
        repo, tag = name, ""
        slash = name.rfind("/")
        colon = name.rfind(":")
        if colon > slash:
            repo, tag = name[:colon], name[colon + 1 :]
            if not tag:
                raise ConfigError(key, f"empty tag in {ref!r}")
        if not repo or repo.startswith("/") or repo.endswith("/") or " " in ref:
            raise ConfigError(key, f"not an image reference: {ref!r}")
        if digest:
            digests.add((repo, digest))
        if tag or not digest:
            tags.add(TagRef(repo, tag or "latest"))
    return DeployedSet(tags=frozenset(tags), digests=frozenset(digests))


def is_attachment(tag: str) -> bool:
    """True for the tags cosign/notation/OCI 1.1 use to attach artifacts to a digest."""
    return ATTACHMENT_TAG.match(tag) is not None
