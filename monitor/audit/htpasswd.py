"""Entries of an htpasswd file, classified by hash scheme. No I/O.

The registry verifies bcrypt only (`$2a$`, `$2b$`, `$2y$`); an entry in any other scheme can
never log in, and a weak hash leaks the password when the file does.
"""

from __future__ import annotations

import dataclasses
import re

from monitor.errors import ParseError

_BCRYPT = re.compile(r"^\$2[aby]?\$(\d{2})\$[./A-Za-z0-9]{53}$")
_PREFIXES = (
    ("$apr1$", "md5"),
    ("$1$", "md5"),
    ("{SHA}", "sha1"),
    ("$5$", "sha256-crypt"),
    ("$6$", "sha512-crypt"),
)
_DES = re.compile(r"^[./A-Za-z0-9]{13}$")


@dataclasses.dataclass(frozen=True, slots=True)
class HtpasswdEntry:
    user: str
    scheme: str
    """bcrypt, md5, sha1, sha256-crypt, sha512-crypt, crypt, or plain (anything else)."""
    cost: int | None = None
    line: int = 0


def classify(hashed: str) -> tuple[str, int | None]:
    """(scheme, bcrypt cost or None) of one stored hash."""
    match = _BCRYPT.match(hashed)
    if match:
        return "bcrypt", int(match.group(1))
    for prefix, scheme in _PREFIXES:
        if hashed.startswith(prefix):
            return scheme, None
    if _DES.match(hashed):
        return "crypt", None
    return "plain", None


def parse_htpasswd(text: str, *, source: str = "htpasswd") -> list[HtpasswdEntry]:
    """Every `user:hash` line (blank lines and `#` comments skipped), as the registry reads it;
    ParseError naming the line when one has no user or no colon."""
    entries: list[HtpasswdEntry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, colon, hashed = line.partition(":")
        if not colon or not user:
            raise ParseError("invalid_htpasswd", f"{source}:{number}: not a user:hash entry")
        scheme, cost = classify(hashed)
        entries.append(HtpasswdEntry(user=user, scheme=scheme, cost=cost, line=number))
    return entries
