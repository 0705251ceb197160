"""A durable FIFO of check-ins made while the server was unreachable, kept in one SQLite file.

Each queued check-in keeps the body and Idempotency-Key of its first send, so a replay is the same
request: its original `observed_at` lets the server judge staleness fairly, and its key means that
a first send which did reach the server (only the answer was lost) cannot unlock twice.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime

from ._exceptions import ApiError, AuthenticationError
from ._models import CheckinRequest, Queued, checkin_body, checkin_request_from_body
from ._retry import is_transient

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queued_checkins (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    queued_at TEXT NOT NULL
)
"""


class OfflineQueue:
    """Check-ins waiting to be sent, oldest first; survives process restarts.

    Safe to share between threads of one app: every operation opens its own connection under a
    lock, and SQLite's file locking covers a second process on the same file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.fspath(path)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute(_SCHEMA)

    def add(self, request: CheckinRequest) -> Queued:
        queued_at = datetime.now(UTC)
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO queued_checkins (idempotency_key, body, queued_at) VALUES (?, ?, ?)",
                (request.idempotency_key, json.dumps(checkin_body(request)), queued_at.isoformat()),
            )
        assert cursor.lastrowid is not None  # always set after a single-row INSERT
        return Queued(seq=cursor.lastrowid, queued_at=queued_at, request=request)

    def items(self) -> list[Queued]:
        """Everything queued, in the order it was queued."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT seq, idempotency_key, body, queued_at FROM queued_checkins ORDER BY seq"
            ).fetchall()
        return [
            Queued(
                seq=seq,
                queued_at=datetime.fromisoformat(queued_at),
                request=checkin_request_from_body(key, json.loads(body)),
            )
            for seq, key, body, queued_at in rows
        ]

    def remove(self, item: Queued) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM queued_checkins WHERE seq = ?", (item.seq,))

    def clear(self) -> int:
        """Forget every queued check-in (they hold positions); how many there were."""
        with self._connect() as db:
            return db.execute("DELETE FROM queued_checkins").rowcount

    def __len__(self) -> int:
        with self._connect() as db:
            (count,) = db.execute("SELECT COUNT(*) FROM queued_checkins").fetchone()
        return int(count)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One connection per operation, committed on success and always closed."""
        with self._lock, closing(sqlite3.connect(self._path)) as db, db:
            yield db


def replay_settles(error: ApiError) -> bool:
    """Whether an error answers a queued check-in for good, so it leaves the queue.

    A 4xx about the check-in itself will not change on a later try. A transient error (5xx, 429,
    409 in progress) or a 401 (the app's session, not the check-in, is at fault) keeps it queued.
    """
    return not (is_transient(error) or isinstance(error, AuthenticationError))
