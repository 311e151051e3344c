"""Settings of the predictor service, read once at start from ``CFGCLONE_PREDICTOR_*``.

* ``SHADOW_ROUNDS``, ``SHADOW_SECONDS``, ``SHADOW_TIMEOUT_SECONDS``: pairs of baseline and
  candidate workload runs of a shadow prediction, seconds of each run, and the bound of
  the whole shadow comparison (default 3, 10, 120: the judge needs 20 samples a side).
* ``SHADOW_COMMAND_<KIND>``: the team's shadow script for configuration kind ``<kind>``
  (the suffix lower-cased), run by the command shadow provider (docs/shadow.md), for
  example ``CFGCLONE_PREDICTOR_SHADOW_COMMAND_NGINX=/opt/shadow/nginx-shadow``. A kind
  with a script uses it instead of a built-in provider.
* ``SHADOW_STEP_TIMEOUT_SECONDS``: bound of one create, apply or destroy step of a shadow
  script (default 120).
* ``SHADOW_LOAD_WINDOW_SECONDS``: recent history whose busy period gives the load a
  shadow reproduces (default 86400, a day).
* ``MAX_SHADOW_RUNS``: shadow runs at once (default 2); PredictImpact beyond it is
  RESOURCE_EXHAUSTED, a proposed change waits for a slot.
* ``APPLY_TIMEOUT_SECONDS``: bound of one apply or rollback (default 300).
* ``APPLY_COMMAND``: the team's tool for configuration kinds without a built-in applier,
  for example ``ansible-playbook site.yml -l {host} -e @{file}``.
* ``ANSIBLE_PLAYBOOK``: a playbook run by the Ansible applier for kinds without a
  built-in applier (when ``APPLY_COMMAND`` is unset).
* ``POSTGRES_DSN_LABEL``: system label holding the libpq connection string that the
  PostgreSQL applier uses (default ``cfgclone.dev/postgres-dsn``).
* ``HOST_LABEL``: system label holding the host an applier is given as ``{host}``
  (default ``cfgclone.dev/host``; unset, the system's id). Labels under
  ``cfgclone.dev/`` may be set only by operators.
* ``HISTORY_DAYS``: days of samples before a change used as the verification baseline
  (default 7).
* ``SIMILAR_SYSTEMS``: most similar systems whose history a prediction may borrow
  (default 20).
* ``WEBHOOK_URL``: receives a JSON message for every rollback, held change and failure.
* ``RETRAIN_INTERVAL_SECONDS``: how often the learned models are refreshed when new
  training examples have arrived (default 30; 0 turns the loop off).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from cfgclone.common.settings import SettingsError

_SHADOW_COMMAND = "SHADOW_COMMAND_"


def _number(options: Mapping[str, str], key: str, default: float) -> float:
    raw = options.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"CFGCLONE_PREDICTOR_{key} must be a number, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"CFGCLONE_PREDICTOR_{key} must not be negative, got {raw!r}")
    return value


@dataclass(frozen=True)
class PredictorSettings:
    """How the predictor predicts, applies, verifies and reports."""

    shadow_rounds: int = 3
    shadow_seconds: float = 10.0
    shadow_timeout: timedelta = timedelta(seconds=120)
    shadow_commands: Mapping[str, str] = field(default_factory=dict)
    shadow_step_timeout: timedelta = timedelta(seconds=120)
    shadow_load_window: timedelta = timedelta(days=1)
    max_shadow_runs: int = 2
    apply_timeout: timedelta = timedelta(seconds=300)
    apply_command: str | None = None
    ansible_playbook: str | None = None
    postgres_dsn_label: str = "cfgclone.dev/postgres-dsn"
    host_label: str = "cfgclone.dev/host"
    history: timedelta = timedelta(days=7)
    similar_systems: int = 20
    webhook_url: str | None = None
    retrain_interval: timedelta = timedelta(seconds=30)

    def __post_init__(self) -> None:
        if self.shadow_rounds < 1:
            raise SettingsError("CFGCLONE_PREDICTOR_SHADOW_ROUNDS must be at least 1")
        if self.shadow_seconds <= 0:
            raise SettingsError("CFGCLONE_PREDICTOR_SHADOW_SECONDS must be positive")
        if self.shadow_step_timeout.total_seconds() <= 0:
            raise SettingsError("CFGCLONE_PREDICTOR_SHADOW_STEP_TIMEOUT_SECONDS must be positive")
        if self.shadow_load_window.total_seconds() <= 0:
            raise SettingsError("CFGCLONE_PREDICTOR_SHADOW_LOAD_WINDOW_SECONDS must be positive")
        if self.max_shadow_runs < 1:
            raise SettingsError("CFGCLONE_PREDICTOR_MAX_SHADOW_RUNS must be at least 1")
        if self.similar_systems < 1:
            raise SettingsError("CFGCLONE_PREDICTOR_SIMILAR_SYSTEMS must be at least 1")

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> PredictorSettings:
        """Settings from the service's ``CFGCLONE_PREDICTOR_*`` options."""
        return cls(
            shadow_rounds=int(_number(options, "SHADOW_ROUNDS", 3)),
            shadow_seconds=_number(options, "SHADOW_SECONDS", 10.0),
            shadow_timeout=timedelta(seconds=_number(options, "SHADOW_TIMEOUT_SECONDS", 120)),
            shadow_commands={
                key[len(_SHADOW_COMMAND) :].lower(): value
                for key, value in options.items()
                if key.startswith(_SHADOW_COMMAND) and len(key) > len(_SHADOW_COMMAND) and value
            },
            shadow_step_timeout=timedelta(
                seconds=_number(options, "SHADOW_STEP_TIMEOUT_SECONDS", 120)
            ),
            shadow_load_window=timedelta(
                seconds=_number(options, "SHADOW_LOAD_WINDOW_SECONDS", 86400)
            ),
            max_shadow_runs=int(_number(options, "MAX_SHADOW_RUNS", 2)),
            apply_timeout=timedelta(seconds=_number(options, "APPLY_TIMEOUT_SECONDS", 300)),
            apply_command=options.get("APPLY_COMMAND") or None,
            ansible_playbook=options.get("ANSIBLE_PLAYBOOK") or None,
            postgres_dsn_label=options.get("POSTGRES_DSN_LABEL") or cls.postgres_dsn_label,
            host_label=options.get("HOST_LABEL") or cls.host_label,
            history=timedelta(days=_number(options, "HISTORY_DAYS", 7)),
            similar_systems=int(_number(options, "SIMILAR_SYSTEMS", 20)),
            webhook_url=options.get("WEBHOOK_URL") or None,
            retrain_interval=timedelta(seconds=_number(options, "RETRAIN_INTERVAL_SECONDS", 30)),
        )
