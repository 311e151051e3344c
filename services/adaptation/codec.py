"""Conversion between the adaptation domain and the `cfgclone.v1` messages.

The only module of the engine that imports protobuf, so that the servicer can go from a
`Configuration` and two `System`s to a schema, content and host resources and back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct

from cfgclone.v1 import common_pb2

from .builtin import schema_for
from .errors import InvalidSchema, Violation
from .hosts import HostResources, typical_disk_throughput
from .schema import Schema
from .spec import Floor, ParameterSpec, ParameterType, ParameterValue, Scaling
from .units import parse_bytes

__all__ = [
    "DISK_THROUGHPUT_LABEL",
    "content_from_struct",
    "content_to_struct",
    "host_from_system",
    "schema_from_proto",
    "schema_of",
    "schema_to_proto",
    "spec_from_proto",
    "spec_to_proto",
]

DISK_THROUGHPUT_LABEL = "disk_throughput"
"""System label that states the data disk's measured throughput per second, as a size
(`disk_throughput=800MB`). Without it the throughput is estimated from the kind of disk."""

_TYPES: Mapping[common_pb2.ParameterType.ValueType, ParameterType] = MappingProxyType(
    {
        common_pb2.PARAMETER_TYPE_INTEGER: ParameterType.INTEGER,
        common_pb2.PARAMETER_TYPE_FLOAT: ParameterType.FLOAT,
        common_pb2.PARAMETER_TYPE_BOOLEAN: ParameterType.BOOLEAN,
        common_pb2.PARAMETER_TYPE_STRING: ParameterType.STRING,
        common_pb2.PARAMETER_TYPE_ENUM: ParameterType.ENUM,
        common_pb2.PARAMETER_TYPE_BYTES: ParameterType.BYTES,
        common_pb2.PARAMETER_TYPE_DURATION: ParameterType.DURATION,
    }
)
_TYPE_NUMBERS = {kind: number for number, kind in _TYPES.items()}

_SCALINGS: Mapping[common_pb2.ScalingRule.ValueType, Scaling] = MappingProxyType(
    {
        # Unset means "copied unchanged", the safe reading of a declaration that is silent.
        common_pb2.SCALING_RULE_UNSPECIFIED: Scaling.NONE,
        common_pb2.SCALING_RULE_NONE: Scaling.NONE,
        common_pb2.SCALING_RULE_MEMORY: Scaling.MEMORY,
        common_pb2.SCALING_RULE_CORES: Scaling.CORES,
        common_pb2.SCALING_RULE_DISK_THROUGHPUT: Scaling.DISK_THROUGHPUT,
    }
)
_SCALING_NUMBERS = {
    Scaling.NONE: common_pb2.SCALING_RULE_NONE,
    Scaling.MEMORY: common_pb2.SCALING_RULE_MEMORY,
    Scaling.CORES: common_pb2.SCALING_RULE_CORES,
    Scaling.DISK_THROUGHPUT: common_pb2.SCALING_RULE_DISK_THROUGHPUT,
}

_FLOORS: Mapping[common_pb2.DemandFloor.ValueType, Floor] = MappingProxyType(
    {
        common_pb2.DEMAND_FLOOR_UNSPECIFIED: Floor.NONE,
        common_pb2.DEMAND_FLOOR_WORKING_SET: Floor.WORKING_SET,
        common_pb2.DEMAND_FLOOR_CONCURRENCY: Floor.CONCURRENCY,
    }
)
_FLOOR_NUMBERS = {floor: number for number, floor in _FLOORS.items()}

_TYPE_NAMES = ", ".join(f"PARAMETER_TYPE_{kind.name}" for kind in ParameterType)


def spec_from_proto(message: common_pb2.ParameterSpec) -> ParameterSpec:
    """The domain spec of a `ParameterSpec`; ValueError when its type or scaling is unknown."""
    kind = _TYPES.get(message.type)
    if kind is None:
        raise ValueError(f"type is unspecified or unknown; use one of {_TYPE_NAMES}")
    scaling = _SCALINGS.get(message.scaling)
    if scaling is None:
        raise ValueError(f"scaling rule {message.scaling} is unknown")
    floor = _FLOORS.get(message.floor)
    if floor is None:
        raise ValueError(f"demand floor {message.floor} is unknown")
    return ParameterSpec(
        key=message.key,
        type=kind,
        unit=message.unit,
        minimum=message.min if message.HasField("min") else None,
        maximum=message.max if message.HasField("max") else None,
        allowed_values=tuple(message.allowed_values),
        scaling=scaling,
        requires_restart=message.requires_restart,
        floor=floor,
    )


def spec_to_proto(spec: ParameterSpec) -> common_pb2.ParameterSpec:
    """The `ParameterSpec` message of a domain spec."""
    return common_pb2.ParameterSpec(
        key=spec.key,
        type=_TYPE_NUMBERS[spec.type],
        unit=spec.unit,
        min=spec.minimum,
        max=spec.maximum,
        allowed_values=spec.allowed_values,
        scaling=_SCALING_NUMBERS[spec.scaling],
        requires_restart=spec.requires_restart,
        floor=_FLOOR_NUMBERS[spec.floor],
    )


def schema_from_proto(kind: str, messages: Iterable[common_pb2.ParameterSpec]) -> Schema:
    """The schema declared by `Configuration.schema`; `InvalidSchema` lists every problem."""
    specs: list[ParameterSpec] = []
    violations: list[Violation] = []
    for message in messages:
        try:
            specs.append(spec_from_proto(message))
        except ValueError as error:
            violations.append(Violation(message.key, str(error)))
    try:
        schema = Schema(kind, tuple(specs))
    except InvalidSchema as error:
        violations += error.violations
    if violations:
        raise InvalidSchema(kind, violations)
    return schema


def schema_to_proto(schema: Schema) -> list[common_pb2.ParameterSpec]:
    """The `ParameterSpec` messages of a schema, in declaration order."""
    return [spec_to_proto(spec) for spec in schema.parameters]


def schema_of(configuration: common_pb2.Configuration) -> Schema:
    """The schema a configuration is validated and adapted with: the built-in schema of
    its kind, with the parameters the configuration declares itself winning."""
    declared = schema_from_proto(configuration.kind, configuration.schema)
    return schema_for(configuration.kind, declared.parameters)


def content_from_struct(struct: Struct) -> dict[str, object]:
    """A `Configuration.content` as plain values, with whole numbers as integers.

    `Struct` carries every number as a double; `100.0` comes back as `100`.
    """
    return {key: _whole(value) for key, value in json_format.MessageToDict(struct).items()}


def _whole(value: object) -> object:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def content_to_struct(content: Mapping[str, ParameterValue]) -> Struct:
    """Configuration content as a `Struct`."""
    struct = Struct()
    struct.update(dict(content))
    return struct


def host_from_system(system: common_pb2.System) -> HostResources:
    """The resources of a system as the collector records it; zero means unknown.

    The disk throughput comes from the `disk_throughput` label when set, else it is a
    typical figure for the largest disk's kind (see `typical_disk_throughput`). Raises
    ValueError when the label is not a size.
    """
    throughput, estimated = _disk_throughput(system)
    return HostResources(
        memory_bytes=system.memory_bytes or None,
        cores=system.cpu_cores or None,
        disk_throughput=throughput,
        disk_throughput_estimated=estimated,
        architecture=system.architecture,
        os=system.os,
    )


def _disk_throughput(system: common_pb2.System) -> tuple[float | None, bool]:
    stated = system.labels.get(DISK_THROUGHPUT_LABEL)
    if stated is not None:
        try:
            return float(parse_bytes(stated)), False
        except ValueError as error:
            raise ValueError(
                f"label {DISK_THROUGHPUT_LABEL}={stated!r} of {system.name} is not a size "
                f"per second such as 800MB: {error}"
            ) from None
    disks = [disk for disk in system.disks if disk.size_bytes > 0]
    if not disks:
        return None, False
    data_disk = max(disks, key=lambda disk: disk.size_bytes)
    return float(typical_disk_throughput(data_disk.device, rotational=data_disk.rotational)), True
