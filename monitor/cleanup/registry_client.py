"""The registry's HTTP API as cleanup needs it: a small Protocol and an httpx implementation.

Basic auth and the bearer-token flow (`WWW-Authenticate: Bearer realm=…,service=…,scope=…`,
tokens fetched with the basic credentials and cached per scope), TLS with a CA file or an
explicit insecure flag, retries with backoff on 5xx and connection errors for idempotent calls,
and a `registry-monitor/<version>` User-Agent so the registry's events classify us as `monitor`.
"""

from __future__ import annotations

import dataclasses
import re
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urljoin

import httpx

from monitor import __version__
from monitor.errors import RegistryError
from monitor.events import USER_AGENT_PREFIX

ACCEPT_MANIFESTS = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
USER_AGENT = f"{USER_AGENT_PREFIX}/{__version__}"
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT"})
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
MAX_PAGES = 10_000
PROBE_TAG = "registry-monitor-delete-probe-7f3c9b2e"
"""A tag no client pushes; deleting it tells 3.x (404, tag unknown) from 2.8 (400, a tag is
not a digest) without changing anything."""


@dataclasses.dataclass(frozen=True, slots=True)
class ManifestHead:
    digest: str
    media_type: str
    size: int


@dataclasses.dataclass(frozen=True, slots=True)
class Manifest:
    digest: str
    media_type: str
    body: bytes


class RegistryClient(Protocol):
    """What cleanup needs from a registry."""

    def catalog(self) -> list[str]: ...

    def tags(self, repository: str) -> list[str]: ...

    def head_manifest(self, repository: str, reference: str) -> ManifestHead | None: ...

    def get_manifest(self, repository: str, reference: str) -> Manifest: ...

    def delete_manifest(self, repository: str, digest: str) -> None: ...

    def delete_tag(self, repository: str, tag: str) -> None: ...

    def supports_tag_delete(self, repository: str) -> bool: ...

    def put_manifest(
        self, repository: str, reference: str, media_type: str, body: bytes
    ) -> str: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str


def parse_bearer_challenge(header: str) -> dict[str, str] | None:
    """The parameters of a `Bearer realm=…,service=…,scope=…` challenge; None if not Bearer."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    params = dict(_CHALLENGE_PARAM.findall(rest))
    return params if "realm" in params else None


def next_link(header: str | None) -> str | None:
    """The target of `rel="next"` in a Link header."""
    if not header:
        return None
    match = _LINK_NEXT.search(header)
    return match.group(1) if match else None


def tls_verify(*, ca_file: Path | None, insecure: bool) -> ssl.SSLContext | bool:
    """What httpx should verify TLS with: a CA file's context, the system store, or nothing."""
    if insecure:
        return False
    if ca_file is not None:
        return ssl.create_default_context(cafile=str(ca_file))
    return True


class HttpRegistryClient:
    """RegistryClient over httpx (sync). The caller builds and closes the httpx.Client."""

    def __init__(
        self,
        base_url: str,
        *,
        http: httpx.Client,
        credentials: Credentials | None = None,
        retries: int = 3,
        backoff_seconds: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        page_size: int = 100,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.credentials = credentials
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.sleep = sleep
        self.page_size = page_size
        self._tokens: dict[str, str] = {}
        self._use_bearer = False

    # --- transport ----------------------------------------------------------------------------

    def _auth_header(self, scope: str) -> dict[str, str]:
        if self._use_bearer:
            token = self._tokens.get(scope)
            return {"Authorization": f"Bearer {token}"} if token else {}
        if self.credentials is not None:
            basic = httpx.BasicAuth(self.credentials.username, self.credentials.password)
            request = next(basic.auth_flow(httpx.Request("GET", self.base_url)))
            return {"Authorization": request.headers["Authorization"]}
        return {}

    def _fetch_token(self, challenge: dict[str, str], scope: str) -> None:
        params = {k: v for k, v in challenge.items() if k in ("service", "scope")}
        params.setdefault("scope", scope)
        auth = (
            httpx.BasicAuth(self.credentials.username, self.credentials.password)
            if self.credentials is not None
            else None
        )
        try:
            response = self.http.get(
                challenge["realm"], params=params, auth=auth, headers={"User-Agent": USER_AGENT}
            )
        except httpx.HTTPError as exc:
            raise RegistryError(f"token request failed: {exc}") from exc
        if response.status_code != 200:
            raise RegistryError(
                f"token server answered {response.status_code}",
                details={"status": response.status_code},
            )
        data = response.json()
        token = data.get("token") or data.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryError("token server answered without a token")
        self._tokens[scope] = token
        self._use_bearer = True

    def _request(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        target = url if url.startswith(("http://", "https://")) else self.base_url + url
        attempts = self.retries + 1 if method in _IDEMPOTENT else 1
        refreshed = False
        attempt = 0
        for _ in range(attempts + 1):  # the extra pass is for one token refresh
            attempt += 1
            all_headers = {"User-Agent": USER_AGENT, **(headers or {}), **self._auth_header(scope)}
            try:
                response = self.http.request(method, target, headers=all_headers, content=content)
            except httpx.TransportError as exc:
                if attempt < attempts:
                    self.sleep(self.backoff_seconds * 2 ** (attempt - 1))
                    continue
                raise RegistryError(
                    f"{method} {url}: {type(exc).__name__}: {exc}",
                    details={"method": method, "url": url},
                ) from exc
            if response.status_code == 401 and not refreshed:
                challenge = parse_bearer_challenge(response.headers.get("www-authenticate", ""))
                if challenge is not None:
                    refreshed = True
                    self._fetch_token(challenge, scope)
                    attempt -= 1
                    continue
            if response.status_code >= 500 and attempt < attempts:
                self.sleep(self.backoff_seconds * 2 ** (attempt - 1))
                continue
            if response.status_code in ok:
                return response
            raise RegistryError(
                f"{method} {url}: registry answered {response.status_code}"
                f" {_error_code(response)}".rstrip(),
                details={"method": method, "url": url, "status": response.status_code},
            )
        raise RegistryError(f"{method} {url}: no answer after {attempts} attempts")

    # --- API ----------------------------------------------------------------------------------

    def _pages(self, first: str, scope: str, key: str) -> Iterator[str]:
        url: str | None = first
        for _ in range(MAX_PAGES):
            if url is None:
                return
            response = self._request("GET", url, scope=scope)
            yield from response.json().get(key) or []
            link = next_link(response.headers.get("link"))
            url = urljoin(self.base_url + "/", link) if link else None
        raise RegistryError(f"more than {MAX_PAGES} pages from {first}")

    def catalog(self) -> list[str]:
        first = f"/v2/_catalog?n={self.page_size}"
        return list(self._pages(first, "registry:catalog:*", "repositories"))

    def tags(self, repository: str) -> list[str]:
        first = f"/v2/{repository}/tags/list?n={self.page_size}"
        try:
            return list(self._pages(first, f"repository:{repository}:pull", "tags"))
        except RegistryError as exc:
            if exc.details.get("status") == 404:
                return []
            raise

    def _manifest_url(self, repository: str, reference: str) -> str:
        return f"/v2/{repository}/manifests/{quote(reference, safe=':')}"

    def head_manifest(self, repository: str, reference: str) -> ManifestHead | None:
        """Digest, media type and size of a manifest; None when the registry has none."""
        response = self._request(
            "HEAD",
            self._manifest_url(repository, reference),
            scope=f"repository:{repository}:pull",
            headers={"Accept": ACCEPT_MANIFESTS},
            ok=(200, 404),
        )
        if response.status_code == 404:
            return None
        return ManifestHead(
            digest=response.headers.get("docker-content-digest", ""),
            media_type=response.headers.get("content-type", ""),
            size=int(response.headers.get("content-length", "0")),
        )

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        response = self._request(
            "GET",
            self._manifest_url(repository, reference),
            scope=f"repository:{repository}:pull",
            headers={"Accept": ACCEPT_MANIFESTS},
        )
        return Manifest(
            digest=response.headers.get("docker-content-digest", ""),
            media_type=response.headers.get("content-type", ""),
            body=response.content,
        )

    def delete_manifest(self, repository: str, digest: str) -> None:
        """Delete a manifest by digest; on 2.8 this untags every tag pointing at it."""
        if not digest.startswith("sha256:"):
            raise RegistryError(f"delete_manifest needs a digest, got {digest!r}")
        self._request(
            "DELETE",
            self._manifest_url(repository, digest),
            scope=f"repository:{repository}:delete",
            ok=(202,),
        )

    def delete_tag(self, repository: str, tag: str) -> None:
        """Delete one tag (distribution 3.x); 2.8 refuses with 400."""
        self._request(
            "DELETE",
            self._manifest_url(repository, tag),
            scope=f"repository:{repository}:delete",
            ok=(202,),
        )

    def supports_tag_delete(self, repository: str) -> bool:
        """Whether the registry deletes single tags (distribution 3.x) or only digests (2.8).

        Asks with `DELETE /v2/<repository>/manifests/<PROBE_TAG>` for a tag that does not
        exist (checked first): 3.x answers 404 (tag unknown), 2.8 answers 400 (digest
        invalid). Deletes disabled in the registry (405) are an error that says so.
        """
        if self.head_manifest(repository, PROBE_TAG) is not None:
            raise RegistryError(
                f"cannot probe tag deletes: {repository}:{PROBE_TAG} exists; "
                "set cleanup.delete_mode to tag or digest"
            )
        try:
            response = self._request(
                "DELETE",
                self._manifest_url(repository, PROBE_TAG),
                scope=f"repository:{repository}:delete",
                ok=(404, 400),
            )
        except RegistryError as exc:
            if exc.details.get("status") == 405:
                raise RegistryError(
                    "the registry refuses deletes (405): set storage.delete.enabled: true "
                    "in its config.yml",
                    details=exc.details,
                ) from exc
            raise
        return response.status_code == 404

    def put_manifest(self, repository: str, reference: str, media_type: str, body: bytes) -> str:
        response = self._request(
            "PUT",
            self._manifest_url(repository, reference),
            scope=f"repository:{repository}:pull,push",
            headers={"Content-Type": media_type},
            content=body,
            ok=(201,),
        )
        return str(response.headers.get("docker-content-digest", ""))


def _error_code(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        return ",".join(str(e.get("code")) for e in errors)
    except (ValueError, AttributeError, TypeError):
        return ""


def make_http_client(
    *,
    ca_file: Path | None = None,
    insecure: bool = False,
    timeout_seconds: float = 30.0,
    connect_timeout_seconds: float = 5.0,
) -> httpx.Client:
    """An httpx.Client for the registry; the caller owns and closes it."""
    return httpx.Client(
        verify=tls_verify(ca_file=ca_file, insecure=insecure),
        timeout=httpx.Timeout(timeout_seconds, connect=connect_timeout_seconds),
        follow_redirects=False,
    )
