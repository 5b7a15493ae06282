"""Reading plans stored in formats 2 and 3 (before format 4 of monitor.cleanup.stored_plan),
which name every tag's digest. Pure; raises what it meets (the caller turns it into
ParseError).

Format 3: `MAGIC_V3`, the length of the first part, then two zlib streams: a document with
the decisions of each repository grouped by (decision, reason, policy, detail), each group a
list of tags and a list of their digests (`@` for a tag an action deletes: the action names
it), then the actions as one JSON list. Format 2: one zlib stream of the document, actions
included.
"""

from __future__ import annotations

import struct
import zlib
from datetime import datetime
from typing import Any

import orjson

from monitor.cleanup.model import TagRef
from monitor.cleanup.plan import Decision, DigestAction, Plan, Reason, Selection, TagDecision

MAGIC_V3 = b"RMP3"
_LENGTH = struct.Struct(">I")
_PREFIX = "sha256:"
_BY_ACTION = "@"


def _long(short: str) -> str:
    return short[1:] if short.startswith("=") else _PREFIX + short


def _parts(data: bytes) -> tuple[dict[str, Any], bytes | None]:
    """The decisions document and the compressed actions (None in format 2, whose
    document holds them)."""
    if data.startswith(MAGIC_V3):
        (length,) = _LENGTH.unpack_from(data, len(MAGIC_V3))
        start = len(MAGIC_V3) + _LENGTH.size
        document = orjson.loads(zlib.decompress(data[start : start + length]))
        if not isinstance(document, dict) or document.get("format") != 3:
            raise ValueError("not a stored plan of format 3")
        return document, data[start + length :]
    document = orjson.loads(zlib.decompress(data))
    if not isinstance(document, dict) or document.get("format") != 2:
        raise ValueError("not a stored plan of format 2, 3 or 4")
    return document, None


def decode_v3(data: bytes) -> Plan:
    """The plan stored as `data` in format 2 or 3."""
    document, packed = _parts(data)
    rows = document["actions"] if packed is None else orjson.loads(zlib.decompress(packed))
    actions = tuple(
        DigestAction(repo, _long(digest), tuple(tags), Reason(reason), policy, media_type)
        for repo, digest, tags, reason, policy, media_type in rows
    )
    by_action = {(a.repository, tag): a.digest for a in actions if a.tags for tag in a.tags}
    decisions: list[TagDecision] = []
    for name, groups in document["repositories"]:
        mine: list[TagDecision] = []
        for decision, reason, policy, detail, tags, digests in groups:
            kind, why = Decision(decision), Reason(reason)
            mine.extend(
                TagDecision(
                    name,
                    tag,
                    by_action[(name, tag)] if digest == _BY_ACTION else _long(digest),
                    kind,
                    why,
                    policy,
                    detail,
                )
                for tag, digest in zip(tags, digests, strict=True)
            )
        mine.sort(key=lambda d: d.tag)
        decisions.extend(mine)
    return Plan(
        datetime.fromisoformat(document["created_at"]),
        tuple(decisions),
        actions,
        int(document["bytes_freed"]),
    )


def selection_v3(data: bytes) -> Selection:
    """The tags a format 3 plan deletes, read from its decisions alone."""
    document, _packed = _parts(data)
    selection: Selection = {}
    for name, groups in document["repositories"]:
        for decision, reason, _policy, detail, tags, _digests in groups:
            if decision == Decision.DELETE.value:
                why = Reason(reason)
                for tag in tags:
                    selection[TagRef(name, tag)] = (why, detail)
    return selection
