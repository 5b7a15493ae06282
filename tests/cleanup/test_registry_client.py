from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from monitor.cleanup.registry_client import (
    ACCEPT_MANIFESTS,
    USER_AGENT,
    Credentials,
    HttpRegistryClient,
    next_link,
    parse_bearer_challenge,
    tls_verify,
)
from monitor.errors import RegistryError
from monitor.events import Client, classify_client

BASE = "https://127.0.0.1:5000"
DIGEST = "sha256:" + "1" * 64


def client_for(
    handler: Callable[[httpx.Request], httpx.Response], **kwargs: object
) -> tuple[HttpRegistryClient, list[float]]:
    sleeps: list[float] = []
    http = httpx.Client(transport=httpx.MockTransport(handler))
    client = HttpRegistryClient(
        BASE,
        http=http,
        credentials=Credentials("alice", "pw"),
        sleep=sleeps.append,
        **kwargs,  # type: ignore[arg-type]
    )
    return client, sleeps


class TestParseBearerChallenge:
    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            (
                'Bearer realm="https://auth.local/token",service="reg",scope="repository:a/b:pull"',
                {
                    "realm": "https://auth.local/token",
                    "service": "reg",
                    "scope": "repository:a/b:pull",
                },
            ),
            ('bearer realm="r"', {"realm": "r"}),
            ('Basic realm="registry"', None),
            ("Bearer", None),
        ],
    )
    def test_challenges(self, header: str, expected: object) -> None:
        """Bearer challenges give their parameters; anything else gives None."""
        assert expected == parse_bearer_challenge(header)


class TestNextLink:
    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ('</v2/_catalog?last=b&n=2>; rel="next"', "/v2/_catalog?last=b&n=2"),
            ("</v2/a/tags/list?n=1&last=x>; rel=next", "/v2/a/tags/list?n=1&last=x"),
            ('</x>; rel="prev"', None),
            (None, None),
        ],
    )
    def test_links(self, header: str | None, expected: str | None) -> None:
        """The rel=next target of a Link header, as the registry writes it."""
        assert expected == next_link(header)


class TestTlsVerify:
    def test_insecure_and_default(self) -> None:
        """The insecure flag turns verification off; no CA file means the system store."""
        expected = (False, True)
        assert expected == (
            tls_verify(ca_file=None, insecure=True),
            tls_verify(ca_file=None, insecure=False),
        )

    def test_missing_ca_file_fails(self, tmp_path: Path) -> None:
        """A CA file that does not exist is an error, not a silent fallback."""
        with pytest.raises(OSError):
            tls_verify(ca_file=tmp_path / "nope.pem", insecure=False)


class TestHttpRegistryClient:
    def test_user_agent_is_classified_monitor(self) -> None:
        """Every request carries our User-Agent, which events classify as `monitor`."""
        seen: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request.headers["user-agent"])
            return httpx.Response(200, json={"repositories": ["a"]})

        client, _ = client_for(handler)
        client.catalog()
        expected = ([USER_AGENT], Client.MONITOR)
        assert expected == (seen, classify_client(seen[0]))

    def test_head_sends_every_manifest_type(self) -> None:
        """HEAD asks for every manifest media type and returns digest, type and size."""
        accepts: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            accepts.append(request.headers["accept"])
            headers = {
                "Docker-Content-Digest": DIGEST,
                "Content-Type": "application/vnd.oci.image.index.v1+json",
                "Content-Length": "517",
            }
            return httpx.Response(200, headers=headers)

        client, _ = client_for(handler)
        head = client.head_manifest("team/app", "v1")
        assert head is not None
        expected = ([ACCEPT_MANIFESTS], DIGEST, 517)
        assert expected == (accepts, head.digest, head.size)

    def test_basic_auth(self) -> None:
        """Credentials go as Basic auth when the registry does not ask for tokens."""
        seen: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request.headers.get("authorization", ""))
            return httpx.Response(200, json={"tags": []})

        client, _ = client_for(handler)
        client.tags("a")
        expected = ["Basic " + base64.b64encode(b"alice:pw").decode()]
        assert expected == seen

    def test_follows_link_pages(self) -> None:
        """Tag lists follow Link rel=next until there is none."""
        pages = {
            "/v2/a/tags/list?n=2": (["t1", "t2"], '</v2/a/tags/list?n=2&last=t2>; rel="next"'),
            "/v2/a/tags/list?n=2&last=t2": (["t3"], None),
        }

        def handler(request: httpx.Request) -> httpx.Response:
            key = request.url.raw_path.decode()
            tags, link = pages[key]
            headers = {"Link": link} if link else {}
            return httpx.Response(200, json={"name": "a", "tags": tags}, headers=headers)

        client, _ = client_for(handler, page_size=2)
        expected = ["t1", "t2", "t3"]
        assert expected == client.tags("a")

    def test_bearer_flow_caches_token_per_scope(self) -> None:
        """A Bearer challenge fetches a token with basic creds once per scope, then reuses it."""
        token_calls: list[tuple[str, str]] = []

        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.host == "auth.local":
                token_calls.append(
                    (request.url.params["scope"], request.headers.get("authorization", ""))
                )
                return httpx.Response(200, json={"token": "tok-" + request.url.params["scope"]})
            scope = f"repository:{request.url.path.split('/')[2]}/app:pull"
            if request.headers.get("authorization") != f"Bearer tok-{scope}":
                challenge = f'Bearer realm="https://auth.local/token",service="reg",scope="{scope}"'
                return httpx.Response(401, headers={"WWW-Authenticate": challenge})
            return httpx.Response(200, json={"tags": ["x"]})

        client, _ = client_for(handler)
        results = [client.tags("team/app"), client.tags("team/app"), client.tags("other/app")]
        basic = "Basic " + base64.b64encode(b"alice:pw").decode()
        expected = (
            [["x"], ["x"], ["x"]],
            [("repository:team/app:pull", basic), ("repository:other/app:pull", basic)],
        )
        assert expected == (results, token_calls)

    def test_retries_idempotent_calls_with_backoff(self) -> None:
        """5xx answers to a GET are retried with doubling backoff, then succeed."""
        answers = [503, 502, 200]

        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(answers.pop(0), json={"tags": ["x"]})

        client, sleeps = client_for(handler, backoff_seconds=0.5)
        expected = (["x"], [0.5, 1.0])
        assert expected == (client.tags("a"), sleeps)

    def test_retries_connection_errors(self) -> None:
        """A connection error on HEAD is retried."""
        calls: list[int] = []

        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(1)
            if len(calls) == 1:
                raise httpx.ConnectError("refused", request=request)
            return httpx.Response(404)

        client, _ = client_for(handler)
        expected = (None, 2)
        assert expected == (client.head_manifest("a", "v1"), len(calls))

    def test_delete_is_not_retried(self) -> None:
        """A DELETE answered 500 is reported at once, never repeated."""
        calls: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(request.method)
            return httpx.Response(500, json={"errors": [{"code": "UNKNOWN"}]})

        client, _ = client_for(handler)
        with pytest.raises(RegistryError) as info:
            client.delete_manifest("a", DIGEST)
        expected = (["DELETE"], 500)
        assert expected == (calls, info.value.details["status"])

    def test_gives_up_after_retries(self) -> None:
        """Persistent 5xx ends in a RegistryError naming the status."""

        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(503)

        client, sleeps = client_for(handler, retries=2)
        with pytest.raises(RegistryError) as info:
            client.get_manifest("a", "v1")
        expected = (503, 2)
        assert expected == (info.value.details["status"], len(sleeps))

    def test_put_manifest_sends_media_type(self) -> None:
        """PUT sends the body with its media type and returns the registry's digest."""
        seen: list[tuple[str, str, bytes]] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append((request.method, request.headers["content-type"], request.content))
            return httpx.Response(201, headers={"Docker-Content-Digest": DIGEST})

        client, _ = client_for(handler)
        body = json.dumps({"schemaVersion": 2}).encode()
        digest = client.put_manifest("a", "v1", "application/vnd.oci.image.manifest.v1+json", body)
        expected = (DIGEST, [("PUT", "application/vnd.oci.image.manifest.v1+json", body)])
        assert expected == (digest, seen)

    def test_delete_manifest_needs_digest(self) -> None:
        """Deleting by a tag name through delete_manifest is refused before any request."""
        client, _ = client_for(lambda request: httpx.Response(202))
        with pytest.raises(RegistryError):
            client.delete_manifest("a", "latest")
