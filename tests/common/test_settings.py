"""Settings are read once, validated at start, and flags win over the environment."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from cfgclone.common.settings import SettingsError, load_settings


def test_environment_and_flags_make_frozen_settings(tmp_path: Path) -> None:
    env = {
        "CFGCLONE_DATABASE_URL": "postgresql://db.example:5432/cfgclone",
        "CFGCLONE_PORT": "6000",
        "CFGCLONE_RETENTION_DAYS": "7",
        "CFGCLONE_PREDICTOR_ADDRESS": "predictor.internal:443",
        "CFGCLONE_COLLECTOR_BATCH_LIMIT": "5000",
    }
    settings = load_settings("collector", ["--port", "7000", "--host", "0.0.0.0"], env)
    assert settings.server.port == 7000
    assert settings.server.host == "0.0.0.0"
    assert settings.database.url == "postgresql://db.example:5432/cfgclone"
    assert settings.database.retention == timedelta(days=7)
    assert settings.peers.address("predictor") == "predictor.internal:443"
    assert settings.options == {"BATCH_LIMIT": "5000"}
    with pytest.raises(AttributeError):
        settings.server.port = 1  # type: ignore[misc]


def test_default_port_differs_per_service() -> None:
    ports = {load_settings(name, [], {}).server.port for name in ("collector", "predictor")}
    assert ports == {50051, 50054}


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CFGCLONE_PORT": "70000"}, "CFGCLONE_PORT"),
        ({"CFGCLONE_PORT": "abc"}, "CFGCLONE_PORT"),
        ({"CFGCLONE_DATABASE_URL": "mysql://x"}, "CFGCLONE_DATABASE_URL"),
        ({"CFGCLONE_DB_POOL_MIN": "9", "CFGCLONE_DB_POOL_MAX": "2"}, "CFGCLONE_DB_POOL_MIN"),
        ({"CFGCLONE_TLS_CERT": "/nonexistent.pem"}, "CFGCLONE_TLS_KEY"),
        ({"CFGCLONE_LOG_FORMAT": "xml"}, "CFGCLONE_LOG_FORMAT"),
        ({"CFGCLONE_AUTH_TOKENS_FILE": "/nonexistent"}, "CFGCLONE_AUTH_TOKENS_FILE"),
    ],
)
def test_bad_settings_stop_the_service_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings("collector", [], env)
