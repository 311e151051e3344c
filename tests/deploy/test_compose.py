"""deploy/compose.yaml: valid for docker-compose, and consistent with the project."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from cfgclone.common.auth import Credentials, Role
from tests.deploy.support import (
    DEPLOY,
    PROJECT_IMAGES,
    REPO,
    SERVICES,
    THIRD_PARTY_IMAGES,
    check_command,
    default_port,
    image_name,
    parse_dockerfile,
    require_tool,
    run,
    settings_variables,
)

COMPOSE = DEPLOY / "compose.yaml"
INFRASTRUCTURE = {"timescaledb", "migrate", "otel-collector", "jaeger", "prometheus", "grafana"}
PROFILES: dict[str, Sequence[str]] = {"default": (), "tls": ("--profile", "tls")}


def compose_environment() -> dict[str, str]:
    """The environment without anything that would change what compose renders."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("COMPOSE_", "DOCKER_")) and k != "POSTGRES_PASSWORD"
    }


def docker_compose(*args: str) -> str:
    tool = require_tool(
        "docker-compose", "apt-get install docker-compose (Debian's package validates offline)"
    )
    return run([tool, "--file", str(COMPOSE), *args], env=compose_environment())


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """The compose file as docker-compose resolves it (anchors merged, paths absolute)."""
    rendered: dict[str, Any] = yaml.safe_load(docker_compose("config"))
    return rendered


def active_services(config: dict[str, Any], profiles: set[str]) -> set[str]:
    """What `up` starts with ``profiles`` active: services without profiles, and theirs."""
    return {
        name
        for name, service in config["services"].items()
        if not service.get("profiles") or profiles & set(service["profiles"])
    }


def variants(config: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(service, compose name, definition) of the plaintext and TLS variant of each."""
    return [
        (service, name, config["services"][name])
        for service in SERVICES
        for name in (service, f"{service}-tls")
    ]


def default_profiles() -> set[str]:
    """COMPOSE_PROFILES from deploy/.env, which compose reads from the project folder."""
    for line in (DEPLOY / ".env").read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "COMPOSE_PROFILES":
            return set(value.strip().split(","))
    return set()


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_compose_file_passes_docker_compose_config(profile: str) -> None:
    out = docker_compose(*PROFILES[profile], "config", "--quiet")
    assert out == ""


def test_a_bare_up_starts_plaintext_and_the_tls_profile_starts_tls(
    config: dict[str, Any],
) -> None:
    assert active_services(config, default_profiles()) == INFRASTRUCTURE | set(SERVICES)
    tls = {f"{s}-tls" for s in SERVICES}
    assert active_services(config, {"tls"}) == INFRASTRUCTURE | tls


def test_every_service_runs_its_command_on_its_port_with_a_grpc_health_check(
    config: dict[str, Any],
) -> None:
    for service, name, definition in variants(config):
        port = default_port(service)
        assert definition["command"] == [f"cfgclone-{service}"], name
        assert definition["environment"]["CFGCLONE_PORT"] == str(port), name
        assert any(p.startswith(f"127.0.0.1:{port}:{port}") for p in definition["ports"]), name
        # The check resolves the service's own name, which the TLS variant carries as
        # an alias, so its certificate's name matches in both.
        assert definition["healthcheck"]["test"] == [
            "CMD",
            "grpc-health-check",
            f"{service}:{port}",
        ], name
        if name != service:
            assert definition["networks"]["default"]["aliases"] == [service], name


def test_services_start_after_the_migrations_and_migrations_after_the_database(
    config: dict[str, Any],
) -> None:
    services = config["services"]
    for _, name, definition in variants(config):
        assert definition["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}
        }, name
    assert services["migrate"]["command"] == ["cfgclone", "migrate"]
    assert services["migrate"]["depends_on"] == {"timescaledb": {"condition": "service_healthy"}}
    assert "healthcheck" in services["timescaledb"]
    assert any(
        v.startswith("timescaledb:/var/lib/postgresql/data")
        for v in services["timescaledb"]["volumes"]
    )
    assert "timescaledb" in config["volumes"]


def test_commands_exist_in_the_project(config: dict[str, Any]) -> None:
    for definition in config["services"].values():
        if image_name(definition["image"]) not in PROJECT_IMAGES:
            continue
        dockerfile = REPO / definition["build"]["context"] / definition["build"]["dockerfile"]
        final = parse_dockerfile(dockerfile)[-1]
        entrypoint = final.last("ENTRYPOINT")
        assert entrypoint is not None
        check_command([*entrypoint.exec_form, *definition["command"]])
        if "healthcheck" in definition:
            check_command(definition["healthcheck"]["test"][1:])


def test_images_are_built_from_the_project_or_taken_from_known_publishers(
    config: dict[str, Any],
) -> None:
    for name, definition in config["services"].items():
        image = image_name(definition["image"])
        if image in PROJECT_IMAGES:
            dockerfile = Path(definition["build"]["context"]) / definition["build"]["dockerfile"]
            assert dockerfile == PROJECT_IMAGES[image], name
        else:
            assert image in THIRD_PARTY_IMAGES, f"{name}: unknown image {image}"
            assert "build" not in definition, name
            assert not definition["image"].endswith(":latest"), f"{name}: pin the image"


def test_peer_addresses_name_the_services_and_their_ports(config: dict[str, Any]) -> None:
    for _, name, definition in [*variants(config), ("", "migrate", config["services"]["migrate"])]:
        environment = definition["environment"]
        for peer in SERVICES:
            assert environment[f"CFGCLONE_{peer.upper()}_ADDRESS"] == (
                f"{peer}:{default_port(peer)}"
            ), name
        assert environment["CFGCLONE_DATABASE_URL"].startswith("postgresql://"), name
        assert "@timescaledb:5432/" in environment["CFGCLONE_DATABASE_URL"], name


def test_environment_names_are_settings_the_services_know(config: dict[str, Any]) -> None:
    for name, definition in config["services"].items():
        unknown = {
            k for k in definition.get("environment", {}) if k.startswith("CFGCLONE_")
        } - settings_variables()
        assert not unknown, f"{name}: {sorted(unknown)}"


def test_traces_flow_from_the_services_through_the_collector_to_jaeger(
    config: dict[str, Any],
) -> None:
    services = config["services"]
    otel = yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text(encoding="utf-8"))
    # The collector reads the mounted file, which receives on 4317.
    assert (
        f"{DEPLOY / 'otel-collector.yaml'}:/etc/otelcol/config.yaml:ro"
        in (services["otel-collector"]["volumes"])
    )
    assert services["otel-collector"]["command"] == ["--config=/etc/otelcol/config.yaml"]
    assert otel["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")
    for _, name, definition in variants(config):
        assert definition["environment"]["CFGCLONE_OTLP_ENDPOINT"] == (
            "http://otel-collector:4317"
        ), name
    pipeline = otel["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        assert pipeline[kind], kind
        assert set(pipeline[kind]) <= set(otel[kind]), kind
    for exporter in pipeline["exporters"]:
        host, _, port = otel["exporters"][exporter]["endpoint"].rpartition(":")
        assert host in services, f"{exporter} sends to {host}, not a compose service"
        assert (host, port) == ("jaeger", "4317")
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"


@pytest.fixture(scope="module")
def dev_certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What deploy/make-dev-certs.sh writes, in a temporary folder."""
    require_tool("openssl", "apt-get install openssl")
    folder = tmp_path_factory.mktemp("dev-certs") / "certs"
    run(["bash", str(DEPLOY / "make-dev-certs.sh"), str(folder)])
    return folder


def test_tls_profile_mounts_every_file_its_settings_name(
    config: dict[str, Any], dev_certificates: Path
) -> None:
    for service in SERVICES:
        definition = config["services"][f"{service}-tls"]
        assert f"{DEPLOY / 'certs'}:/certs:ro" in definition["volumes"]
        environment = definition["environment"]
        assert environment["CFGCLONE_TLS_CERT"] == f"/certs/{service}.crt"
        assert environment["CFGCLONE_TLS_CLIENT_CERT"] == f"/certs/{service}.crt"
        for variable in (
            "CFGCLONE_TLS_CERT",
            "CFGCLONE_TLS_KEY",
            "CFGCLONE_TLS_CLIENT_CA",
            "CFGCLONE_TLS_CA",
            "CFGCLONE_TLS_CLIENT_CERT",
            "CFGCLONE_TLS_CLIENT_KEY",
            "CFGCLONE_AUTH_TOKENS_FILE",
        ):
            path = environment[variable]
            assert path.startswith("/certs/"), variable
            assert (dev_certificates / path.removeprefix("/certs/")).is_file(), variable
        assert not any(
            k.startswith("CFGCLONE_TLS_")
            for k in config["services"][service].get("environment", {})
        ), service


def test_dev_credentials_give_each_service_its_role(dev_certificates: Path) -> None:
    credentials = Credentials.from_file(dev_certificates / "credentials")
    for service in SERVICES:
        identity = credentials.certificate_names[service]
        assert (identity.name, identity.role) == (service, Role.SERVICE)
    assert credentials.certificate_names["operator"].role == Role.OPERATOR


def test_dev_certificates_are_not_overwritten(dev_certificates: Path) -> None:
    completed = subprocess.run(
        ["bash", str(DEPLOY / "make-dev-certs.sh"), str(dev_certificates)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 1
    assert "exists" in completed.stderr
