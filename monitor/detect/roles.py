"""Who may write where: accounts mapped to a role and repository patterns, from YAML.

    accounts:
      ci-bot:  {role: admin}                                  # everything
      alice:   {role: developer, repositories: ["team/*"]}    # push and pull on its patterns
      bob:     {role: viewer, repositories: ["*"]}            # pull only

Patterns are shell-style (`fnmatch`), matched against the whole repository name; `*` also
matches `/`. An account that is not listed has no role, so any write by it is out of role.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from enum import StrEnum
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from monitor.detect.values import read_yaml
from monitor.errors import ConfigError
from monitor.events import Action


class Role(StrEnum):
    ADMIN = "admin"
    DEVELOPER = "developer"
    VIEWER = "viewer"


_ALLOWED_ACTIONS = {
    Role.ADMIN: frozenset(Action),
    Role.DEVELOPER: frozenset({Action.PUSH, Action.PULL, Action.MOUNT}),
    Role.VIEWER: frozenset({Action.PULL}),
}


@dataclasses.dataclass(frozen=True)
class Grant:
    role: Role
    repositories: tuple[str, ...] = ("*",)

    def permits(self, action: Action, repository: str | None) -> bool:
        if action not in _ALLOWED_ACTIONS[self.role]:
            return False
        if self.role is Role.ADMIN:
            return True
        name = repository or ""
        return any(fnmatchcase(name, pattern) for pattern in self.repositories)


@dataclasses.dataclass(frozen=True)
class Roles:
    accounts: Mapping[str, Grant] = dataclasses.field(default_factory=dict)

    @property
    def configured(self) -> bool:
        return bool(self.accounts)

    def permits(self, actor: str | None, action: Action, repository: str | None) -> bool:
        """Whether `actor` may perform `action` on `repository` (unknown accounts may not)."""
        grant = self.accounts.get(actor) if actor is not None else None
        return grant is not None and grant.permits(action, repository)


def parse_roles(document: Any) -> Roles:
    """Validated Roles from a parsed YAML document (None means no roles configured)."""
    if document is None:
        return Roles()
    if not isinstance(document, Mapping):
        raise ConfigError("roles", "expected a mapping with an `accounts` key")
    for key in document:
        if key != "accounts":
            raise ConfigError(f"roles.{key}", "unknown setting")
    accounts_doc = document.get("accounts")
    if accounts_doc is None:
        accounts_doc = {}
    if not isinstance(accounts_doc, Mapping):
        raise ConfigError("roles.accounts", "expected a mapping of account names")
    accounts: dict[str, Grant] = {}
    for name, entry in accounts_doc.items():
        key = f"roles.accounts.{name}"
        if not isinstance(entry, Mapping):
            raise ConfigError(key, "expected a mapping with `role` and `repositories`")
        for field in entry:
            if field not in {"role", "repositories"}:
                raise ConfigError(f"{key}.{field}", "unknown setting")
        try:
            role = Role(str(entry.get("role")))
        except ValueError:
            raise ConfigError(f"{key}.role", "expected admin, developer or viewer") from None
        patterns = entry.get("repositories", ["*"])
        if isinstance(patterns, str):
            patterns = [patterns]
        if (
            not isinstance(patterns, list)
            or not patterns
            or not all(isinstance(p, str) and p for p in patterns)
        ):
            raise ConfigError(f"{key}.repositories", "expected a non-empty list of patterns")
        accounts[str(name)] = Grant(role=role, repositories=tuple(patterns))
    return Roles(accounts=accounts)


def load_roles(path: Path | None) -> Roles:
    """Roles from the YAML file at `path`, or no roles when `path` is None."""
    if path is None:
        return Roles()
    return parse_roles(read_yaml(path, "detect.roles_file"))
