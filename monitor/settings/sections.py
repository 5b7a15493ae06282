"""The settings sections: one frozen dataclass per section, each field documented.

`setting(default, doc, secret=...)` (monitor.settings.fields) declares a field; the loader
(monitor.settings.loader) reads the types and the docs from here, so a new key needs nothing
else.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from monitor.settings.fields import Secret, setting


@dataclasses.dataclass(frozen=True)
class DatabaseSettings:
    url: Secret | None = setting(
        None,
        "SQLAlchemy URL of the store. Default: SQLite in `data_dir`. PostgreSQL: "
        "`postgresql+psycopg://user:password@host/db`.",
        secret=True,
    )
    data_dir: Path = setting(Path("./data"), "Directory for the embedded SQLite store.")
    migrate_on_start: bool = setting(
        True,
        "`serve` upgrades the schema before it listens (in a child process, only when the "
        "store is behind).",
    )
    pool_size: int = setting(5, "Connections kept open to PostgreSQL.")
    sqlite_synchronous: str = setting(
        "FULL", "SQLite `synchronous` pragma: FULL (every commit survives power loss) or NORMAL."
    )
    sqlite_busy_timeout_seconds: float = setting(
        30.0,
        "How long a SQLite write waits for another process's lock before the store counts as "
        "unavailable (intake answers 503).",
    )

    def effective_url(self) -> str:
        if self.url is not None:
            return self.url.reveal()
        return f"sqlite:///{self.data_dir / 'registry-monitor.db'}"


@dataclasses.dataclass(frozen=True)
class HttpSettings:
    addr: str = setting("127.0.0.1:5080", "Listen address `host:port`.")
    tls_cert: Path | None = setting(None, "PEM certificate file; with `tls_key`, serve HTTPS.")
    tls_key: Path | None = setting(None, "PEM private key file for `tls_cert`.")
    max_body_bytes: int = setting(1024 * 1024, "Largest accepted request body; above it, 413.")
    max_connections: int = setting(
        4096,
        "Most open connections (and requests in progress) at once; above it, every new request "
        "is answered 503 at once (uvicorn's `limit_concurrency`) until idle ones are closed.",
    )
    keep_alive_seconds: float = setting(
        5.0, "An idle keep-alive connection is closed after this long (uvicorn's default)."
    )
    header_timeout_seconds: float = setting(
        10.0, "A connection whose request line and headers are not complete after this is closed."
    )
    body_timeout_seconds: float = setting(
        30.0, "A request whose body has not arrived whole after this is answered 408."
    )
    large_body_slots: int = setting(
        2,
        "Request bodies above 64 KiB read and parsed at once (log batches, hostile bodies); "
        "others wait up to `body_timeout_seconds`, then 503. Bounds memory.",
    )
    read_slots: int = setting(
        2,
        "Read API requests (events, tags, daily counts, alerts, …) processed at once; others wait.",
    )
    read_queue: int = setting(
        32, "Read requests waiting for a slot; one more is answered 503 with Retry-After at once."
    )
    read_wait_seconds: float = setting(
        10.0, "Longest a read request waits for a slot; then 503 with Retry-After."
    )
    reads: str = setting(
        "process",
        "Where read API requests are answered: `process` (a child process, so building pages "
        "never takes the interpreter from intake; forked at start-up: about 20 MiB more "
        "memory) or `thread` (worker threads of the serving process).",
    )
    switch_interval_seconds: float = setting(
        0.0005,
        "How long a thread running Python code (a read, detection, retention) keeps the GIL "
        "while the event loop waits for it (`sys.setswitchinterval` in `serve`; Python's "
        "default is 0.005).",
    )
    max_header_bytes: int = setting(
        16 * 1024, "Largest request line plus headers; above it, the connection is closed (400)."
    )

    @property
    def host(self) -> str:
        return self.addr.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.addr.rsplit(":", 1)[1])


@dataclasses.dataclass(frozen=True)
class NotificationsSettings:
    tokens: list[Secret] = setting(
        [],
        "Bearer tokens the registry sends (`Authorization: Bearer <token>`). Several are "
        "accepted at once, for rotation. Comma-separated in the environment.",
        secret=True,
    )
    insecure_no_token: bool = setting(
        False, "Accept notifications without any token. Only for trusted networks."
    )
    batch_max: int = setting(512, "Most events committed in one store transaction (group commit).")
    inbox_max: int = setting(
        100_000,
        "Most notification bodies waiting in the intake inbox to be applied; beyond it intake "
        "answers 503 (the registry keeps the event and retries) until the store catches up.",
    )
    inbox_file: Path | None = setting(
        None,
        "Where intake keeps each body it answered for until its events are stored. Unset: "
        "beside an SQLite store (`<store>.intake` and `<store>.intake-2`), or in PostgreSQL's "
        "`intake_inbox` table, where a replica that stops for good leaves its bodies to the "
        "others. A path: a file of this replica's own and its second, `<path>-2` (synced as "
        "`database.sqlite_synchronous` says), so an answer "
        "waits for the local disk instead of a round trip to PostgreSQL, and intake goes on "
        "answering through a PostgreSQL outage (up to `inbox_max` bodies); give every replica "
        "its own, kept across restarts.",
    )
    heartbeat_seconds: float = setting(
        15.0, "How often intake coverage is recorded; a silence of twice this is a gap."
    )
    applier: str = setting(
        "process",
        "Where the intake inbox is applied to the store, detection runs, `logs.paths` are "
        "followed and (on SQLite) raw events expire: `process` (a child process, so parsing, "
        "writing and judging never take the interpreter from the answers; forked at start-up, "
        "it shares `serve`'s modules: about 40 MiB more memory) or `thread` (`serve`'s threads).",
    )


@dataclasses.dataclass(frozen=True)
class ApiSettings:
    token: Secret | None = setting(
        None, "Bearer token required by the read API (`/v1/events`, …). Unset: open.", secret=True
    )


@dataclasses.dataclass(frozen=True)
class LogsSettings:
    paths: list[str] = setting(
        [], "Registry log files (globs) that `serve` follows. Comma-separated in the environment."
    )
    poll_seconds: float = setting(0.25, "How often followed files are checked for new lines.")
    start_at_end: bool = setting(
        False, "A followed file with no checkpoint is read from its end instead of its start."
    )
    max_body_bytes: int = setting(
        8 * 1024 * 1024, "Largest accepted `POST /v1/logs` body (log shippers send batches)."
    )


@dataclasses.dataclass(frozen=True)
class InputSettings:
    clock_skew_seconds: float = setting(
        900.0,
        "An event may be dated at most this far after the monitor's clock (the registry's clock "
        "runs ahead); later ones, and any before 2000, are quarantined.",
    )
    max_events_per_body: int = setting(
        1000, "Most events one notification body may hold; a longer list is quarantined whole."
    )
    max_records_per_body: int = setting(
        100_000, "Most records (lines) one `POST /v1/logs` body may hold; above it, 413."
    )
    max_line_chars: int = setting(
        65_536, "Longest log line parsed; a longer one is quarantined (its first part kept)."
    )
    quarantine_max_rows: int = setting(
        10_000, "Most quarantine rows kept; the oldest expire first. One row per request body."
    )


@dataclasses.dataclass(frozen=True)
class RetentionSettings:
    events_days: int = setting(
        180,
        "Raw events older than this many days are deleted, 500 at a time, resting as long as "
        "each batch took, up to 10 s more while over 256 notifications wait to be applied; "
        "per-tag state and daily roll-ups (`GET /v1/stats/daily`) are kept.",
    )
    schedule: str = setting(
        "17 3 * * *", "Cron (UTC, 5 fields) of the expiry of raw events; empty: never."
    )


@dataclasses.dataclass(frozen=True)
class CleanupSettings:
    registry_url: str | None = setting(
        None, "Base URL of the registry's HTTP API for cleanup, e.g. `https://registry:5000`."
    )
    username: str | None = setting(None, "User for the registry (basic auth or token server).")
    password: Secret | None = setting(None, "Password for `username`.", secret=True)
    ca_file: Path | None = setting(None, "PEM CA bundle that signed the registry's certificate.")
    insecure_skip_tls_verify: bool = setting(
        False, "Do not verify the registry's TLS certificate. Only for tests."
    )
    timeout_seconds: float = setting(
        60.0, "Per-request timeout; 2.8 deletes walk every tag, so keep it generous."
    )
    policies_file: Path | None = setting(None, "YAML file with the cleanup policies.")
    deployed_file: Path | None = setting(
        None, "File of image references in use (`repo:tag`, `repo@digest`, one per line)."
    )
    delete_mode: str = setting(
        "auto",
        "How deletes are sent: `auto` (asks the registry before each apply), `tag` (one DELETE "
        "per tag, distribution 3.x) or `digest` (DELETE by digest, 2.8).",
    )
    max_deletions: int = setting(100, "Most tags one apply may delete; above it nothing runs.")
    max_repository_share: float = setting(
        0.5, "Most share (0-1) of a repository's tags one apply may delete; above it, skipped."
    )
    concurrency: int = setting(2, "Repositories cleaned at once.")
    min_interval_seconds: float = setting(0.2, "Least time between two DELETE requests.")
    coverage_gap_tolerance_seconds: float = setting(
        60.0, "Coverage gaps up to this long still count as listening (heartbeat jitter)."
    )
    plan_schedule: str = setting(
        "0 4 * * *", "Cron (UTC, 5 fields) of the scheduled plan; empty: never."
    )
    apply_schedule: str = setting(
        "30 4 * * *",
        "Cron (UTC) of the scheduled apply of the newest plan; runs only with apply_on_schedule.",
    )
    reconcile_schedule: str = setting(
        "0 */6 * * *", "Cron (UTC) of reconciliation with the registry's catalog; empty: never."
    )
    apply_on_schedule: bool = setting(
        False, "Let the schedule apply plans. Off: plans are only stored and shown (dry run)."
    )
    plan_max_age_hours: float = setting(
        24.0, "A scheduled apply only applies a plan at most this old."
    )
    lock_seconds: float = setting(
        3600.0, "Lease on a scheduled job across replicas; renewed while the job runs."
    )
    plans_keep: int = setting(
        30,
        "Stored plans kept (the newest); older ones are deleted with their saved manifests, "
        "except plans whose apply is unfinished (applying, or failed and to be run again).",
    )


@dataclasses.dataclass(frozen=True)
class LoggingSettings:
    level: str = setting("info", "debug, info, warning or error.")
    format: str = setting("json", "json (one object per line) or console.")


@dataclasses.dataclass(frozen=True)
class DetectSettings:
    rules_file: Path | None = setting(
        None, "YAML file with detection rule thresholds, windows, allow-lists and modes."
    )
    roles_file: Path | None = setting(
        None, "YAML file mapping accounts to roles (admin, developer, viewer) and repositories."
    )
    settle_seconds: float = setting(
        2.0, "Detection reads only events received at least this long ago (commits settle)."
    )
    interval_seconds: float = setting(
        1.0,
        "Seconds between detection passes once caught up; while behind, back to back, of 1,000 to "
        "16,000 events (4,000 with `notifications.applier: thread`), each read 1,000 at a time.",
    )
    allow_cidrs: list[str] = setting(
        [],
        "The networks the registry may be reached from (CIDRs). When set, a request from "
        "outside them raises `source_not_allowed` (critical). Comma-separated in the environment.",
    )


@dataclasses.dataclass(frozen=True)
class AlertingSettings:
    slack_webhook_url: Secret | None = setting(
        None,
        "Slack incoming-webhook URL. Alerts go out as plain messages (no threads, no updates).",
        secret=True,
    )
    slack_bot_token: Secret | None = setting(
        None,
        "Slack bot token (`xoxb-…`, scope `chat:write`); with `slack_channel`, repeats are "
        "threaded under the first message and a resolve updates it. Preferred over the webhook.",
        secret=True,
    )
    slack_channel: str = setting("", "Channel ID the bot token posts to.")
    slack_api_url: str = setting("https://slack.com/api/", "Base URL of the Slack Web API.")
    timeout_seconds: int = setting(10, "Timeout of one call to Slack.")
    budget_per_hour: int = setting(
        20, "Slack messages per rule per clock hour; the rest go into one digest after the hour."
    )
    retry_min_seconds: float = setting(1.0, "First backoff after a failed delivery (5xx, network).")
    retry_max_seconds: float = setting(300.0, "Longest backoff between delivery attempts.")
    interval_seconds: float = setting(1.0, "Seconds between delivery passes in `serve`.")


@dataclasses.dataclass(frozen=True)
class RegistrySettings:
    debug_url: str | None = setting(
        None,
        "Base URL of the registry's debug listener (`http.debug.addr`), e.g. "
        "`http://registry:5001`. Its `/debug/vars` notification counters are exported as "
        "`registry_monitor_registry_notifications_*` (distribution 2.8 has no Prometheus ones).",
    )
    debug_timeout_seconds: float = setting(
        2.0, "Timeout of one `/debug/vars` request, made while Prometheus scrapes."
    )
    debug_max_endpoints: int = setting(
        16, "Most notification endpoints exported from `/debug/vars` (labels stay bounded)."
    )


@dataclasses.dataclass(frozen=True)
class AuditSettings:
    registry_config: Path | None = setting(
        None, "The registry's `config.yml`, read by `audit` and the scheduled audit."
    )
    htpasswd: Path | None = setting(
        None, "The registry's htpasswd file. Default: `auth.htpasswd.path` of the registry config."
    )
    url: str | None = setting(
        None, "The registry's URL as clients use it, probed anonymously (TLS, `/v2/`, catalog)."
    )
    interval_seconds: float = setting(
        3600.0, "Seconds between scheduled audits (with `registry_config` or `url` set)."
    )
    stale_days: int = setting(
        90, "An htpasswd account with no successful request in this many days is stale."
    )
    timeout_seconds: float = setting(5.0, "Timeout of one live probe.")
    accept: list[str] = setting(
        [],
        "Check ids whose failure is an accepted risk: reported as warn with the reason, no exit "
        "status 1, no alert, no Slack message. Comma-separated in the environment.",
    )


@dataclasses.dataclass(frozen=True)
class ReconcileSettings:
    settle_seconds: float = setting(
        120.0,
        "A request read from the registry's log whose notification has not arrived this many "
        "seconds later gets its events rebuilt from the log (the registry may still be retrying).",
    )
    interval_seconds: float = setting(
        30.0,
        "Seconds between reconcile passes in `serve` (0: never).",
    )


@dataclasses.dataclass(frozen=True)
class Settings:
    database: DatabaseSettings = dataclasses.field(default_factory=DatabaseSettings)
    http: HttpSettings = dataclasses.field(default_factory=HttpSettings)
    notifications: NotificationsSettings = dataclasses.field(default_factory=NotificationsSettings)
    api: ApiSettings = dataclasses.field(default_factory=ApiSettings)
    logs: LogsSettings = dataclasses.field(default_factory=LogsSettings)
    input: InputSettings = dataclasses.field(default_factory=InputSettings)
    retention: RetentionSettings = dataclasses.field(default_factory=RetentionSettings)
    cleanup: CleanupSettings = dataclasses.field(default_factory=CleanupSettings)
    logging: LoggingSettings = dataclasses.field(default_factory=LoggingSettings)
    detect: DetectSettings = dataclasses.field(default_factory=DetectSettings)
    alerting: AlertingSettings = dataclasses.field(default_factory=AlertingSettings)
    registry: RegistrySettings = dataclasses.field(default_factory=RegistrySettings)
    audit: AuditSettings = dataclasses.field(default_factory=AuditSettings)
    reconcile: ReconcileSettings = dataclasses.field(default_factory=ReconcileSettings)
