"""The adaptation engine: a configuration that works on one host, made fit for another.

Pure domain code (no gRPC, no database), tested directly:

- :mod:`~cfgclone.adaptation.spec` and :mod:`~.schema`: what each parameter
  of a configuration kind is (type, unit, bounds, scaling) and validation against it;
- :mod:`~.builtin`: the schemas cfgclone knows (`postgresql`, `simulated`);
- :mod:`~.units`: sizes and durations written the PostgreSQL way (`16GB`, `200ms`);
- :mod:`~.scaling` and :mod:`~.alternatives`: scaling by the target/source resource ratio,
  with an explanation per parameter, and alternatives for the predictor to choose from;
- :mod:`~.demand`: what the source's own data shows a parameter needs (working set,
  concurrency), below which scaling never goes;
- :mod:`~.versions`: the most preferred catalogued version the target can run;
- :mod:`~.scripts`: user-supplied adaptation scripts, bounded in time, output and memory;
- :mod:`~.codec`: conversion to and from the `cfgclone.v1` messages.
"""

from __future__ import annotations

from .alternatives import Candidate, candidates
from .builtin import BUILTIN_SCHEMAS, POSTGRESQL, SIMULATED, schema_for
from .codec import (
    DISK_THROUGHPUT_LABEL,
    content_from_struct,
    content_to_struct,
    host_from_system,
    schema_from_proto,
    schema_of,
    schema_to_proto,
    spec_from_proto,
    spec_to_proto,
)
from .demand import (
    CONCURRENCY_PAIRS,
    WORKING_SET_SERIES,
    ObservedDemand,
    observed_demand,
)
from .errors import (
    AdaptationError,
    AdaptationFailed,
    InvalidConfiguration,
    InvalidSchema,
    NoSuitableVersion,
    ScriptFailure,
    Violation,
)
from .hosts import HostResources
from .scaling import (
    AS_IS,
    CONSERVATIVE,
    PROPORTIONAL,
    Adaptation,
    ParameterExplanation,
    ScalingPolicy,
    adapt,
)
from .schema import Schema, UnknownParameter
from .scripts import (
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_OUTPUT_LIMIT,
    DEFAULT_SCRIPT_TIMEOUT,
    run_adaptation_script,
)
from .spec import Floor, ParameterSpec, ParameterType, ParameterValue, Scaling
from .units import format_bytes, format_duration, parse_bytes, parse_duration
from .versions import Catalogue, CatalogueEntry, Rejection, select_version

__all__ = [
    "AS_IS",
    "BUILTIN_SCHEMAS",
    "CONCURRENCY_PAIRS",
    "CONSERVATIVE",
    "DEFAULT_MEMORY_LIMIT",
    "DEFAULT_OUTPUT_LIMIT",
    "DEFAULT_SCRIPT_TIMEOUT",
    "DISK_THROUGHPUT_LABEL",
    "POSTGRESQL",
    "PROPORTIONAL",
    "SIMULATED",
    "WORKING_SET_SERIES",
    "Adaptation",
    "AdaptationError",
    "AdaptationFailed",
    "Candidate",
    "Catalogue",
    "CatalogueEntry",
    "Floor",
    "HostResources",
    "InvalidConfiguration",
    "InvalidSchema",
    "NoSuitableVersion",
    "ObservedDemand",
    "ParameterExplanation",
    "ParameterSpec",
    "ParameterType",
    "ParameterValue",
    "Rejection",
    "Scaling",
    "ScalingPolicy",
    "Schema",
    "ScriptFailure",
    "UnknownParameter",
    "Violation",
    "adapt",
    "candidates",
    "content_from_struct",
    "content_to_struct",
    "format_bytes",
    "format_duration",
    "host_from_system",
    "observed_demand",
    "parse_bytes",
    "parse_duration",
    "run_adaptation_script",
    "schema_for",
    "schema_from_proto",
    "schema_of",
    "schema_to_proto",
    "select_version",
    "spec_from_proto",
    "spec_to_proto",
]
