"""Sizes and durations written the way PostgreSQL writes them: `16GB`, `512MB`, `200ms`, `1min`.

Units are case-sensitive, as in PostgreSQL: sizes in `B`, `kB`, `MB`, `GB`, `TB` (each 1024
times the one before) and durations in `us`, `ms`, `s`, `min`, `h`, `d`. A number may have a
fraction (`1.5GB`) and a space before its unit (`128 MB`); a bare number counts a default
unit, as a PostgreSQL setting counts its own unit (`shared_buffers = 16384` is 16384 blocks
of 8kB). Amounts are whole numbers of the smallest unit: bytes, microseconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType

__all__ = [
    "DURATIONS",
    "SIZES",
    "UnitSystem",
    "format_bytes",
    "format_duration",
    "parse_bytes",
    "parse_duration",
]

_QUANTITY = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)\s*")


def split_quantity(text: str) -> tuple[float, str]:
    """The number and the unit (empty when none) of `text`; ValueError when it is neither."""
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a number with an optional unit")
    number = float(match[1])
    if not math.isfinite(number):
        raise ValueError(f"{text!r} is too large")
    return number, match[2]


@dataclass(frozen=True)
class UnitSystem:
    """A family of units, each a whole multiple of the smallest."""

    quantity: str
    """What is measured, for messages: `size`, `duration`."""
    units: Mapping[str, int]
    """Unit name to its amount of the smallest unit, smallest first."""
    example: str
    """A well-written value, for messages."""

    def unit_size(self, unit: str) -> int:
        """The amount one `unit` stands for; a unit may carry a multiplier (`8kB`)."""
        if unit[:1].isdigit():
            multiplier, name = split_quantity(unit)
            if multiplier < 1 or not multiplier.is_integer() or not name:
                raise ValueError(f"unit {unit!r} must be a whole multiple of one of {self.names}")
            return int(multiplier) * self._size_of(name)
        return self._size_of(unit)

    def _size_of(self, name: str) -> int:
        size = self.units.get(name)
        if size is None:
            raise ValueError(self._unknown_unit(name))
        return size

    @property
    def names(self) -> str:
        """The unit names, for messages: `B, kB, MB, GB, TB`."""
        return ", ".join(self.units)

    def _unknown_unit(self, name: str) -> str:
        lowered = {unit.lower(): unit for unit in self.units}
        guess = lowered.get(name.lower()) or lowered.get(name.lower().replace("ib", "b"))
        hint = f" (did you mean {guess}?)" if guess else ""
        return f"{name!r} is not a {self.quantity} unit{hint}; use one of {self.names}"

    def _largest_first(self) -> list[tuple[str, int]]:
        return sorted(self.units.items(), key=lambda unit: unit[1], reverse=True)

    def parse(self, text: str, default_unit: str) -> int:
        """The amount `text` stands for; a bare number counts `default_unit`s."""
        number, unit = split_quantity(text)
        return round(number * self.unit_size(unit or default_unit))

    def format_exact(self, amount: int) -> str:
        """`amount` in the largest unit that divides it exactly: 4294967296 -> `4GB`."""
        if amount == 0:
            return "0"
        for name, size in self._largest_first():
            if amount % size == 0:
                return f"{amount // size}{name}"
        raise AssertionError("the smallest unit divides every amount")

    def round_near(
        self, amount: float, preferred: str, step: int, tolerance: float
    ) -> tuple[int, str]:
        """`amount` rounded to whole units, in `preferred` units where that is close enough.

        Tries `preferred`, then each smaller unit, and takes the first whose whole number
        is within `tolerance` (relative) of `amount` and a multiple of `step`; when none
        is, rounds to a multiple of `step` and writes that exactly. Returns the rounded
        amount and its text.
        """
        ceiling = self.units[preferred]
        for name, size in self._largest_first():
            if size > ceiling or size < step:
                continue
            count = round(amount / size)
            rounded = count * size
            if count != 0 and rounded % step == 0 and abs(rounded - amount) <= tolerance * amount:
                return rounded, f"{count}{name}"
        rounded = round(amount / step) * step
        return rounded, self.format_exact(rounded)


SIZES = UnitSystem(
    "size",
    MappingProxyType({"B": 1, "kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}),
    "64MB",
)
"""Byte sizes; amounts are bytes."""

DURATIONS = UnitSystem(
    "duration",
    MappingProxyType(
        {
            "us": 1,
            "ms": 1_000,
            "s": 1_000_000,
            "min": 60_000_000,
            "h": 3_600_000_000,
            "d": 86_400_000_000,
        }
    ),
    "200ms",
)
"""Durations; amounts are microseconds."""


def parse_bytes(text: str, default_unit: str = "B") -> int:
    """Bytes in `text` (`16GB`, `512 MB`, `1.5GB`); a bare number counts `default_unit`s."""
    return SIZES.parse(text, default_unit)


def format_bytes(amount: int) -> str:
    """Bytes in the largest unit that divides them exactly: `16GB`, `1536MB`, `100B`."""
    return SIZES.format_exact(amount)


def parse_duration(text: str, default_unit: str = "ms") -> timedelta:
    """The duration in `text` (`200ms`, `5s`, `1min`); a bare number counts `default_unit`s."""
    return timedelta(microseconds=DURATIONS.parse(text, default_unit))


def format_duration(duration: timedelta) -> str:
    """A duration in the largest unit that divides it exactly: `200ms`, `90s`, `1min`."""
    return DURATIONS.format_exact(duration // timedelta(microseconds=1))
