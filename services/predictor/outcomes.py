"""Where outcomes go besides the database: Prometheus counters and a webhook.

Counters count predictions by verdict, changes by outcome and rollbacks by reason, so
prevented incidents (rollbacks with reason ``PREDICTED_NEGATIVE``) can be graphed; the
server serves them on ``/metrics`` with its RPC metrics. The webhook gets a JSON
message for every rollback, held change and failure; deliveries are retried with
backoff from a queue of their own, so a slow or dead receiver never holds up a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
from google.protobuf import json_format
from prometheus_client import CollectorRegistry, Counter

from cfgclone.predictor.repository import ChangeRow
from cfgclone.predictor.states import RollbackReason
from cfgclone.v1 import common_pb2

logger = logging.getLogger(__name__)


class OutcomeCounters:
    """``cfgclone_predictions_total{verdict}``, ``cfgclone_changes_total{outcome}`` and
    ``cfgclone_rollbacks_total{reason}``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.predictions = Counter(
            "cfgclone_predictions",
            "Predictions made, by overall verdict.",
            ["verdict"],
            registry=self.registry,
        )
        self.changes = Counter(
            "cfgclone_changes",
            "Changes that reached a final state, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.rollbacks = Counter(
            "cfgclone_rollbacks",
            "Changes refused or rolled back, by reason.",
            ["reason"],
            registry=self.registry,
        )

    def value(self, counter: Counter, label: str) -> float:
        """Current value of one labelled series (for status output and tests)."""
        sample = self.registry.get_sample_value(f"{counter._name}_total", {_label(counter): label})
        return float(sample or 0.0)


def _label(counter: Counter) -> str:
    return str(counter._labelnames[0])


class Webhook:
    """Delivers JSON messages to a URL in the background, retrying with backoff."""

    def __init__(
        self,
        url: str | None,
        *,
        attempts: int = 5,
        first_delay_s: float = 0.5,
        timeout_s: float = 5.0,
        queue_size: int = 10_000,
    ) -> None:
        self.url = url
        self._attempts = attempts
        self._first_delay_s = first_delay_s
        self._timeout_s = timeout_s
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(queue_size)
        self.delivered = 0
        self.dropped = 0

    def send(self, message: Mapping[str, Any]) -> None:
        """Queue ``message``; never blocks. A full queue drops it with a warning."""
        if self.url is None:
            return
        try:
            self._queue.put_nowait(dict(message))
        except asyncio.QueueFull:
            self.dropped += 1
            logger.warning("webhook queue full; dropped a %s message", message.get("event"))

    async def run(self) -> None:
        """Deliver queued messages until cancelled."""
        if self.url is None:
            return
        async with httpx.AsyncClient(timeout=self._timeout_s) as client:
            while True:
                message = await self._queue.get()
                await self._deliver(client, message)

    async def _deliver(self, client: httpx.AsyncClient, message: dict[str, Any]) -> None:
        assert self.url is not None
        delay = self._first_delay_s
        for attempt in range(1, self._attempts + 1):
            with contextlib.suppress(httpx.HTTPError):
                response = await client.post(self.url, json=message)
                if response.status_code < 500:
                    self.delivered += 1
                    return
            if attempt < self._attempts:
                await asyncio.sleep(delay)
                delay *= 2
        self.dropped += 1
        logger.warning(
            "webhook %s did not take a %s message after %s attempts",
            self.url,
            message.get("event"),
            self._attempts,
        )


def change_message(
    event: str, row: ChangeRow, why: str, reason: RollbackReason | None = None
) -> dict[str, Any]:
    """The webhook's JSON message for a change that was held, rolled back, refused or failed."""
    message: dict[str, Any] = {
        "event": event,
        "change": row.name,
        "system": f"systems/{row.system_id}",
        "from_configuration": f"systems/{row.system_id}/configurations/{row.from_version}",
        "to_configuration": f"systems/{row.system_id}/configurations/{row.to_version}",
        "requested_by": row.requested_by,
        "explanation": why,
        "time": datetime.now(UTC).isoformat(),
    }
    if reason is not None:
        message["reason"] = RollbackReason(reason).name
    if row.prediction:
        prediction = common_pb2.Prediction.FromString(row.prediction)
        message["prediction"] = json_format.MessageToDict(prediction)
    return message
