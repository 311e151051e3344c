"""Appliers: how the predictor changes a real system, through the team's own tooling.

Every applier has the same interface (``Applier``): apply a configuration, read
the current one, roll back to an earlier one; failures raise ``ApplyFailed``
with the tool's output. Implementations: PostgreSQL (``ALTER SYSTEM`` and a
reload), any command (the team's tool with the configuration as a file),
Ansible (a playbook run, check mode first) and a simulated one for tests.
"""

from __future__ import annotations

from cfgclone.common.processes import CommandOutcome, run_bounded
from cfgclone.predictor.appliers.ansible import (
    CONFIG_FILE_PLAYBOOK,
    AnsibleApplier,
    AnsibleSettings,
)
from cfgclone.predictor.appliers.command import CommandApplier, CommandApplierSettings
from cfgclone.predictor.appliers.model import (
    Applier,
    ApplyFailed,
    ApplyResult,
    Configuration,
    ConfigValue,
    ManagedSystem,
)
from cfgclone.predictor.appliers.postgres import PostgresApplier, PostgresApplierSettings
from cfgclone.predictor.appliers.simulated import AppliedCall, SimulatedApplier

__all__ = [
    "CONFIG_FILE_PLAYBOOK",
    "AnsibleApplier",
    "AnsibleSettings",
    "AppliedCall",
    "Applier",
    "ApplyFailed",
    "ApplyResult",
    "CommandApplier",
    "CommandApplierSettings",
    "CommandOutcome",
    "ConfigValue",
    "Configuration",
    "ManagedSystem",
    "PostgresApplier",
    "PostgresApplierSettings",
    "SimulatedApplier",
    "run_bounded",
]
