"""The planner's input read from the store: every repository's live tags (with their pulls)
and manifests, streamed one repository at a time, and the coverage of intake and of the
registry log over the planning horizon. Functions take a session and never commit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Generator, Iterable, Iterator
from datetime import datetime, timedelta
from itertools import groupby
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from monitor.cleanup.model import (
    Blob,
    Interval,
    ManifestInfo,
    PullRecord,
    RepositoryState,
    TagState,
)
from monitor.events import Client
from monitor.store.cleanup_tables import ManifestInfoRow
from monitor.store.columns import raw_time, utc_time
from monitor.store.coverage import LOG, covered_intervals, merge_intervals
from monitor.store.dialect import dialect_of
from monitor.store.readahead import ReadAhead
from monitor.store.requestlog import oldest_pending
from monitor.store.schema import TagPullRow, TagStateRow

PLANNING_HORIZON = timedelta(days=3660)


_TAGS: Any = TagStateRow.__table__
_PULLS: Any = TagPullRow.__table__
_MANIFESTS: Any = ManifestInfoRow.__table__
_CLIENTS = {client.value: client for client in Client}
EMPTY_LIST = "[]"

STREAM_ROWS = 10_000
"""Rows fetched at a time while streaming the planner's input: on PostgreSQL each fetch is a
round trip to a server-side cursor; 10,000 rows (about 4 MB of manifests) took 1.5 s less than
2,000 on 935k rows."""


def _by_name(session: Session, column: Any) -> Any:
    """`column` in code-point order on both stores (PostgreSQL's default collation may follow
    the locale), so three ordered streams merge by plain string comparison."""
    return column.collate("C") if dialect_of(session) == "postgresql" else column


def _in_range(session: Session, column: Any, start: str | None, stop: str | None) -> list[Any]:
    """The conditions that keep `column` from `start` (included) to `stop` (excluded), compared
    in code-point order; none for a bound that is None."""
    name = _by_name(session, column)
    return [
        *([] if start is None else [name >= start]),
        *([] if stop is None else [name < stop]),
    ]


def split_points(session: Session, parts: int, *, min_rows: int = 0) -> list[str]:
    """Repository names that cut the planner's input into up to `parts` ranges of about as many
    rows each (live tags and manifests, counted per repository), in code-point order: range i
    runs from point i-1 (included) to point i (excluded), the first from the start, the last to
    the end. A repository is never cut, so there may be fewer ranges; none for one part, or
    when there are fewer than `min_rows` rows in all. Two grouped counts: 0.23-0.38 s on the
    10M-event store (SQLite and PostgreSQL)."""
    if parts < 2:
        return []
    weights: dict[str, int] = defaultdict(int)
    for table, condition in ((_TAGS, _TAGS.c.deleted_at.is_(None)), (_MANIFESTS, None)):
        query = select(table.c.repository, func.count()).group_by(table.c.repository)
        if condition is not None:
            query = query.where(condition)
        for name, count in session.execute(query):
            weights[name] += count
    total = sum(weights.values())
    if total < min_rows:
        return []
    points: list[str] = []
    seen, cut = 0, 1
    for name in sorted(weights):  # a range starts at the repository whose middle is past a cut
        weight = weights[name]
        while cut < parts and seen + weight / 2 > total * cut / parts:
            if seen and (not points or points[-1] != name):
                points.append(name)
            cut += 1
        seen += weight
    return points


def _groups(rows: Iterable[Any]) -> Iterator[tuple[str, list[Any]]]:
    """Consecutive rows grouped by their first column (the repository)."""
    for name, members in groupby(rows, key=itemgetter(0)):
        yield name, list(members)


def stream_repositories(
    session: Session,
    *,
    start: str | None = None,
    stop: str | None = None,
    read_ahead: bool = True,
) -> Generator[RepositoryState, None, None]:
    """Every repository's live tags (with their pulls) and manifests, one repository at a time
    in name order: three ordered reads merged as they stream, so memory holds one repository.
    With `start` and `stop`, only the repositories from `start` (included) to `stop` (not
    included), in code-point order: the ranges of `split_points`.
    Plain Core rows (not ORM-enabled selects) with times as the driver gives them, decoded here
    (`utc_time`): a million rows per plan on a large registry. Each read is ordered by the
    repository alone: the planner orders what it needs within a repository itself, and on
    PostgreSQL a second sort column (compared in the database's collation for every pair of
    rows of one repository) made the sort of the 609,083 manifests of the 10M-event store take
    2.4 s instead of 1.5 s. On PostgreSQL the three reads are fetched ahead on a thread
    (`ReadAhead`), so the server's work between batches overlaps the merge and the planner's:
    on the 10M-event store the loop of a plan waited 1.1-2.3 s on it instead of 2.2-3.2 s.
    SQLite's reads gained nothing from it, for 37-39 MiB more at the peak: read as they come;
    and so does PostgreSQL's with `read_ahead` False (processes planning side by side, whose
    waits the other processes fill)."""
    repo, tag = _TAGS.c.repository, _TAGS.c.tag
    tag_rows = session.execute(
        select(
            repo, tag, _TAGS.c.digest, raw_time(_TAGS.c.first_seen_at),
            raw_time(_TAGS.c.last_pushed_at), _TAGS.c.media_type,
        )
        .where(_TAGS.c.deleted_at.is_(None), _TAGS.c.digest.is_not(None))
        .where(*_in_range(session, repo, start, stop))
        .order_by(_by_name(session, repo))
        .execution_options(yield_per=STREAM_ROWS)
    )  # fmt: skip
    pull_rows = session.execute(
        select(
            _PULLS.c.repository, _PULLS.c.tag, _PULLS.c.http_method, _PULLS.c.client,
            raw_time(_PULLS.c.last_pulled_at),
        )
        .where(*_in_range(session, _PULLS.c.repository, start, stop))
        .order_by(_by_name(session, _PULLS.c.repository))
        .execution_options(yield_per=STREAM_ROWS)
    )  # fmt: skip
    manifest_rows = session.execute(
        select(
            _MANIFESTS.c.repository, _MANIFESTS.c.digest, _MANIFESTS.c.media_type,
            _MANIFESTS.c.size, _MANIFESTS.c.blobs, _MANIFESTS.c.children,
            raw_time(_MANIFESTS.c.pushed_at),
        )
        .where(*_in_range(session, _MANIFESTS.c.repository, start, stop))
        .order_by(_by_name(session, _MANIFESTS.c.repository))
        .execution_options(yield_per=STREAM_ROWS)
    )  # fmt: skip
    results = (tag_rows, pull_rows, manifest_rows)
    try:
        if not read_ahead or dialect_of(session) != "postgresql":
            yield from _merge_repositories(
                _groups(tag_rows), _groups(pull_rows), _groups(manifest_rows)
            )
            return
        with ReadAhead(results, size=STREAM_ROWS) as ahead:
            yield from _merge_repositories(
                _groups(ahead.rows(0)), _groups(ahead.rows(1)), _groups(ahead.rows(2))
            )
    finally:
        # Server-side cursors (PostgreSQL) must be closed while the session is open, also when
        # a read stops early or one of them still has rows (pulls of repositories with no tags).
        for result in results:
            result.close()


OTHER = Client.OTHER


def _blobs(text: str) -> tuple[Blob, ...]:
    return tuple([Blob(d, int(n)) for d, n in orjson.loads(text)])


def _merge_repositories(
    tags: Iterator[Any], pulls: Iterator[Any], manifests: Iterator[Any]
) -> Iterator[RepositoryState]:
    """Merges the three name-ordered groupings of `stream_repositories` into repositories.
    Media types are shared: a plan keeps one per deleted manifest."""
    media_types: dict[str, str] = {}
    next_tags, next_pulls, next_manifests = (
        next(tags, None),
        next(pulls, None),
        next(manifests, None),
    )
    while next_tags is not None or next_manifests is not None:
        name = min(g[0] for g in (next_tags, next_manifests) if g is not None)
        while next_pulls is not None and next_pulls[0] < name:
            next_pulls = next(pulls, None)
        by_tag: dict[str, list[PullRecord]] = defaultdict(list)
        if next_pulls is not None and next_pulls[0] == name:
            for _, tag_name, method, client, at in next_pulls[1]:
                by_tag[tag_name].append(
                    PullRecord(method, _CLIENTS.get(client, OTHER), utc_time(at))
                )
            next_pulls = next(pulls, None)
        states: list[TagState] = []
        if next_tags is not None and next_tags[0] == name:
            states = [
                TagState(
                    name, tag_name, digest or "", utc_time(first), utc_time(pushed or first),
                    media_type, None, tuple(by_tag.get(tag_name, ())),
                )
                for _, tag_name, digest, first, pushed, media_type in next_tags[1]
            ]  # fmt: skip
            next_tags = next(tags, None)
        infos: list[ManifestInfo] = []
        if next_manifests is not None and next_manifests[0] == name:
            infos = [
                ManifestInfo(
                    name, digest, media_types.setdefault(media_type, media_type), size,
                    () if blobs == EMPTY_LIST else _blobs(blobs),
                    () if children == EMPTY_LIST else tuple(orjson.loads(children)),
                    None if pushed is None else utc_time(pushed),
                )
                for _, digest, media_type, size, blobs, children, pushed in next_manifests[1]
            ]  # fmt: skip
            next_manifests = next(manifests, None)
        yield RepositoryState(name, states, infos)


def planning_coverage(session: Session, *, now: datetime) -> list[Interval]:
    """Coverage over the planning horizon up to `now`: intake's, and the registry log's up to
    its oldest request still unreconciled (a window whose requests were all matched against
    notifications or rebuilt from the log lost nothing)."""
    since = now - PLANNING_HORIZON
    intake = covered_intervals(session, source="notification", since=since, until=now)
    settled_until = min(now, oldest_pending(session) or now)
    logged = covered_intervals(session, source=LOG, since=since, until=settled_until)
    return merge_intervals(intake + [(a, b) for a, b in logged if a < b])


def planner_input(
    session: Session, *, now: datetime
) -> tuple[list[RepositoryState], list[Interval]]:
    """Every repository's live tags (with their pulls) and manifests, and intake coverage."""
    return list(stream_repositories(session)), planning_coverage(session, now=now)
