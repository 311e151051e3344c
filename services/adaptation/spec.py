"""What a configuration parameter is: its type, unit, bounds, allowed values and scaling."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from .units import DURATIONS, SIZES, UnitSystem

__all__ = ["Floor", "ParameterSpec", "ParameterType", "ParameterValue", "Scaling"]

ParameterValue = str | int | float | bool
"""A parameter's value as JSON carries it. Configurations are flat: no lists, no objects."""


class ParameterType(StrEnum):
    """The type of a parameter's value."""

    INTEGER = "integer"
    FLOAT = "float"
    BOOLEAN = "boolean"
    """`true`/`false`, or the words PostgreSQL accepts: `on`/`off`, `yes`/`no`, `1`/`0`."""
    STRING = "string"
    ENUM = "enum"
    """One of the spec's `allowed_values`."""
    BYTES = "bytes"
    """A size such as `16GB`; a bare number counts the spec's unit."""
    DURATION = "duration"
    """A duration such as `200ms`; a bare number counts the spec's unit."""

    @property
    def is_numeric(self) -> bool:
        """Whether values have an amount that bounds and scaling apply to."""
        return self in _NUMERIC

    @property
    def units(self) -> UnitSystem | None:
        """The unit system of sizes and durations; None for other types."""
        return _UNIT_SYSTEMS.get(self)


_NUMERIC = frozenset(
    {ParameterType.INTEGER, ParameterType.FLOAT, ParameterType.BYTES, ParameterType.DURATION}
)
_UNIT_SYSTEMS = {ParameterType.BYTES: SIZES, ParameterType.DURATION: DURATIONS}
_DEFAULT_UNITS = {ParameterType.BYTES: "B", ParameterType.DURATION: "ms"}


class Scaling(StrEnum):
    """The hardware resource a parameter's value is proportional to."""

    NONE = "none"
    """Copied unchanged."""
    MEMORY = "memory"
    CORES = "cores"
    DISK_THROUGHPUT = "disk_throughput"


class Floor(StrEnum):
    """What the source's own data says a parameter must not go below, whatever scaling says."""

    NONE = "none"
    WORKING_SET = "working_set"
    """A cache: not below the data the source's busy period reads again and again."""
    CONCURRENCY = "concurrency"
    """A worker count: not below the requests the source's busy period has in flight."""


@dataclass(frozen=True)
class ParameterSpec:
    """Declares one parameter of a configuration kind.

    Bounds are inclusive and counted in `unit`: `shared_buffers` with unit `8kB` and
    minimum 16 may not be smaller than 128kB. For sizes and durations `unit` is also what
    a bare number counts; it defaults to `B` and `ms`. For other numbers it is a label
    for people (`MB`, `connections`).
    """

    key: str
    type: ParameterType
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    allowed_values: tuple[str, ...] = ()
    """The values an ENUM parameter may take."""
    scaling: Scaling = Scaling.NONE
    requires_restart: bool = False
    """Whether a change takes effect only after the software restarts."""
    floor: Floor = Floor.NONE
    """The demand of the source that bounds the adapted value from below."""

    @property
    def base_unit(self) -> str:
        """The unit bare numbers and bounds count: `unit`, or the type's default."""
        return self.unit or _DEFAULT_UNITS.get(self.type, "")

    @property
    def step(self) -> int:
        """Amount of one base unit (bytes, microseconds); 1 for plain numbers."""
        units = self.type.units
        return 1 if units is None else units.unit_size(self.base_unit)

    def problems(self) -> list[str]:
        """What is self-contradictory in this declaration, each said as what to fix."""
        found = [*self._key_problems(), *self._unit_problems(), *self._bound_problems()]
        if self.type is ParameterType.ENUM and not self.allowed_values:
            found.append("an enum parameter needs its allowed values")
        if self.type is not ParameterType.ENUM and self.allowed_values:
            found.append(f"allowed values apply to enum parameters only, not {self.type}")
        if self.floor is not Floor.NONE and not self.type.is_numeric:
            found.append(f"{self.type} parameters cannot have a {self.floor} floor")
        if self.scaling is not Scaling.NONE and not self.type.is_numeric:
            resource = self.scaling.value.replace("_", " ")
            found.append(f"{self.type} parameters cannot scale with {resource}")
        return found

    def _key_problems(self) -> list[str]:
        if not self.key.strip():
            return ["the key is empty"]
        if self.key != self.key.strip():
            return ["the key has leading or trailing spaces"]
        return []

    def _unit_problems(self) -> list[str]:
        units = self.type.units
        if units is None:
            return []
        try:
            units.unit_size(self.base_unit)
        except ValueError as error:
            return [f"unit: {error}"]
        return []

    def _bound_problems(self) -> list[str]:
        bounds = [bound for bound in (self.minimum, self.maximum) if bound is not None]
        if bounds and not self.type.is_numeric:
            return [f"bounds apply to numeric parameters only, not {self.type}"]
        if not all(math.isfinite(bound) for bound in bounds):
            return ["bounds must be finite numbers"]
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            return [f"the minimum {self.minimum:g} is above the maximum {self.maximum:g}"]
        return []
