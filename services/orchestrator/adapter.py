"""Adapting a configuration to another machine: the adaptation engine behind one interface."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cfgclone import adaptation as engine
from cfgclone.v1 import common_pb2

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

# --- adaptation --------------------------------------------------------------------------


@dataclass(frozen=True)
class AdaptationInput:
    """What an adaptation works from: the source's configuration and both machines."""

    configuration: common_pb2.Configuration
    """The source's configuration; the declarations it carries override its kind's schema."""
    source: common_pb2.System
    target: common_pb2.System
    demand: engine.ObservedDemand | None = None
    """What the source's own data shows its configuration must carry."""


@dataclass(frozen=True)
class AdaptedConfiguration:
    """One adapted configuration and what was done to produce it."""

    content: Mapping[str, Any]
    notes: tuple[str, ...] = ()
    """Each decision in words: ``shared_buffers: 16GB -> 4GB (memory 16 GiB / 64 GiB)``."""
    warned: bool = False
    """Whether the engine warned about it (memory beyond its share of a smaller host)."""


class AdaptationRefused(Exception):
    """No usable adapted configuration: the message says why and what to fix."""


class Adapter(Protocol):
    """Adapts a configuration to another machine (the adaptation engine behind it)."""

    async def candidates(self, adaptation: AdaptationInput) -> Sequence[AdaptedConfiguration]:
        """Adapted configurations, the preferred first; raises :class:`AdaptationRefused`."""
        ...


@dataclass(frozen=True)
class EngineAdapter:
    """The adaptation engine: candidate scalings of the configuration by the schema of its
    kind, each passed through the user's adaptation scripts in order."""

    scripts: tuple[Path, ...] = ()
    script_timeout: timedelta = timedelta(seconds=10)

    async def candidates(self, adaptation: AdaptationInput) -> Sequence[AdaptedConfiguration]:
        configuration = adaptation.configuration
        try:
            schema = engine.schema_of(configuration)
            source = engine.host_from_system(adaptation.source)
            target = engine.host_from_system(adaptation.target)
            content = engine.content_from_struct(configuration.content)
            found = engine.candidates(content, schema, source, target, adaptation.demand)
            adapted = [await self._scripted(c, schema, source, target) for c in found]
        except (engine.AdaptationError, ValueError) as error:
            raise AdaptationRefused(str(error)) from error
        unique: dict[str, AdaptedConfiguration] = {}
        for candidate in adapted:
            unique.setdefault(json.dumps(dict(candidate.content), sort_keys=True), candidate)
        return list(unique.values())

    async def _scripted(
        self,
        candidate: engine.Candidate,
        schema: engine.Schema,
        source: engine.HostResources,
        target: engine.HostResources,
    ) -> AdaptedConfiguration:
        adaptation = candidate.adaptation
        notes = [f"{candidate.name} ({candidate.description})"]
        notes += [str(change) for change in adaptation.changes]
        content = dict(adaptation.content)
        for script in self.scripts:
            scripted = await engine.run_adaptation_script(
                script, content, source, target, schema, self.script_timeout.total_seconds()
            )
            notes += [f"{script.name}: {change}" for change in scripted.changes]
            content = dict(scripted.content)
        notes += [f"warning: {warning}" for warning in candidate.warnings]
        return AdaptedConfiguration(content, tuple(notes), warned=bool(candidate.warnings))
