"""A small token server for the registry's `auth.token` mode, signing RS256 JWTs with openssl.

The registry (2.8) verifies the token against `rootcertbundle`; the JWT header carries the
certificate in `x5c`, so no key id is needed. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.registry_harness import make_tls_cert, require_tools


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _cert_der(cert: Path) -> bytes:
    pem = cert.read_text()
    body = pem.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
    return base64.b64decode("".join(body.split()))


def parse_scope(scope: str) -> dict[str, Any] | None:
    """`type:name:actions` (the name may hold `:`) → an access entry."""
    parts = scope.split(":")
    if len(parts) < 3:
        return None
    return {"type": parts[0], "name": ":".join(parts[1:-1]), "actions": parts[-1].split(",")}


@dataclasses.dataclass
class TokenServer:
    url: str
    service: str
    issuer: str
    cert: Path
    key: Path
    requests: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    def registry_auth(self) -> dict[str, str]:
        """The registry's `auth.token` section for this server."""
        return {
            "realm": self.realm,
            "service": self.service,
            "issuer": self.issuer,
            "rootcertbundle": str(self.cert),
        }

    def sign(self, subject: str, access: list[dict[str, Any]]) -> str:
        now = int(time.time())
        header = {
            "typ": "JWT",
            "alg": "RS256",
            "x5c": [base64.b64encode(_cert_der(self.cert)).decode()],
        }
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
        return f"{signing_input}.{_b64(signature)}"


def _handler(server: TokenServer, users: Mapping[str, str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            user = None
            header = self.headers.get("Authorization", "")
            if header.startswith("Basic "):
                name, _, password = base64.b64decode(header[6:]).decode().partition(":")
                if users.get(name) == password:
                    user = name
            server.requests.append(
                {"path": parts.path, "user": user, "scope": query.get("scope", [])}
            )
            if parts.path != "/token" or user is None:
                self.send_response(401)
                self.end_headers()
                return
            access = [a for a in (parse_scope(s) for s in query.get("scope", [])) if a]
            token = server.sign(user, access)
            body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextmanager
def running_token_server(
    *, directory: Path, users: Mapping[str, str], service: str = "harness-registry"
) -> Iterator[TokenServer]:
    """A token server granting every requested scope to `users` (name → password)."""
    require_tools("openssl")
    cert, key = make_tls_cert(directory=directory, name="token-signer")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = httpd.server_address[1]
    server = TokenServer(f"http://127.0.0.1:{port}", service, "harness-issuer", cert, key)
    httpd.RequestHandlerClass = _handler(server, users)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
