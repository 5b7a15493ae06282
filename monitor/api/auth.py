"""Bearer-token checks, constant time, for the sender (notifications, logs) and the read API."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from starlette.requests import Request

from monitor.errors import AuthError
from monitor.settings import Secret


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def token_matches(given: str, accepted: Sequence[Secret]) -> bool:
    """True when `given` equals one of `accepted`; every candidate is compared, in constant time."""
    given_bytes = given.encode()
    matched = False
    for secret in accepted:
        matched |= hmac.compare_digest(given_bytes, secret.reveal().encode())
    return matched


def require_token(request: Request, accepted: Sequence[Secret], *, what: str) -> None:
    """Raise AuthError unless the request carries one of the accepted bearer tokens."""
    if not accepted:
        return
    given = bearer_token(request)
    if given is None:
        raise AuthError(f"{what} needs a bearer token")
    if not token_matches(given, accepted):
        raise AuthError(f"{what}: the bearer token is not accepted")
