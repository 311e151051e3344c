"""The agent's spool: batches kept on disk, in order, until the collector has them.

Every batch the agent closes goes into the spool first and leaves it only when
the collector has acknowledged it, so batches survive a collector outage and an
agent restart alike, and are delivered in the order they were taken. A batch
that was delivered but not yet removed when the agent died is sent again after
the restart; its batch id makes the collector store it once.

The spool is a SQLite file (the standard library's ``sqlite3``) in WAL mode: an
append is one small transaction, and a crash loses no committed batch. It is
bounded: when a new batch would pass ``max_bytes``, the oldest batches are
dropped (and counted), as the newest data is the most useful after a long
outage.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from cfgclone.v1 import common_pb2

__all__ = ["Spool", "SpooledBatch"]

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    body     BLOB NOT NULL,
    samples  INTEGER NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    """A batch in the spool, with its position."""

    seq: int
    batch: common_pb2.SampleBatch
    size: int


def _samples(batch: common_pb2.SampleBatch) -> int:
    return sum(len(series.values) for series in batch.series)


class Spool:
    """An on-disk FIFO of sample batches, bounded in bytes."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        row = self._db.execute(
            "SELECT count(*), coalesce(sum(length(body)), 0), coalesce(sum(samples), 0) "
            "FROM batches"
        ).fetchone()
        self._batches, self._bytes, self._samples = int(row[0]), int(row[1]), int(row[2])
        self.dropped_batches = 0
        self.dropped_samples = 0
        if self._batches:
            logger.info("spool %s holds %s batches (%s samples) from before", path, row[0], row[2])

    @property
    def pending_batches(self) -> int:
        return self._batches

    @property
    def pending_samples(self) -> int:
        return self._samples

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    def append(self, batch: common_pb2.SampleBatch) -> None:
        """Keep ``batch`` until it is removed, dropping the oldest batches if the spool is full."""
        body = batch.SerializeToString()
        samples = _samples(batch)
        if len(body) > self.max_bytes:
            self._count_dropped(1, samples)
            logger.error(
                "a batch of %s bytes cannot fit a spool of %s bytes; dropped it",
                len(body),
                self.max_bytes,
            )
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if self._bytes + len(body) > self.max_bytes:
                self._evict(self._bytes + len(body) - self.max_bytes)
            self._db.execute("INSERT INTO batches (body, samples) VALUES (?, ?)", (body, samples))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._batches += 1
        self._bytes += len(body)
        self._samples += samples

    def _evict(self, excess: int) -> None:
        freed = dropped = lost = 0
        last = None
        for seq, size, samples in self._db.execute(
            "SELECT seq, length(body), samples FROM batches ORDER BY seq"
        ):
            if freed >= excess:
                break
            freed += size
            dropped += 1
            lost += samples
            last = seq
        if last is None:
            return
        self._db.execute("DELETE FROM batches WHERE seq <= ?", (last,))
        self._batches -= dropped
        self._bytes -= freed
        self._samples -= lost
        self._count_dropped(dropped, lost)

    def _count_dropped(self, batches: int, samples: int) -> None:
        self.dropped_batches += batches
        self.dropped_samples += samples
        logger.warning(
            "spool %s is full: dropped the %s oldest batches (%s samples)",
            self.path,
            batches,
            samples,
        )

    def peek(self, max_batches: int, max_bytes: int) -> list[SpooledBatch]:
        """The oldest batches, at least one (if any) and within both limits."""
        found: list[SpooledBatch] = []
        total = 0
        for seq, body in self._db.execute(
            "SELECT seq, body FROM batches ORDER BY seq LIMIT ?", (max_batches,)
        ):
            if found and total + len(body) > max_bytes:
                break
            total += len(body)
            found.append(SpooledBatch(seq, common_pb2.SampleBatch.FromString(body), len(body)))
        return found

    def remove_through(self, seq: int) -> None:
        """Forget every batch up to and including ``seq``: the collector has them."""
        row = self._db.execute(
            "SELECT count(*), coalesce(sum(length(body)), 0), coalesce(sum(samples), 0) "
            "FROM batches WHERE seq <= ?",
            (seq,),
        ).fetchone()
        self._db.execute("DELETE FROM batches WHERE seq <= ?", (seq,))
        self._batches -= int(row[0])
        self._bytes -= int(row[1])
        self._samples -= int(row[2])

    def close(self) -> None:
        self._db.close()
