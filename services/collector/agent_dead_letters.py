"""Batches the collector refused for their content, set aside so the spool can move on.

A batch that the collector refuses for what it holds (INVALID_ARGUMENT, or INTERNAL
when the collector fails on it) would be refused again on every retry and would
block every batch behind it. The shipper moves such a batch here, with the status
and the reason, and goes on with the next one. The file has one JSON object a line::

    {"set_aside_at": "2026-01-01T00:00:00+00:00", "batch_id": "...", "system": "systems/db-01",
     "samples": 12, "code": "INVALID_ARGUMENT", "reason": "...", "message": "...",
     "batch": "<base64 of the serialized SampleBatch>"}

so an operator can see why and, once the cause is fixed, send the batch again. The
file is bounded: past ``max_bytes`` a line keeps the why and the batch id but not the
batch itself.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cfgclone.v1 import common_pb2

__all__ = ["DeadLetter", "DeadLetterFile"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One batch set aside, and why."""

    batch_id: str
    system: str
    samples: int
    code: str
    reason: str
    message: str
    batch: common_pb2.SampleBatch | None


class DeadLetterFile:
    """An append-only JSON-lines file of refused batches, next to the spool."""

    def __init__(self, path: Path, max_bytes: int = 64 * 1024 * 1024) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.path = path
        self.max_bytes = max_bytes
        self.set_aside_batches = 0

    @classmethod
    def beside(cls, spool_path: Path) -> DeadLetterFile:
        """The dead-letter file of the spool at ``spool_path``."""
        return cls(spool_path.with_name(f"{spool_path.name}.dead-letters.jsonl"))

    def set_aside(
        self, batch: common_pb2.SampleBatch, code: str, reason: str, message: str
    ) -> None:
        """Append ``batch`` with why it was refused; flushed to disk before returning."""
        body = batch.SerializeToString()
        size = self.path.stat().st_size if self.path.exists() else 0
        keep_body = size + len(body) * 4 // 3 + 1024 <= self.max_bytes
        record = {
            "set_aside_at": datetime.now(UTC).isoformat(),
            "batch_id": batch.batch_id,
            "system": batch.system,
            "samples": sum(len(series.values) for series in batch.series),
            "code": code,
            "reason": reason,
            "message": message[:2000],
            "batch": base64.b64encode(body).decode("ascii") if keep_body else None,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record, sort_keys=True) + "\n")
            out.flush()
            os.fsync(out.fileno())
        self.set_aside_batches += 1
        if not keep_body:
            logger.warning(
                "dead-letter file %s is full: kept only why %s was refused",
                self.path,
                batch.batch_id,
            )

    def read(self) -> list[DeadLetter]:
        """Every batch set aside so far, oldest first."""
        if not self.path.exists():
            return []
        letters = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            body = record.get("batch")
            letters.append(
                DeadLetter(
                    batch_id=record["batch_id"],
                    system=record["system"],
                    samples=int(record["samples"]),
                    code=record["code"],
                    reason=record["reason"],
                    message=record["message"],
                    batch=common_pb2.SampleBatch.FromString(base64.b64decode(body))
                    if body
                    else None,
                )
            )
        return letters
