from __future__ import annotations

from pathlib import Path

import pytest

from monitor.detect.roles import Role, load_roles, parse_roles
from monitor.errors import ConfigError
from monitor.events import Action

ROLES = parse_roles(
    {
        "accounts": {
            "root": {"role": "admin"},
            "alice": {"role": "developer", "repositories": ["team/*", "library/hello"]},
            "bob": {"role": "viewer", "repositories": "library/*"},
        }
    }
)


class TestRoles:
    @pytest.mark.parametrize(
        ("actor", "action", "repository", "allowed"),
        [
            ("root", Action.DELETE, "x/y", True),
            ("alice", Action.PUSH, "team/app", True),
            ("alice", Action.MOUNT, "team/deep/app", True),
            ("alice", Action.PUSH, "library/hello", True),
            ("alice", Action.PUSH, "library/other", False),
            ("alice", Action.DELETE, "team/app", False),
            ("bob", Action.PULL, "library/x", True),
            ("bob", Action.PULL, "team/app", False),
            ("bob", Action.PUSH, "library/x", False),
            ("eve", Action.PULL, "library/x", False),
            (None, Action.PULL, "library/x", False),
        ],
    )
    def test_permits(self, actor, action, repository, allowed):
        """admin may do anything, developer push/pull/mount on its patterns, viewer pull."""
        assert allowed == ROLES.permits(actor, action, repository)

    def test_parsed_roles(self):
        """Roles and default patterns come from the document."""
        assert (
            ROLES.accounts["root"].role,
            ROLES.accounts["root"].repositories,
        ) == (Role.ADMIN, ("*",))


class TestParseRoles:
    @pytest.mark.parametrize(
        ("document", "key"),
        [
            ([], "roles"),
            ({"users": {}}, "roles.users"),
            ({"accounts": []}, "roles.accounts"),
            ({"accounts": {"a": "admin"}}, "roles.accounts.a"),
            ({"accounts": {"a": {"role": "owner"}}}, "roles.accounts.a.role"),
            (
                {"accounts": {"a": {"role": "viewer", "repositories": []}}},
                "roles.accounts.a.repositories",
            ),
            ({"accounts": {"a": {"role": "viewer", "repos": ["x"]}}}, "roles.accounts.a.repos"),
        ],
    )
    def test_errors_name_the_key(self, document, key):
        """Invalid roles raise ConfigError naming the key."""
        with pytest.raises(ConfigError) as caught:
            parse_roles(document)
        assert key == caught.value.key

    def test_load(self, tmp_path: Path):
        """A roles file is read; no file means no roles."""
        path = tmp_path / "roles.yml"
        path.write_text("accounts:\n  alice: {role: developer, repositories: ['team/*']}\n")
        assert (load_roles(path).configured, load_roles(None).configured) == (True, False)
