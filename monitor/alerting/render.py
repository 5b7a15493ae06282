"""Alerts as Slack messages: Block Kit blocks plus a plain `text` fallback; pure.

Every value that a client can influence (repository, tag, user, user agent, address, subject
and evidence values, the summary) goes through `slack_text`: control, bidi and zero-width
characters are removed, newlines collapsed, backticks replaced, `&`, `<`, `>` escaped (so
`<!channel>`, `<@U123>` or `<https://evil|click>` mention and link nobody), and the result is
cut to the Block Kit limit without splitting an escape sequence. mrkdwn objects carry
`verbatim: true` so Slack does not turn bare `@channel` or URLs into mentions and links.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from monitor.alerts import Alert, AlertState, Digest, Severity
from monitor.events import utc

HEADER_LIMIT = 150
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
CONTEXT_LIMIT = 2000
TEXT_LIMIT = 3000
FIELDS_PER_SECTION = 10
MAX_SUBJECT_FIELDS = 20
MAX_EVIDENCE_ROWS = 5
MAX_EVIDENCE_IDS = 10
MAX_DIGEST_LINES = 10
ELLIPSIS = "…"

_SEVERITY_EMOJI = {
    Severity.INFO: ":information_source:",
    Severity.WARNING: ":warning:",
    Severity.CRITICAL: ":rotating_light:",
}
_RESOLVED_EMOJI = ":white_check_mark:"

# C0/C1 controls, bidi embeddings/overrides/isolates and marks, zero-width characters, BOM.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]"
)
_NEWLINES = re.compile(r"[\r\n\t\u2028\u2029]+")


@dataclasses.dataclass(frozen=True, slots=True)
class SlackMessage:
    """What `chat.postMessage`, `chat.update` or an incoming webhook is given."""

    text: str
    blocks: tuple[Mapping[str, Any], ...]

    def blocks_list(self) -> list[dict[str, Any]]:
        return [dict(block) for block in self.blocks]


def escape_mrkdwn(value: str) -> str:
    """`&`, `<` and `>` as Slack's HTML entities (`&` first)."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(escaped: str, limit: int) -> str:
    """`escaped` cut to at most `limit` characters with a trailing ellipsis, never mid-entity."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if len(escaped) <= limit:
        return escaped
    head = escaped[: limit - len(ELLIPSIS)]
    amp = head.rfind("&")
    if amp != -1 and ";" not in head[amp:]:
        head = head[:amp]
    return head + ELLIPSIS


def sanitize(value: str) -> str:
    """`value` without invisible characters, newlines collapsed and backticks made harmless."""
    value = _INVISIBLE.sub("", value)
    value = _NEWLINES.sub(" ", value)
    return value.replace("`", "'")


def slack_text(value: str, limit: int = SECTION_LIMIT) -> str:
    """A client-controlled `value` made safe for mrkdwn and cut to `limit` characters."""
    return truncate(escape_mrkdwn(sanitize(value)), limit)


def _code(value: str, limit: int) -> str:
    """`value` made safe and shown as inline code, the whole within `limit` characters."""
    return f"`{slack_text(value, limit - 2)}`"


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _label(key: str) -> str:
    return key.replace("_", " ").capitalize()


def _when(value: datetime) -> str:
    return utc(value).strftime("%Y-%m-%d %H:%M:%S UTC")


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": text, "emoji": True}}


def _header_text(alert: Alert, resolved: bool) -> str:
    emoji = _RESOLVED_EMOJI if resolved else _SEVERITY_EMOJI[alert.severity]
    state = "Resolved: " if resolved else ""
    prefix = f"{emoji} {state}"
    return prefix + slack_text(alert.rule, HEADER_LIMIT - len(prefix))


def _fields(alert: Alert, resolved: bool) -> list[dict[str, Any]]:
    fields = [
        _mrkdwn(f"*Severity*\n{alert.severity.value}"),
        _mrkdwn(f"*State*\n{AlertState.RESOLVED.value if resolved else alert.state.value}"),
    ]
    for key in sorted(alert.subject)[:MAX_SUBJECT_FIELDS]:
        label = f"*{slack_text(_label(key), 100)}*\n"
        fields.append(_mrkdwn(label + _code(alert.subject[key], FIELD_LIMIT - len(label))))
    return fields


def _context(alert: Alert) -> dict[str, Any]:
    text = (
        f"First seen {_when(alert.first_seen_at)} · Last seen {_when(alert.last_seen_at)} · "
        f"Count {alert.count} · Fingerprint "
    )
    return {
        "type": "context",
        "elements": [_mrkdwn(text + _code(alert.fingerprint, CONTEXT_LIMIT - len(text)))],
    }


def _evidence(alert: Alert) -> dict[str, Any] | None:
    evidence = alert.evidence
    if not evidence.event_ids and not evidence.rows:
        return None
    lines = [f"*Evidence* ({len(evidence.event_ids)} events)"]
    for row in evidence.rows[:MAX_EVIDENCE_ROWS]:
        parts = [f"{slack_text(key, 60)}={_code(value, 300)}" for key, value in sorted(row.items())]
        lines.append("• " + " ".join(parts))
    if len(evidence.rows) > MAX_EVIDENCE_ROWS:
        lines.append(f"… and {len(evidence.rows) - MAX_EVIDENCE_ROWS} more rows")
    if evidence.event_ids:
        shown = " ".join(_code(i, 80) for i in evidence.event_ids[:MAX_EVIDENCE_IDS])
        more = len(evidence.event_ids) - MAX_EVIDENCE_IDS
        lines.append("Event ids: " + shown + (f" … and {more} more" if more > 0 else ""))
    return {"type": "section", "text": _mrkdwn(_join_within(lines, SECTION_LIMIT))}


def _join_within(lines: Sequence[str], limit: int) -> str:
    """Whole lines joined by newlines while they fit in `limit`, then an ellipsis line."""
    out: list[str] = []
    used = 0
    for line in lines:
        cost = len(line) + (1 if out else 0)
        if used + cost > limit - 2:
            out.append(ELLIPSIS)
            break
        out.append(line)
        used += cost
    return "\n".join(out)


def _fallback(alert: Alert, resolved: bool, lead: str = "") -> str:
    tag = "RESOLVED" if resolved else alert.severity.value.upper()
    prefix = f"{lead}[{tag}] "
    body = f"{alert.rule}: {alert.summary} (count {alert.count})"
    return prefix + slack_text(body, TEXT_LIMIT - len(prefix))


def _alert_blocks(alert: Alert, resolved: bool) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [_header(_header_text(alert, resolved))]
    if alert.summary:
        blocks.append({"type": "section", "text": _mrkdwn(slack_text(alert.summary))})
    fields = _fields(alert, resolved)
    for start in range(0, len(fields), FIELDS_PER_SECTION):
        blocks.append({"type": "section", "fields": fields[start : start + FIELDS_PER_SECTION]})
    blocks.append(_context(alert))
    evidence = _evidence(alert)
    if evidence is not None:
        blocks.append(evidence)
    return blocks


def render_alert(alert: Alert) -> SlackMessage:
    """The first message of an alert (the resolved look when `alert.state` is resolved)."""
    resolved = alert.state is AlertState.RESOLVED
    return SlackMessage(
        text=_fallback(alert, resolved), blocks=tuple(_alert_blocks(alert, resolved))
    )


def render_resolved(alert: Alert) -> SlackMessage:
    """The first message rewritten to show the alert resolved (for `chat.update`)."""
    return SlackMessage(text=_fallback(alert, True), blocks=tuple(_alert_blocks(alert, True)))


def render_repeat(alert: Alert) -> SlackMessage:
    """A short self-contained note that an alert fired again (a thread reply, or a message)."""
    subject = " ".join(
        f"{slack_text(_label(key), 60)} {_code(alert.subject[key], 300)}"
        for key in sorted(alert.subject)[:MAX_SUBJECT_FIELDS]
    )
    head = (
        f"{_SEVERITY_EMOJI[alert.severity]} *{slack_text(alert.rule, 200)}* fired again: "
        f"count {alert.count}, last seen {_when(alert.last_seen_at)}"
    )
    text = _join_within([head, subject] if subject else [head], SECTION_LIMIT)
    return SlackMessage(
        text=_fallback(alert, False, lead="Repeat "),
        blocks=({"type": "section", "text": _mrkdwn(text)},),
    )


def render_digest(digest: Digest) -> SlackMessage:
    """One message listing the alerts of a rule that the hourly budget held back."""
    n = len(digest.alerts)
    window = f"{_when(digest.window_start)} to {_when(digest.window_end)}"
    rule = slack_text(digest.rule, 100)
    header = _header(f":zzz: Digest: {slack_text(digest.rule, HEADER_LIMIT - 20)}")
    plural = "s" if n != 1 else ""
    intro = f"{n} alert{plural} of *{rule}* held back by the hourly budget, {window}."
    lines = [intro]
    for alert in digest.alerts[:MAX_DIGEST_LINES]:
        subject = ", ".join(
            f"{slack_text(key, 60)} {_code(alert.subject[key], 200)}"
            for key in sorted(alert.subject)[:5]
        )
        what = subject or slack_text(alert.summary, 300)
        lines.append(f"• {alert.severity.value} · count {alert.count} · {what}")
    if n > MAX_DIGEST_LINES:
        lines.append(f"… and {n - MAX_DIGEST_LINES} more")
    return SlackMessage(
        text=f"[DIGEST] {n} suppressed alert{plural} for {rule}",
        blocks=(header, {"type": "section", "text": _mrkdwn(_join_within(lines, SECTION_LIMIT))}),
    )
