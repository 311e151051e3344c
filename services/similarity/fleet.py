"""The fleet as the similarity service sees it: an index kept in step with the fingerprints table.

At start the index is built from each system's newest fingerprint; a loop then
polls for fingerprints (and labels) changed since the last look and applies
them as one write, which queries never wait for (the index publishes immutable
snapshots). Fingerprint messages, needed only for distribution distances, are
read on demand for the handful of systems in an answer.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from cfgclone.behaviour.embedding import DEFAULT_EMBEDDING_LAYOUT
from cfgclone.common.errors import FailedPrecondition, NotFound
from cfgclone.common.queries import load_queries
from cfgclone.common.store import Store
from cfgclone.similarity.index import FleetEntry, SimilarityIndex
from cfgclone.similarity.layout import GroupLayout, GroupSpan
from cfgclone.similarity.settings import SimilaritySettings
from cfgclone.v1 import common_pb2

logger = logging.getLogger(__name__)

_QUERIES = load_queries("cfgclone.similarity", "fleet.sql")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def default_layout() -> GroupLayout:
    """The embedding layout fingerprints are built with."""
    spans = tuple(
        GroupSpan(group.name, group.offset, group.length)
        for group in DEFAULT_EMBEDDING_LAYOUT.groups
    )
    return GroupLayout(spans, DEFAULT_EMBEDDING_LAYOUT.length)


class Fleet:
    """The similarity index of the fleet, loaded from and kept in step with the database."""

    def __init__(self, store: Store, settings: SimilaritySettings) -> None:
        self._store = store
        self.index = SimilarityIndex(default_layout(), settings)
        self._watermark = _EPOCH
        self._dimension = DEFAULT_EMBEDDING_LAYOUT.length

    async def sync(self) -> int:
        """Apply every fingerprint and label change since the last sync; returns how many."""
        async with self._store.connection() as conn:
            cursor = await conn.execute(_QUERIES["newest_embeddings"], {"since": self._watermark})
            rows = await cursor.fetchall()
        if not rows:
            return 0
        entries = []
        for system_id, embedding, labels, _changed in rows:
            vector = np.asarray(embedding, dtype=np.float32)
            if vector.size != self._dimension:
                logger.warning(
                    "fingerprint of %s has %s dimensions, not %s; left out",
                    system_id, vector.size, self._dimension,
                )  # fmt: skip
                continue
            entries.append(FleetEntry(system_id, vector, labels or {}))
        await asyncio.to_thread(self.index.update, entries)
        self._watermark = max(row[3] for row in rows)
        return len(entries)

    async def keep_in_step(self, interval: float) -> None:
        """Sync forever, every ``interval`` seconds; database outages only delay it.

        In a process that froze its start-up objects (a service's ``serve`` does;
        tests do not, since frozen objects hide from ``gc.get_referrers``), the
        generations are frozen again once the fleet is first loaded: the index (a
        million ids and labels at fleet scale) is then no longer walked by every full
        collection, a pause a query would otherwise wait out. Frozen objects are still
        freed when the index replaces them; only cycles among them are not.
        """
        loaded = False
        while True:
            try:
                changed = await self.sync()
                if changed:
                    logger.info("similarity index: %s systems updated", changed)
                    if not loaded:
                        loaded = True
                        if gc.get_freeze_count():
                            gc.freeze()
            except Exception as error:  # an outage must not end the loop
                logger.warning("similarity index not synced: %s", error)
            await asyncio.sleep(interval)

    async def require_indexed(self, system_id: str, field: str) -> None:
        """NOT_FOUND for an unregistered system; FAILED_PRECONDITION for one with no fingerprint."""
        if system_id in self.index.snapshot():
            return
        async with self._store.connection() as conn:
            cursor = await conn.execute(_QUERIES["system_exists"], {"system_id": system_id})
            exists = await cursor.fetchone() is not None
        if not exists:
            raise NotFound(
                f"systems/{system_id} is not registered",
                reason="SYSTEM_NOT_FOUND",
                metadata={"system": f"systems/{system_id}", "field": field},
            )
        raise FailedPrecondition(
            f"systems/{system_id} has no fingerprint yet; build one with "
            "FingerprintService.BuildFingerprint",
            reason="NO_FINGERPRINT",
            metadata={"system": f"systems/{system_id}", "field": field},
        )

    async def fingerprints(self, system_ids: Sequence[str]) -> dict[str, common_pb2.Fingerprint]:
        """The newest fingerprint message of each system that has one."""
        async with self._store.connection() as conn:
            cursor = await conn.execute(_QUERIES["newest_models"], {"system_ids": list(system_ids)})
            rows = await cursor.fetchall()
        return {sid: common_pb2.Fingerprint.FromString(bytes(model)) for sid, model in rows}
