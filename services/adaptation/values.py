"""Reading, checking and writing parameter values according to their spec.

Values arrive as JSON: numbers may come as strings (`"100"`, as in a postgresql.conf),
and integers may come as floats (`100.0`, as `google.protobuf.Struct` carries every
number). Written values keep the form of the original: a string stays a string, a size
written in GB stays in GB where the rounding is close enough.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .spec import ParameterSpec, ParameterType, ParameterValue
from .units import split_quantity

__all__ = [
    "Quantity",
    "bound_text",
    "bounds",
    "check_value",
    "clamp",
    "enum_choice",
    "read_quantity",
    "shape_problem",
    "show",
    "write_quantity",
]

BOOLEAN_WORDS = frozenset({"on", "off", "true", "false", "yes", "no", "1", "0"})
"""Strings a boolean parameter accepts, in any case, as PostgreSQL does."""

ROUNDING_TOLERANCE = 0.02
"""How far (relative) a rounded size or duration may be from the exact one and still be
written in the original's unit; further, a smaller unit is used."""


@dataclass(frozen=True)
class Quantity:
    """The value of a numeric parameter: its amount and how it was written."""

    amount: float
    """Bytes for sizes, microseconds for durations, else the number itself."""
    unit: str | None
    """The unit it was written with (`GB`), None for a bare number."""
    text: bool
    """Whether it was written as a JSON string."""


def show(value: object) -> str:
    """A value as a person would write it: `16GB`, `100`, `true`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return repr(value) if not value.strip() else value
    return str(value)


def read_quantity(spec: ParameterSpec, value: ParameterValue) -> Quantity:
    """The amount of a numeric parameter's value; ValueError says what is wrong with it."""
    if isinstance(value, bool):
        raise ValueError(f"must be {_expected(spec)}, not {show(value)}")
    units = spec.type.units
    if units is not None and isinstance(value, str):
        try:
            number, unit = split_quantity(value)
            amount = round(number * units.unit_size(unit or spec.base_unit))
        except ValueError as error:
            raise ValueError(f"must be {_expected(spec)}: {error}") from None
        return Quantity(amount, unit or None, text=True)
    number = _number(spec, value)
    if spec.type is ParameterType.INTEGER and not number.is_integer():
        raise ValueError(f"must be a whole number, not {show(value)}")
    return Quantity(number * spec.step, None, isinstance(value, str))


def _number(spec: ParameterSpec, value: str | int | float) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"must be {_expected(spec)}, not {show(value)}") from None
    if not math.isfinite(number):
        raise ValueError(f"must be a finite number, not {show(value)}")
    return number


def _expected(spec: ParameterSpec) -> str:
    units = spec.type.units
    if units is not None:
        return f"a {units.quantity} such as {units.example} (units: {units.names})"
    return "a whole number" if spec.type is ParameterType.INTEGER else "a number"


def check_value(spec: ParameterSpec, value: object) -> str | None:
    """What is wrong with `value` for `spec`, said as what to fix; None when it is valid."""
    problem = shape_problem(value)
    if problem is not None or not isinstance(value, str | int | float | bool):
        return problem
    match spec.type:
        case ParameterType.BOOLEAN:
            return _boolean_problem(value)
        case ParameterType.STRING:
            return None if isinstance(value, str) else f"must be a string, not {show(value)}"
        case ParameterType.ENUM:
            return _enum_problem(spec, value)
    try:
        quantity = read_quantity(spec, value)
    except ValueError as error:
        return str(error)
    return _bounds_problem(spec, quantity.amount)


def shape_problem(value: object) -> str | None:
    """What is wrong with `value` as a parameter value of any type; None when nothing."""
    if value is None:
        return "has no value (null); give one or leave the parameter out"
    if isinstance(value, list | tuple):
        return "must be a single value, not a list"
    if isinstance(value, dict):
        return "must be a single value, not an object (configurations are flat)"
    if not isinstance(value, str | int | float | bool):
        return f"must be a string, number or boolean, not {type(value).__name__}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, not {value}"
    return None


def _boolean_problem(value: ParameterValue) -> str | None:
    if isinstance(value, bool) or (isinstance(value, str) and value.lower() in BOOLEAN_WORDS):
        return None
    return f"must be true or false (or on/off, yes/no, 1/0), not {show(value)}"


def enum_choice(spec: ParameterSpec, value: ParameterValue) -> str | None:
    """The allowed value `value` stands for; a boolean stands for `on`/`off` where allowed.

    YAML reads a bare `on` as true, so `synchronous_commit: on` arrives as a boolean.
    """
    choice = ("on" if value else "off") if isinstance(value, bool) else value
    return choice if isinstance(choice, str) and choice in spec.allowed_values else None


def _enum_problem(spec: ParameterSpec, value: ParameterValue) -> str | None:
    if enum_choice(spec, value) is not None:
        return None
    return f"must be one of {', '.join(spec.allowed_values)}; not {show(value)}"


def bound_text(spec: ParameterSpec, amount: float) -> str:
    """A bound or amount as a person would write it for this parameter."""
    units = spec.type.units
    if units is not None:
        return units.format_exact(round(amount))
    return show(float(amount))


def _bounds_problem(spec: ParameterSpec, amount: float) -> str | None:
    low, high = bounds(spec)
    if amount < low:
        return f"must be at least {bound_text(spec, low)}, not {bound_text(spec, amount)}"
    if amount > high:
        return f"must be at most {bound_text(spec, high)}, not {bound_text(spec, amount)}"
    return None


def bounds(spec: ParameterSpec) -> tuple[float, float]:
    """The inclusive bounds as amounts (bytes, microseconds, numbers); infinite when unset."""
    low = -math.inf if spec.minimum is None else spec.minimum * spec.step
    high = math.inf if spec.maximum is None else spec.maximum * spec.step
    return low, high


def clamp(spec: ParameterSpec, amount: float) -> tuple[float, str | None]:
    """`amount` within the bounds, and a note when it had to be moved."""
    low, high = bounds(spec)
    if amount < low:
        return low, f"raised to the minimum {bound_text(spec, low)}"
    if amount > high:
        return high, f"lowered to the maximum {bound_text(spec, high)}"
    return amount, None


def _whole_steps(amount: float, step: int, low: float, high: float) -> int:
    """The nearest whole number of steps to `amount` that stays within the bounds."""
    count = round(amount / step)
    if math.isfinite(low):
        count = max(count, math.ceil(low / step))
    if math.isfinite(high):
        count = min(count, math.floor(high / step))
    return count


def write_quantity(spec: ParameterSpec, amount: float, like: Quantity) -> ParameterValue:
    """`amount` (within the bounds) written as `like` was: same form, rounded to the unit."""
    low, high = bounds(spec)
    units = spec.type.units
    if spec.type is ParameterType.FLOAT:
        number = min(max(float(f"{amount:.6g}"), low), high)
        return show(number) if like.text else number
    step = spec.step
    if units is None or like.unit is None:
        count = _whole_steps(amount, step, low, high)
        return str(count) if like.text else count
    rounded, written = units.round_near(amount, like.unit, step, ROUNDING_TOLERANCE)
    if not low <= rounded <= high:
        whole = math.ceil(low / step) if rounded < low else math.floor(high / step)
        written = units.format_exact(whole * step)
    return written
