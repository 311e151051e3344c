"""Which applier changes a system, by the kind of its configuration.

``postgresql`` goes through ``ALTER SYSTEM`` on the connection string in the system's
label (``CFGCLONE_PREDICTOR_POSTGRES_DSN_LABEL``); ``simulated`` through the in-memory
applier used by tests and the demo; every other kind through the team's own tool, a
command (``APPLY_COMMAND``) or an Ansible playbook (``ANSIBLE_PLAYBOOK``). A kind with
no applier is refused when the change is proposed, before anything is stored.

An applier is told the system's host from the label ``cfgclone.dev/host``
(``CFGCLONE_PREDICTOR_HOST_LABEL``), else the system's id. Both labels are under
``cfgclone.dev/``, which only operators may set: an agent registering its own system
can steer neither where nor how a change is applied.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from cfgclone.common.errors import FailedPrecondition
from cfgclone.predictor.appliers import (
    AnsibleApplier,
    AnsibleSettings,
    Applier,
    CommandApplier,
    CommandApplierSettings,
    ManagedSystem,
    PostgresApplier,
    SimulatedApplier,
)
from cfgclone.predictor.repository import SystemRow
from cfgclone.predictor.settings import PredictorSettings


@dataclass(frozen=True)
class Target:
    """A system as its applier sees it, with the applier that changes it."""

    system: ManagedSystem
    applier: Applier


class Appliers:
    """Applier per configuration kind."""

    def __init__(self, settings: PredictorSettings, simulated: SimulatedApplier | None = None):
        self._settings = settings
        self.simulated = simulated or SimulatedApplier()
        self._postgres = PostgresApplier()
        self._fallback: Applier | None = None
        if settings.apply_command:
            self._fallback = CommandApplier(
                CommandApplierSettings(
                    apply_command=settings.apply_command,
                    timeout_s=settings.apply_timeout.total_seconds(),
                )
            )
        elif settings.ansible_playbook:
            self._fallback = AnsibleApplier(
                AnsibleSettings(
                    playbook=Path(settings.ansible_playbook),
                    timeout_s=settings.apply_timeout.total_seconds(),
                )
            )

    def target(self, system: SystemRow, kind: str) -> Target:
        """The applier of ``kind`` for ``system``; FAILED_PRECONDITION saying what is missing."""
        # Only what an operator set: the host label, else the system's id (which an
        # operator gave the agent's credential); never the hostname an agent reports.
        host = system.labels.get(self._settings.host_label) or system.system_id
        if kind == "simulated":
            return Target(ManagedSystem(system.name, host), self.simulated)
        if kind == "postgresql":
            dsn = system.labels.get(self._settings.postgres_dsn_label)
            if not dsn:
                raise FailedPrecondition(
                    f"{system.name} has no label {self._settings.postgres_dsn_label!r} with "
                    "the connection string the PostgreSQL applier needs",
                    reason="NO_APPLIER",
                    metadata={"system": system.name},
                )
            return Target(ManagedSystem(system.name, host, dsn), self._postgres)
        if self._fallback is None:
            raise FailedPrecondition(
                f"no applier for configuration kind {kind!r}: set "
                "CFGCLONE_PREDICTOR_APPLY_COMMAND (for example "
                f"{shlex.quote('ansible-playbook site.yml -l {host} -e @{file}')}) "
                "or CFGCLONE_PREDICTOR_ANSIBLE_PLAYBOOK",
                reason="NO_APPLIER",
                metadata={"kind": kind},
            )
        return Target(ManagedSystem(system.name, host), self._fallback)
