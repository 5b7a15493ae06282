"""What rules report (`Hit`), the `Alert` the detector returns for it, and the cooldown between.

A hit names its group (the values of the rule's group-by fields); rule + group give the
fingerprint. The first hit of a fingerprint opens an incident and fires; later hits inside
the rule's cooldown are counted onto that incident and come back as `repeat` alerts with
the same fingerprint and `first_seen_at`, so delivery can thread them.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from datetime import datetime

from monitor.alerts import Alert, Evidence, Severity
from monitor.detect.config import RuleConfig
from monitor.detect.state import DetectorState, Incident, from_us, span_us, to_us

EVIDENCE_LIMIT = 10
"""Most event ids kept as evidence on one alert."""

Group = tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True)
class Hit:
    group: Group
    summary: str
    evidence: tuple[str, ...]
    first_seen_at: datetime
    last_seen_at: datetime
    severity: Severity | None = None


@functools.lru_cache(maxsize=65_536)
def fingerprint(rule: str, group: Group) -> str:
    """`<rule>:<hash of the group>`: stable across restarts, bounded, free of client text."""
    canonical = json.dumps([rule, [list(pair) for pair in group]], ensure_ascii=False)
    return f"{rule}:{hashlib.sha256(canonical.encode()).hexdigest()[:24]}"


def _bounded(ids: list[str]) -> list[str]:
    unique = list(dict.fromkeys(ids))
    return unique[-EVIDENCE_LIMIT:]


def record_hit(state: DetectorState, config: RuleConfig, hit: Hit) -> Alert:
    """The alert for `hit`: a new incident, or a repeat counted onto one inside the cooldown."""
    key = fingerprint(config.name, hit.group)
    severity = hit.severity or config.severity
    last = to_us(hit.last_seen_at)
    incident = state.incidents.get(key)
    repeat = incident is not None and last < incident.fired + span_us(config.cooldown)
    if incident is not None and repeat:
        incident.count += 1
        incident.last_seen = max(incident.last_seen, last)
        incident.evidence = _bounded(incident.evidence + list(hit.evidence))
        if severity.rank > Severity(incident.severity).rank:
            incident.severity = severity.value
    else:
        incident = Incident(
            rule=config.name,
            fired=last,
            first_seen=to_us(hit.first_seen_at),
            last_seen=last,
            count=1,
            severity=severity.value,
            evidence=_bounded(list(hit.evidence)),
        )
        state.incidents[key] = incident
    return Alert(
        rule=config.name,
        severity=Severity(incident.severity),
        mode=config.mode,
        fingerprint=key,
        subject=dict(hit.group),
        summary=hit.summary,
        evidence=Evidence(event_ids=tuple(incident.evidence)),
        first_seen_at=from_us(incident.first_seen),
        last_seen_at=from_us(incident.last_seen),
        count=incident.count,
        repeat=repeat,
    )


def coalesce(alerts: list[Alert]) -> list[Alert]:
    """One alert per incident (fingerprint + first seen): the latest state of each, in order.

    The earliest alert of an incident decides `repeat`; the severity is the highest seen.
    """
    merged: dict[tuple[str, datetime], Alert] = {}
    for alert in alerts:
        key = (alert.fingerprint, alert.first_seen_at)
        earlier = merged.get(key)
        if earlier is None:
            merged[key] = alert
            continue
        severity = max(earlier.severity, alert.severity, key=lambda s: s.rank)
        merged[key] = dataclasses.replace(alert, repeat=earlier.repeat, severity=severity)
    return list(merged.values())
