"""Reading plans stored in format 4 (before format 5 of monitor.cleanup.stored_plan). Pure;
raises what it meets (the caller turns it into ParseError).

Format 4: `MAGIC_V4`, then three parts each after its 4-byte length, then the digests: a
header (JSON: format, created_at, bytes_freed); the decisions (one zlib stream of JSON: per
repository, one group per (decision, reason, policy, detail) listing its tags, and for a
delete group the digests of its tags only when some action does not name them); the actions
(one zlib stream of JSON: runs of consecutive actions of one repository, each action its
tags, reason, policy and media type, and its digest when that is not a SHA-256 digest in
lower-case hexadecimal); the SHA-256 digests of the other actions, 32 bytes each in order.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson

from monitor.cleanup.model import TagRef
from monitor.cleanup.plan import (
    Decision,
    DigestAction,
    Plan,
    Reason,
    Selection,
    TagDecision,
)

MAGIC_V4 = b"RMP4"
_LENGTH = struct.Struct(">I")
_PREFIX = "sha256:"
_DIGEST_BYTES = 32


def _long(short: str) -> str:
    return short[1:] if short.startswith("=") else _PREFIX + short


def _named_by_actions(actions: Iterable[DigestAction]) -> dict[tuple[str, str], str]:
    return {(a.repository, tag): a.digest for a in actions if a.tags for tag in a.tags}


def _parts(data: bytes) -> tuple[dict[str, Any], list[bytes], bytes]:
    """The header, the compressed parts after it, and the digests of a format 4 plan."""
    offset = len(MAGIC_V4)
    parts: list[bytes] = []
    for _ in range(3):
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if offset + length > len(data):
            raise ValueError("stored plan is cut short")
        parts.append(data[offset : offset + length])
        offset += length
    header = orjson.loads(parts[0])
    if not isinstance(header, dict) or header.get("format") != 4:
        raise ValueError("not a stored plan of format 4")
    return header, parts[1:], data[offset:]


def _actions(packed: bytes, digests: bytes) -> tuple[DigestAction, ...]:
    out: list[DigestAction] = []
    offset = 0
    for repository, rows in orjson.loads(zlib.decompress(packed)):
        for row in rows:
            tags, reason, policy, media_type = row[:4]
            if len(row) == 5:
                digest = str(row[4])
            else:
                raw = digests[offset : offset + _DIGEST_BYTES]
                if len(raw) != _DIGEST_BYTES:
                    raise ValueError("stored plan lacks the digests of its actions")
                digest = _PREFIX + raw.hex()
                offset += _DIGEST_BYTES
            out.append(
                DigestAction(repository, digest, tuple(tags), Reason(reason), policy, media_type)
            )
    if offset != len(digests):
        raise ValueError("stored plan has digests no action names")
    return tuple(out)


def _decisions(packed: bytes, named: dict[tuple[str, str], str]) -> list[TagDecision]:
    decisions: list[TagDecision] = []
    for name, groups in orjson.loads(zlib.decompress(packed)):
        mine: list[TagDecision] = []
        for group in groups:
            decision, reason, policy, detail, tags = group[:5]
            kind, why = Decision(decision), Reason(reason)
            found: list[str | None]
            if kind is Decision.DELETE:
                digests = group[5] if len(group) > 5 else ["@"] * len(tags)
                found = [
                    named[(name, tag)] if digest == "@" else _long(digest)
                    for tag, digest in zip(tags, digests, strict=True)
                ]
            else:
                found = [None] * len(tags)
            mine.extend(
                TagDecision(name, tag, digest, kind, why, policy, detail)
                for tag, digest in zip(tags, found, strict=True)
            )
        mine.sort(key=lambda d: d.tag)
        decisions.extend(mine)
    return decisions


def decode_v4(data: bytes) -> Plan:
    """The plan stored as `data` in format 4."""
    header, (decisions, actions), digests = _parts(data)
    loaded = _actions(actions, digests)
    return Plan(
        datetime.fromisoformat(header["created_at"]),
        tuple(_decisions(decisions, _named_by_actions(loaded))),
        loaded,
        int(header["bytes_freed"]),
    )


def selection_v4(data: bytes) -> Selection:
    """The tags a format 4 plan deletes, read from its decisions alone."""
    _header, (decisions, _actions), _digests = _parts(data)
    selection: Selection = {}
    for name, groups in orjson.loads(zlib.decompress(decisions)):
        for decision, reason, _policy, detail, tags, *_ in groups:
            if decision == Decision.DELETE.value:
                why = Reason(reason)
                for tag in tags:
                    selection[TagRef(name, tag)] = (why, detail)
    return selection
