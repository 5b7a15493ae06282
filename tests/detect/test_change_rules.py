from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from monitor.detect.roles import parse_roles
from monitor.events import Action, Event, TargetKind
from tests.detect.fixture_events import notification_events
from tests.detect.rule_runs import run_rule
from tests.fixture_events import make_event

ROLES = parse_roles(
    {
        "accounts": {
            "root": {"role": "admin"},
            "alice": {"role": "developer", "repositories": ["team/*"]},
            "bob": {"role": "viewer"},
        }
    }
)
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def push(**kwargs: Any) -> Event:
    return make_event(action=Action.PUSH, http_method="PUT", **kwargs)


def delete(**kwargs: Any) -> Event:
    return make_event(action=Action.DELETE, http_method="DELETE", **kwargs)


def subject(actor: str, repository: str, action: str) -> tuple[tuple[str, str], ...]:
    return (("actor", actor), ("repository", repository), ("action", action))


class TestOutOfRole:
    @pytest.mark.parametrize(
        ("events", "expected"),
        [
            ([push(actor="root", repository="any/thing"), delete(actor="root")], []),
            ([push(actor="alice", repository="team/app")], []),
            ([make_event(actor="bob", repository="other/x")], []),
            (
                [push(actor="alice", repository="other/app")],
                [("critical", subject("alice", "other/app", "push"), 1)],
            ),
            (
                [delete(actor="alice", repository="team/app")],
                [("critical", subject("alice", "team/app", "delete"), 1)],
            ),
            (
                [make_event(action=Action.MOUNT, actor="bob", repository="team/app")],
                [("critical", subject("bob", "team/app", "mount"), 1)],
            ),
            (
                [push(actor="eve", repository="team/app")],
                [("critical", subject("eve", "team/app", "push"), 1)],
            ),
            (
                [push(actor=None, repository="team/app")],
                [("critical", subject("-", "team/app", "push"), 1)],
            ),
        ],
        ids=[
            "admin",
            "developer-own",
            "viewer-pull",
            "developer-elsewhere",
            "developer-delete",
            "viewer-mount",
            "unknown-account",
            "anonymous",
        ],
    )
    def test_table(self, events, expected):
        """Writes the account's role does not allow fire; allowed ones do not."""
        assert expected == run_rule("out_of_role", events, roles=ROLES)

    def test_without_roles_it_is_silent(self):
        """No roles file: the rule has nothing to check against."""
        expected: list[object] = []
        assert expected == run_rule("out_of_role", [push(actor="eve")])


class TestOffHoursWrite:
    @pytest.mark.parametrize(
        ("events", "options", "expected"),
        [
            ([push()], {}, []),
            (
                [push(occurred_at=datetime(2026, 11, 25, 20, 0, tzinfo=UTC))],
                {},
                [("info", (("actor", "alice"),), 1)],
            ),
            (
                [push(occurred_at=datetime(2026, 11, 28, 11, 0, tzinfo=UTC))],
                {},
                [("info", (("actor", "alice"),), 1)],
            ),
            ([make_event(occurred_at=datetime(2026, 11, 25, 20, 0, tzinfo=UTC))], {}, []),
            (
                [
                    delete(
                        occurred_at=datetime(2026, 11, 25, 20, 0, tzinfo=UTC),
                        user_agent="registry-monitor/0.1.0",
                    )
                ],
                {},
                [],
            ),
            (notification_events(), {}, [("info", (("actor", "alice"),), 21)]),
        ],
        ids=[
            "weekday-10h",
            "weekday-20h",
            "saturday",
            "pull-at-night",
            "cleanup-at-night",
            "fixture-friday-0452",
        ],
    )
    def test_table(self, events, options, expected):
        """Writes outside Mon-Fri 09:00-18:00 UTC fire (pulls and cleanup do not)."""
        assert expected == run_rule("off_hours_write", events, options)

    def test_business_hours_time_zone(self):
        """04:52 UTC on a Friday is 13:52 in Tokyo, inside business hours there."""
        from monitor.detect.config import parse_detect_config
        from monitor.detect.engine import Detector, replay
        from monitor.detect.roles import Roles

        config = parse_detect_config({"business_hours": {"timezone": "Asia/Tokyo"}})
        findings = replay(Detector(config, Roles()), notification_events())
        expected: list[object] = []
        assert expected == [f for f in findings if f.rule == "off_hours_write"]


class TestTagMoved:
    def manifest_push(self, seconds: int, tag: str, digest: str, **kwargs: Any) -> Event:
        return push(seconds=seconds, tag=tag, digest=digest, **kwargs)

    @pytest.mark.parametrize(
        ("steps", "expected"),
        [
            ([("v1", D1), ("v1", D1)], []),
            (
                [("v1", D1), ("v1", D2)],
                [("critical", (("repository", "team/app"), ("tag", "v1")), 1)],
            ),
            (
                [("1.0", D1), ("1.0", D2)],
                [("critical", (("repository", "team/app"), ("tag", "1.0")), 1)],
            ),
            ([("latest", D1), ("latest", D2)], []),
            ([("v1", D2)], []),
            (
                [("v1", D1), ("v1", D2), ("v1", D1)],
                [("critical", (("repository", "team/app"), ("tag", "v1")), 1)] * 2,
            ),
        ],
        ids=["same-digest", "moved", "semver-moved", "unprotected", "first-push", "moved-twice"],
    )
    def test_table(self, steps, expected):
        """A push moving a protected tag to another digest fires, every time."""
        events = [self.manifest_push(i, tag, digest) for i, (tag, digest) in enumerate(steps)]
        assert expected == run_rule("tag_moved", events)

    def test_fixture_is_quiet(self):
        """The capture pushes each tag once and deletes before anything is re-pushed."""
        expected: list[object] = []
        assert expected == run_rule("tag_moved", notification_events())

    def test_deleted_tag_is_forgotten(self):
        """After a tag delete, pushing the tag again at another digest is not a move."""
        events = [
            self.manifest_push(0, "v1", D1),
            delete(seconds=1, tag="v1", digest=None, target_kind=TargetKind.TAG),
            self.manifest_push(2, "v1", D2),
        ]
        expected: list[object] = []
        assert expected == run_rule("tag_moved", events)

    def test_manifest_delete_forgets_its_tags(self):
        """A manifest delete by digest forgets the protected tags pointing at it."""
        events = [
            self.manifest_push(0, "v1", D1),
            delete(seconds=1, digest=D1),
            self.manifest_push(2, "v1", D2),
        ]
        expected: list[object] = []
        assert expected == run_rule("tag_moved", events)

    def test_a_manifest_delete_elsewhere_forgets_nothing_here(self):
        """The same digest deleted in another repository leaves this one's tags remembered."""
        events = [
            self.manifest_push(0, "v1", D1),
            delete(seconds=1, digest=D1, repository="other/app"),
            self.manifest_push(2, "v1", D2),
        ]
        expected = [("critical", (("repository", "team/app"), ("tag", "v1")), 1)]
        assert expected == run_rule("tag_moved", events)

    def test_allow_listed_pushes_still_update_the_digest(self):
        """A release bot on the allow-list moves tags silently, and its digest is remembered."""
        options = {"allow": {"users": ["release-bot"]}}
        events = [
            self.manifest_push(0, "v1", D1),
            self.manifest_push(1, "v1", D2, actor="release-bot"),
            self.manifest_push(2, "v1", D2),
        ]
        expected: list[object] = []
        assert expected == run_rule("tag_moved", events, options)


class TestDeleteOutsideCleanup:
    @pytest.mark.parametrize(
        ("events", "options", "expected"),
        [
            ([delete()], {}, [("warning", (("actor", "alice"), ("repository", "team/app")), 1)]),
            ([delete(user_agent="registry-monitor/0.1.0")], {}, []),
            ([delete(actor="janitor")], {"cleanup_accounts": ["janitor"]}, []),
            ([push(), make_event()], {}, []),
            (
                notification_events(),
                {},
                [("warning", (("actor", "alice"), ("repository", "library/hello")), 3)],
            ),
        ],
        ids=["manual", "monitor-agent", "cleanup-account", "no-delete", "fixture-curl-delete"],
    )
    def test_table(self, events, options, expected):
        """Deletes not made by cleanup fire; cleanup's own deletes do not."""
        assert expected == run_rule("delete_outside_cleanup", events, options)
