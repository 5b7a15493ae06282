"""Detector state: sliding windows, learned baselines and open incidents, as plain data.

Everything here converts to JSON and back exactly (times are integer microseconds since the
Unix epoch), so the store can persist the state and a restart keeps open windows. Memory is
bounded: windows are pruned to their duration and capped per key, `sweep` drops keys that
went quiet, and `bound` caps how many windows and incidents there are.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import heapq
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from monitor.errors import ParseError

STATE_VERSION = 2
"""Version 2 saves the protected tags by repository (`{repository: {tag: digest}}`); version 1
saved them flat (`{"<repository>:<tag>": digest}`), and is still read."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Entry = tuple[int, str]
"""(time in microseconds, event id)."""


def to_us(moment: datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def span_us(duration: timedelta) -> int:
    return (duration.days * 86_400 + duration.seconds) * 1_000_000 + duration.microseconds


@dataclasses.dataclass
class Incident:
    """A fingerprint that fired; repeats inside the cooldown are counted onto it."""

    rule: str
    fired: int
    first_seen: int
    last_seen: int
    count: int
    severity: str
    evidence: list[str]


@dataclasses.dataclass
class Baseline:
    """Addresses an account was seen from (address → last seen), learned since `since`.

    `ordered` says the dictionary's order is that of last seen: its last address is then the
    newest, and the oldest lead it (the first few, when several were seen at once), without a
    walk over all of them. Addresses seen in time order keep it so (`see` moves each to the
    end); a late one clears it, and `drop_oldest` sorts once to restore it. Not a field: never
    saved, nor compared."""

    since: int
    addresses: dict[str, int]

    def __post_init__(self) -> None:
        self.ordered = len(self.addresses) < 2

    def see(self, address: str, moment: int) -> None:
        """`address` seen at `moment` (its last seen only ever moves later)."""
        addresses = self.addresses
        last = addresses.pop(address, None)
        if last is not None and last > moment:
            moment = last
        if self.ordered and addresses and moment < next(reversed(addresses.values())):
            self.ordered = False
        addresses[address] = moment

    def newest(self) -> int:
        """When the account was last seen from any address (0 with none)."""
        if self.ordered:
            return next(reversed(self.addresses.values()), 0)
        return max(self.addresses.values(), default=0)

    def drop_oldest(self) -> None:
        """Forget the address seen longest ago (of several seen then, the least address)."""
        if not self.ordered:
            ranked = sorted(self.addresses.items(), key=lambda item: item[1])
            self.addresses, self.ordered = dict(ranked), True
        items = iter(self.addresses.items())
        oldest, seen = next(items)
        for address, moment in items:
            if moment != seen:
                break
            oldest = min(oldest, address)
        del self.addresses[oldest]


@dataclasses.dataclass
class DetectorState:
    counts: dict[str, list[Entry]] = dataclasses.field(default_factory=dict)
    distinct: dict[str, dict[str, Entry]] = dataclasses.field(default_factory=dict)
    volumes: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    baselines: dict[str, Baseline] = dataclasses.field(default_factory=dict)
    tags: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    """Protected tags' digests by repository and tag (rule `tag_moved`): a manifest deleted by
    digest looks through its repository's tags only. Saved so since version 2 of the state."""
    incidents: dict[str, Incident] = dataclasses.field(default_factory=dict)


@functools.lru_cache(maxsize=65_536)
def window_key(rule: str, group: tuple[tuple[str, str], ...]) -> str:
    """`<rule>|<JSON list of the group's values>`; cached, as the same groups recur."""
    return rule + "|" + json.dumps([value for _, value in group], ensure_ascii=False)


def rule_of_key(key: str) -> str:
    """The rule that owns a window key (`<rule>[/<part>]|<group>`)."""
    return key.split("|", 1)[0].split("/", 1)[0]


def add_count(
    state: DetectorState, key: str, at: int, event_id: str, window: int, cap: int
) -> list[Entry]:
    """Record one occurrence; the occurrences in the window that ends at `at`, oldest first."""
    entries = state.counts.setdefault(key, [])
    item = (at, event_id)
    position = bisect.bisect_left(entries, item)
    if position == len(entries) or entries[position] != item:
        entries.insert(position, item)
    newest = entries[-1][0]
    stale = bisect.bisect_left(entries, (newest - window, ""))
    del entries[: max(stale, len(entries) - cap)]
    return in_window(state, key, at, window)


def in_window(state: DetectorState, key: str, at: int, window: int) -> list[Entry]:
    """The recorded occurrences with `at - window <= time <= at`, oldest first."""
    return [e for e in state.counts.get(key, ()) if at - window <= e[0] <= at]


def add_distinct(
    state: DetectorState, key: str, value: str, at: int, event_id: str, window: int, cap: int
) -> list[Entry]:
    """Record `value`; one entry per distinct value seen in the window ending at `at`."""
    values = state.distinct.setdefault(key, {})
    previous = values.get(value)
    if previous is None or previous[0] <= at:
        values[value] = (at, event_id)
    times = [entry[0] for entry in values.values()]
    floor = max(times) - window
    if len(values) > cap or min(times) < floor:  # else every value is kept as it is
        kept = sorted(
            ((entry, name) for name, entry in values.items() if entry[0] >= floor),
            reverse=True,
        )[:cap]
        values = state.distinct[key] = {name: entry for entry, name in kept}
    return sorted(e for e in values.values() if at - window <= e[0] <= at)


def add_volume(state: DetectorState, key: str, amount: int, at: int, window: int) -> int:
    """Add `amount` at `at`; the total in the window ending at `at` (buckets of window/12)."""
    width = _bucket_width(window)
    buckets = state.volumes.setdefault(key, {})
    name = str(at - at % width)
    buckets[name] = buckets.get(name, 0) + amount
    starts = [(int(s), s) for s in buckets]
    floor = max(starts)[0] - window
    total = 0
    for start, s in starts:
        if start + width <= floor:
            del buckets[s]  # too old for any window ending at or after the newest bucket
        elif at - window < start + width and start <= at:
            total += buckets[s]
    return total


def sweep(
    state: DetectorState,
    now: int,
    windows: dict[str, int],
    cooldowns: dict[str, int],
    forget_after: int,
) -> None:
    """Drop windows, incidents and learned addresses that can no longer matter at `now`."""
    for key in [k for k, v in state.counts.items() if not v or _quiet(k, v[-1][0], now, windows)]:
        del state.counts[key]
    for key in [
        k
        for k, v in state.distinct.items()
        if not v or _quiet(k, max(e[0] for e in v.values()), now, windows)
    ]:
        del state.distinct[key]
    for key in [k for k, v in state.volumes.items() if not v or _quiet_volume(k, v, now, windows)]:
        del state.volumes[key]
    for fingerprint in [
        f
        for f, incident in state.incidents.items()
        if incident.fired + cooldowns.get(incident.rule, 0) <= now
    ]:
        del state.incidents[fingerprint]
    for actor, baseline in list(state.baselines.items()):
        baseline.addresses = {
            ip: seen for ip, seen in baseline.addresses.items() if seen > now - forget_after
        }
        if not baseline.addresses:
            del state.baselines[actor]


MAX_WINDOWS = 50_000
"""Most windows of each kind (occurrences, distinct values, volumes), and most open incidents,
the state keeps. A failed login names any account, and the address a registry records can be
any the client claims: each new one opens windows that would otherwise stay for the rule's
window. `bound` keeps the state (its memory, and the core a save writes) within the cap."""


def bound(state: DetectorState, limit: int) -> int:
    """Drops the windows and incidents beyond `limit` of each kind: those holding the fewest
    entries first (a flood's are single), of those the ones whose newest entry is oldest.
    Returns how many it dropped."""
    return (
        _bound(state.counts, lambda v: (len(v), v[-1][0] if v else 0), limit)
        + _bound(
            state.distinct, lambda v: (len(v), max((e[0] for e in v.values()), default=0)), limit
        )
        + _bound(state.volumes, lambda v: (len(v), max((int(s) for s in v), default=0)), limit)
        + _bound(state.incidents, lambda i: (i.count, i.last_seen), limit)
    )


def _bound(windows: dict[str, Any], weight: Callable[[Any], tuple[int, int]], limit: int) -> int:
    excess = len(windows) - limit
    if excess <= 0:
        return 0
    for key in heapq.nsmallest(excess, windows, key=lambda k: (*weight(windows[k]), k)):
        del windows[key]
    return excess


def _bucket_width(window: int) -> int:
    return max(window // 12, 1_000_000)


def _quiet_volume(key: str, buckets: dict[str, int], now: int, windows: dict[str, int]) -> bool:
    window = windows.get(rule_of_key(key))
    if window is None:
        return True
    return max(int(s) for s in buckets) + _bucket_width(window) <= now - window


def _quiet(key: str, newest: int, now: int, windows: dict[str, int]) -> bool:
    window = windows.get(rule_of_key(key))
    return window is None or newest < now - window


def copy_state(state: DetectorState) -> DetectorState:
    """An independent copy (what `copy.deepcopy` gives, without its generic walk)."""
    return DetectorState(
        counts={k: list(v) for k, v in state.counts.items()},
        distinct={k: dict(v) for k, v in state.distinct.items()},
        volumes={k: dict(v) for k, v in state.volumes.items()},
        baselines={a: _copy_baseline(b) for a, b in state.baselines.items()},
        tags={repository: dict(tags) for repository, tags in state.tags.items()},
        incidents={
            f: dataclasses.replace(i, evidence=list(i.evidence)) for f, i in state.incidents.items()
        },
    )


def _copy_baseline(baseline: Baseline) -> Baseline:
    copied = Baseline(since=baseline.since, addresses=dict(baseline.addresses))
    copied.ordered = baseline.ordered
    return copied


def document_of(state: DetectorState) -> dict[str, Any]:
    """The state as a version 2 document (plain data; `state_to_json` writes it)."""
    return {
        "version": STATE_VERSION,
        "counts": state.counts,
        "distinct": state.distinct,
        "volumes": state.volumes,
        "baselines": {
            actor: {"since": b.since, "addresses": b.addresses}
            for actor, b in state.baselines.items()
        },
        "tags": state.tags,
        "incidents": {
            f: {
                "rule": i.rule,
                "fired": i.fired,
                "first_seen": i.first_seen,
                "last_seen": i.last_seen,
                "count": i.count,
                "severity": i.severity,
                "evidence": i.evidence,
            }
            for f, i in state.incidents.items()
        },
    }


def state_to_json(state: DetectorState) -> str:
    """The state as one JSON document (stable key order)."""
    # orjson writes what json.dumps(sort_keys, ensure_ascii=False, compact) writes, faster.
    return orjson.dumps(document_of(state), option=orjson.OPT_SORT_KEYS).decode()


def state_from_json(text: str) -> DetectorState:
    """The state saved by `state_to_json`; ParseError when it is not one."""
    try:
        return state_from_document(orjson.loads(text))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ParseError("detector_state", f"invalid detector state: {exc}") from exc


def state_from_document(document: Any) -> DetectorState:
    """The state a version 1 or 2 document holds (ValueError, TypeError, KeyError or
    AttributeError when it holds none)."""
    version = document.get("version") if isinstance(document, dict) else None
    if type(version) is not int or version not in (1, STATE_VERSION):
        raise ValueError(f"expected a version 1 or {STATE_VERSION} detector state")
    return _from_document(document)


def _entry(value: Any) -> Entry:
    at, event_id = value
    if not isinstance(at, int) or not isinstance(event_id, str):
        raise TypeError("a window entry is [microseconds, event id]")
    return (at, event_id)


def _tags(document: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The protected tags by repository, as version 2 saves them or from version 1's flat
    `<repository>:<tag>` keys (a repository's name has no colon)."""
    saved = document["tags"]
    if document["version"] != 1:
        return {str(r): {str(t): _digest(d) for t, d in tags.items()} for r, tags in saved.items()}
    tags: dict[str, dict[str, str]] = {}
    for key, digest in saved.items():
        repository, colon, tag = key.partition(":")
        if not colon:
            raise ValueError(f"a version 1 tag is saved as <repository>:<tag>, not {key!r}")
        tags.setdefault(repository, {})[tag] = _digest(digest)
    return tags


def _digest(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("a tag's digest is a string")
    return value


def _from_document(document: dict[str, Any]) -> DetectorState:
    return DetectorState(
        counts={k: [_entry(e) for e in v] for k, v in document["counts"].items()},
        distinct={
            k: {name: _entry(e) for name, e in v.items()} for k, v in document["distinct"].items()
        },
        volumes={k: {s: int(n) for s, n in v.items()} for k, v in document["volumes"].items()},
        baselines={
            actor: Baseline(
                since=int(b["since"]),
                addresses={ip: int(t) for ip, t in b["addresses"].items()},
            )
            for actor, b in document["baselines"].items()
        },
        tags=_tags(document),
        incidents={
            f: Incident(
                rule=str(i["rule"]),
                fired=int(i["fired"]),
                first_seen=int(i["first_seen"]),
                last_seen=int(i["last_seen"]),
                count=int(i["count"]),
                severity=str(i["severity"]),
                evidence=[str(e) for e in i["evidence"]],
            )
            for f, i in document["incidents"].items()
        },
    )
