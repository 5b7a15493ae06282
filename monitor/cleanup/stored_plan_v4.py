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

from monitor.cleanup.plan import DigestAction, Plan, Selection, TagDecision
from monitor.cleanup.plan_chunks import actions_of, entries_selection, repository_decisions

MAGIC_V4 = b"RMP4"
_LENGTH = struct.Struct(">I")
_PREFIX = "sha256:"


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
    return tuple(actions_of(orjson.loads(zlib.decompress(packed)), digests))


def _decisions(packed: bytes, named: dict[tuple[str, str], str]) -> list[TagDecision]:
    decisions: list[TagDecision] = []
    for name, groups in orjson.loads(zlib.decompress(packed)):

        def digests(group: list[Any], name: str = name) -> list[str | None]:
            tags = group[4]
            refs = group[5] if len(group) > 5 else ["@"] * len(tags)
            return [
                named[(name, tag)] if ref == "@" else _long(ref)
                for tag, ref in zip(tags, refs, strict=True)
            ]

        decisions.extend(repository_decisions(name, groups, digests))
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
    entries_selection(orjson.loads(zlib.decompress(decisions)), selection)
    return selection
