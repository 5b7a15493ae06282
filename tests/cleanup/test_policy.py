from __future__ import annotations

from datetime import timedelta

import pytest

from monitor.cleanup.model import DeployedSet, PullRecord, TagRef
from monitor.cleanup.policy import (
    Matcher,
    PullFilter,
    is_attachment,
    load_policies,
    parse_image_references,
)
from monitor.errors import ConfigError
from monitor.events import Client

FULL = """
- name: ci
  repositories: ["team/**", "!team/secret"]
  protect: {tags: ["latest", "v*"], grace_hours: 12, min_tags: 2}
  keep: {most_recent: 3, pulled_within_days: 30, pushed_within_days: 7, tags: ["release-*"]}
  delete:
    - {name: old-prs, tags: ["pr-*"], not_pulled_days: 30, older_than_days: 14}
    - {untagged: true, older_than_days: 7}
  pulls: {methods: [GET], ignore_clients: [scanner]}
"""


class TestMatcher:
    @pytest.mark.parametrize(
        ("patterns", "name", "expected"),
        [
            (["team/*"], "team/app", True),
            (["team/*"], "team/app/sub", False),
            (["team/**"], "team/app/sub", True),
            (["team/**", "!team/secret"], "team/secret", False),
            (["v?.*"], "v1.2", True),
            (["v[0-9]*"], "vx", False),
            (["latest"], "latest-rc", False),
            (["*"], "anything", True),
        ],
    )
    def test_globs(self, patterns: list[str], name: str, expected: bool) -> None:
        """`*` stays inside one segment, `**` crosses them, `!` excludes, whole name only."""
        assert expected == Matcher.of(patterns)(name)


class TestLoadPolicies:
    def test_full_document(self) -> None:
        """Every key of a full policy lands in the parsed Policy."""
        (policy,) = load_policies(FULL)
        expected = ("ci", True, False)
        assert expected == (
            policy.name,
            policy.repositories("team/app"),
            policy.repositories("team/secret"),
        )
        assert (timedelta(hours=12), 2) == (policy.protect.grace, policy.protect.min_tags)
        assert (3, timedelta(days=30), timedelta(days=7)) == (
            policy.keep.most_recent,
            policy.keep.pulled_within,
            policy.keep.pushed_within,
        )
        expected_names = ["old-prs", "delete[1]"]
        assert expected_names == [r.name for r in policy.delete]
        assert PullFilter(frozenset({"GET"}), frozenset({Client.SCANNER})) == policy.pulls

    def test_defaults(self) -> None:
        """A minimal policy pins `latest`, has 48 h grace, a floor of 1, and ignores scanners."""
        (policy,) = load_policies("policies: [{name: p, repositories: ['*']}]")
        assert (True, timedelta(hours=48), 1) == (
            policy.protect.tags("latest"),
            policy.protect.grace,
            policy.protect.min_tags,
        )
        assert frozenset({Client.SCANNER, Client.MONITOR}) == policy.pulls.ignore_clients
        assert frozenset({"GET", "HEAD"}) == policy.pulls.methods

    def test_deployed_set_is_held(self) -> None:
        """The deployed set given by the caller is carried by every policy."""
        deployed = DeployedSet(tags=frozenset({TagRef("a", "b")}))
        (policy,) = load_policies("[{name: p, repositories: ['*']}]", deployed=deployed)
        assert deployed == policy.deployed

    @pytest.mark.parametrize(
        ("text", "key"),
        [
            ("{a: 1}", "policies"),
            ("[{repositories: ['*']}]", "policies[0].name"),
            ("[{name: p}]", "policies[0].repositories"),
            ("[{name: p, repositories: []}]", "policies[0].repositories"),
            ("[{name: p, repositories: ['!x']}]", "policies[0].repositories"),
            ("[{name: p, repositories: ['*'], colour: red}]", "policies[0].colour"),
            (
                "[{name: p, repositories: ['*'], keep: {most_recent: 0}}]",
                "policies[0].keep.most_recent",
            ),
            (
                "[{name: p, repositories: ['*'], keep: {most_recent: 1.5}}]",
                "policies[0].keep.most_recent",
            ),
            (
                "[{name: p, repositories: ['*'], keep: {pulled_within_days: -1}}]",
                "policies[0].keep.pulled_within_days",
            ),
            (
                "[{name: p, repositories: ['*'], protect: {grace_hours: x}}]",
                "policies[0].protect.grace_hours",
            ),
            (
                "[{name: p, repositories: ['*'], protect: {min_tag: 1}}]",
                "policies[0].protect.min_tag",
            ),
            ("[{name: p, repositories: ['*'], delete: [{}]}]", "policies[0].delete[0]"),
            (
                "[{name: p, repositories: ['*'], delete: [{untagged: true, tags: [x]}]}]",
                "policies[0].delete[0]",
            ),
            ("[{name: p, repositories: ['*'], delete: {tags: [x]}}]", "policies[0].delete"),
            (
                "[{name: p, repositories: ['*'], pulls: {methods: [PUT]}}]",
                "policies[0].pulls.methods",
            ),
            (
                "[{name: p, repositories: ['*'], pulls: {ignore_clients: [robot]}}]",
                "policies[0].pulls.ignore_clients",
            ),
            (
                "[{name: p, repositories: ['*']}, {name: p, repositories: ['*']}]",
                "policies[1].name",
            ),
            ("[{name: p, repositories: ['[abc']}]", "policies[0].repositories"),
            ("[: :", "policies"),
        ],
    )
    def test_invalid_names_the_key(self, text: str, key: str) -> None:
        """An invalid policy raises ConfigError naming the offending key."""
        with pytest.raises(ConfigError) as info:
            load_policies(text)
        assert key == info.value.key


class TestPullFilter:
    @pytest.mark.parametrize(
        ("method", "client", "expected"),
        [
            ("GET", Client.DOCKER, True),
            ("HEAD", Client.CONTAINERD, True),
            ("GET", Client.SCANNER, False),
            ("HEAD", Client.MONITOR, False),
            ("get", Client.KUBELET, True),
        ],
    )
    def test_default_counts(self, method: str, client: Client, expected: bool) -> None:
        """By default GET and HEAD count, scanner and monitor pulls do not."""
        from datetime import UTC, datetime

        record = PullRecord(method, client, datetime(2026, 1, 1, tzinfo=UTC))
        assert expected == PullFilter().counts(record)


class TestParseImageReferences:
    def test_forms(self) -> None:
        """Tags, digests, hosts, comments and bare names are all understood."""
        digest = "sha256:" + "a" * 64
        text = f"""
        # running in prod
        team/app:v1
        registry.local:5000/team/app:v2   # with host
        library/hello@{digest}
        mirror/hello:1.0@{digest}
        busybox
        """
        expected = DeployedSet(
            tags=frozenset(
                {
                    TagRef("team/app", "v1"),
                    TagRef("team/app", "v2"),
                    TagRef("mirror/hello", "1.0"),
                    TagRef("busybox", "latest"),
                }
            ),
            digests=frozenset({("library/hello", digest), ("mirror/hello", digest)}),
        )
        assert expected == parse_image_references(text)

    @pytest.mark.parametrize("line", ["team/app@sha256:xyz", "team/app:", "/x:1", "a b:c"])
    def test_invalid_line_names_it(self, line: str) -> None:
        """A line that is not an image reference raises ConfigError naming its line number."""
        with pytest.raises(ConfigError) as info:
            parse_image_references(f"ok:1\n{line}\n")
        expected = "deployed line 2"
        assert expected == info.value.key


class TestIsAttachment:
    @pytest.mark.parametrize(
        ("tag", "expected"),
        [
            ("sha256-" + "0" * 64, True),
            ("sha256-" + "0" * 64 + ".sig", True),
            ("sha256-" + "0" * 64 + ".att", True),
            ("sha256-abc.sig", False),
            ("latest", False),
        ],
    )
    def test_attachment_tags(self, tag: str, expected: bool) -> None:
        """Cosign/notation/OCI-1.1 referrer tags are recognised."""
        assert expected == is_attachment(tag)
