"""The parameter schema of a configuration kind, and validation of a configuration against it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

from .errors import InvalidConfiguration, InvalidSchema, Violation
from .spec import ParameterSpec, ParameterValue
from .values import check_value, shape_problem

__all__ = ["Schema", "UnknownParameter"]

NEAREST_NAMES = 3
"""Known names offered for an unknown one, at most."""


class UnknownParameter(NamedTuple):
    """A parameter name the schema does not know, and the known names nearest to it."""

    name: str
    nearest: tuple[str, ...]
    """The closest known names, best first (may be empty)."""


@dataclass(frozen=True)
class Schema:
    """The declared parameters of one configuration kind, for example `postgresql`.

    Parameters the schema does not declare are allowed (a PostgreSQL configuration has
    hundreds of settings): they must be single values and are copied unchanged. Raises
    `InvalidSchema` when a declaration contradicts itself or a key is declared twice.
    """

    kind: str
    parameters: tuple[ParameterSpec, ...] = ()
    _by_key: Mapping[str, ParameterSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        violations = [
            Violation(spec.key, problem) for spec in self.parameters for problem in spec.problems()
        ]
        keys = [spec.key for spec in self.parameters]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        violations += [Violation(key, "is declared more than once") for key in repeated]
        if violations:
            raise InvalidSchema(self.kind, violations)
        by_key = {spec.key: spec for spec in self.parameters}
        object.__setattr__(self, "_by_key", MappingProxyType(by_key))

    def spec(self, key: str) -> ParameterSpec | None:
        """The declaration of `key`, None when the schema does not declare it."""
        return self._by_key.get(key)

    def unknown_parameters(
        self, names: Iterable[str], *, also_known: Iterable[str] = ()
    ) -> list[UnknownParameter]:
        """The ``names`` this schema does not declare and ``also_known`` (the parameters a
        system's configuration already has) does not hold, each with the nearest known names.

        Such a name is most likely a typo. A schema that declares nothing knows no name:
        every name it is given and ``also_known`` lacks comes back, without suggestions
        from a schema (the caller decides whether an unchecked kind may take it).
        """
        present = set(also_known)
        known = sorted(set(self._by_key) | present)
        return [
            UnknownParameter(name, tuple(difflib.get_close_matches(name, known, n=NEAREST_NAMES)))
            for name in sorted(set(names))  # in one order, whatever order a map gave them
            if name not in self._by_key and name not in present
        ]

    def overridden_by(self, declared: Iterable[ParameterSpec]) -> Schema:
        """This schema with `declared` replacing the parameters of the same key.

        A configuration may bring declarations of its own: those win, parameter by
        parameter; the ones it does not mention keep this schema's declaration.
        """
        own = Schema(self.kind, tuple(declared))
        replacements = {spec.key: spec for spec in own.parameters}
        kept = tuple(replacements.pop(spec.key, spec) for spec in self.parameters)
        return Schema(self.kind, kept + tuple(replacements.values()))

    def validate(self, content: Mapping[str, object]) -> dict[str, ParameterValue]:
        """`content` checked against the schema; `InvalidConfiguration` lists every problem."""
        violations: list[Violation] = []
        valid: dict[str, ParameterValue] = {}
        for key, value in content.items():
            if not key.strip():
                violations.append(Violation(key, "the key is empty"))
                continue
            spec = self.spec(key)
            problem = shape_problem(value) if spec is None else check_value(spec, value)
            if problem is not None:
                violations.append(Violation(key, problem))
            elif isinstance(value, str | int | float | bool):
                valid[key] = value
        if violations:
            raise InvalidConfiguration(violations)
        return valid
