"""Log follower checkpoints in the store. Functions take a session and never commit."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from monitor.ingest.tailer import Checkpoint
from monitor.store.engine import SessionFactory
from monitor.store.schema import LogCheckpointRow


def load_checkpoint(session: Session, path: str) -> Checkpoint | None:
    row = session.get(LogCheckpointRow, path)
    if row is None:
        return None
    return Checkpoint(row.path, row.device, row.inode, row.offset, row.head_len, row.head_hash)


def save_checkpoint(session: Session, checkpoint: Checkpoint, *, now: datetime) -> None:
    row = session.get(LogCheckpointRow, checkpoint.path)
    if row is None:
        row = LogCheckpointRow(path=checkpoint.path)
        session.add(row)
    row.device = checkpoint.device
    row.inode = checkpoint.inode
    row.offset = checkpoint.offset
    row.head_len = checkpoint.head_len
    row.head_hash = checkpoint.head_hash
    row.updated_at = now


class StoreCheckpoints:
    """The follower's `CheckpointStore`: loads from the store.

    Checkpoints are saved by the store writer, in the transaction that stores the events of
    the lines read up to them (`StoreWriter.submit(..., checkpoint=)`).
    """

    def __init__(self, session_factory: SessionFactory) -> None:
        self._session_factory = session_factory

    def load(self, path: str) -> Checkpoint | None:
        with self._session_factory() as session:
            return load_checkpoint(session, path)
