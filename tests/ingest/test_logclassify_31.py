"""The real distribution 3.1.1 capture through the log classifier: what 3.x logs differently.

3.1 names no user when an unknown account fails to log in (only the challenge warning and the
access line remain), and carries `auth.user.name` on every authorised request's lines.
"""

from __future__ import annotations

import pytest

from monitor.events import Action
from monitor.ingest.logclassify import LogClassifier
from tests.paths import FIXTURES_31, fixture_file

LOGS = ("registry-text.log", "registry-json.log")


def classified(name: str) -> list[tuple[object, ...]]:
    lines = fixture_file(name, capture=FIXTURES_31).read_text(encoding="utf-8").splitlines()
    events = LogClassifier().feed_many(lines)
    return [
        (e.action, e.actor, e.remote_ip, e.request_uri, e.user_agent, e.http_status) for e in events
    ]


@pytest.mark.parametrize("name", LOGS)
def test_failed_logins_of_unknown_users_keep_address_uri_and_agent(name: str) -> None:
    """mallory's three failed logins (not in htpasswd) are auth_failures with no actor but the
    address, URI and user agent; bob's wrong password keeps his name (`username=`)."""
    failures = [e for e in classified(name) if e[0] is Action.AUTH_FAILURE]
    unknown = (Action.AUTH_FAILURE, None, "127.0.0.1", "/v2/", "skopeo/1.9.3", 401)
    bob = (Action.AUTH_FAILURE, "bob", "127.0.0.1", "/v2/", "curl/7.88.1", 401)
    assert [unknown, unknown, unknown, bob] == failures


@pytest.mark.parametrize("name", LOGS)
def test_requests_seen_only_in_logs_carry_the_authenticated_user(name: str) -> None:
    """Catalog walks, tag listings and manifest 404s (all made by bob) take their actor from
    3.x's `auth.user.name`."""
    requests = [e for e in classified(name) if e[0] is Action.REQUEST]
    expected_uris = [
        "/v2/_catalog",
        "/v2/library/hello/tags/list",
        "/v2/team/app/tags/list",
        "/v2/library/hello/manifests/2.0",
        "/v2/ghost/none/manifests/latest",
        "/v2/library/hello/tags/list",
        "/v2/library/hello/manifests/latest",
        "/v2/library/hello/tags/list",
    ]
    assert (expected_uris, {"bob"}) == ([e[3] for e in requests], {e[1] for e in requests})
