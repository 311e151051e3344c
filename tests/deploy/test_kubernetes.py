"""deploy/kubernetes: every manifest and every rendered overlay valid, and consistent
with the project (commands, images, ports, settings)."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import kustomize
from tests.deploy.support import (
    KUBERNETES,
    PROJECT_IMAGES,
    SERVICES,
    check_command,
    default_port,
    image_name,
    load_yaml_documents,
    parse_dockerfile,
    require_tool,
    run,
    settings_variables,
)

Manifest = dict[str, Any]
BASE = KUBERNETES / "base"
OVERLAYS = sorted(p for p in (KUBERNETES / "overlays").iterdir() if p.is_dir())
KUSTOMIZATIONS = [BASE, *OVERLAYS]
AUTOSCALED = ("collector", "similarity")


def kubernetes_validate(paths: list[Path]) -> None:
    tool = require_tool(
        "kubernetes-validate", "pip install kubernetes-validate (in the dev extras)"
    )
    run([tool, "--strict", "--quiet", *map(str, paths)])


def manifest_files() -> list[Path]:
    """Every complete manifest: all YAML under deploy/kubernetes but kustomizations and
    patches (partial by nature; they are checked as rendered)."""
    return sorted(
        p
        for p in KUBERNETES.rglob("*.yaml")
        if p.name != "kustomization.yaml" and "patches" not in p.relative_to(KUBERNETES).parts
    )


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Manifest]]:
    """Each kustomization (base and overlays) as rendered, by folder name."""
    return {k.name: kustomize.render(k) for k in KUSTOMIZATIONS}


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_owners(manifests: list[Manifest]) -> Iterator[tuple[Manifest, dict[str, Any]]]:
    for manifest in manifests:
        if manifest["kind"] in kustomize.POD_OWNERS:
            yield manifest, manifest["spec"]["template"]["spec"]


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def entrypoint(image: str) -> list[str]:
    """The ENTRYPOINT of the project image ``image`` (unqualified name)."""
    instruction = parse_dockerfile(PROJECT_IMAGES[image])[-1].last("ENTRYPOINT")
    assert instruction is not None
    return instruction.exec_form


def base_image(reference: str, overlay: str) -> str:
    """The project image a rendered reference stands for, undoing an overlay's renaming."""
    name = image_name(reference)
    if overlay != "base":
        kustomization = load_yaml_documents(
            KUBERNETES / "overlays" / overlay / "kustomization.yaml"
        )
        for image in kustomization[0].get("images", []):
            if image.get("newName") == name:
                return str(image["name"])
    return name


def test_every_manifest_passes_kubernetes_validate_strict() -> None:
    files = manifest_files()
    assert {p.name for p in files} >= {f"{s}.yaml" for s in SERVICES}
    kubernetes_validate(files)


def test_every_kustomization_renders_and_passes_kubernetes_validate_strict(
    rendered: dict[str, list[Manifest]], tmp_path: Path
) -> None:
    assert set(rendered) >= {"base", "production"}
    paths = []
    for name, manifests in rendered.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(manifests), encoding="utf-8")
        paths.append(path)
    kubernetes_validate(paths)


def test_renderer_agrees_with_kubectl_kustomize() -> None:
    kubectl = kustomize.kubectl_with_kustomize()
    if kubectl is None:
        pytest.skip("no kubectl with kustomize >= 4; the Python renderer is used unchecked")
    for directory in KUSTOMIZATIONS:
        by_kubectl = {
            (m["kind"], m["metadata"]["name"]): m
            for m in kustomize.render_with_kubectl(kubectl, directory)
        }
        by_python = {
            (m["kind"], m["metadata"]["name"]): m for m in kustomize.render_in_python(directory)
        }
        assert by_python == by_kubectl, directory.name


def test_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\ncommonLabels: {a: b}\n")
    with pytest.raises(kustomize.UnsupportedKustomization, match="commonLabels"):
        kustomize.render_in_python(tmp_path)


@pytest.mark.parametrize("kustomization", [k.name for k in KUSTOMIZATIONS])
def test_each_service_has_a_deployment_service_and_disruption_budget(
    rendered: dict[str, list[Manifest]], kustomization: str
) -> None:
    manifests = rendered[kustomization]
    for service in SERVICES:
        port = default_port(service)
        deployment = find(manifests, "Deployment", f"cfgclone-{service}")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), service
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["ports"] == [
            {"name": "grpc", "containerPort": port},
            {"name": "metrics", "containerPort": 9464},
        ], service
        assert {"name": "CFGCLONE_PORT", "value": str(port)} in container["env"], service

        k8s_service = find(manifests, "Service", f"cfgclone-{service}")
        assert k8s_service["spec"]["selector"] == selector, service
        assert k8s_service["spec"]["ports"] == [
            {"name": "grpc", "port": port, "targetPort": "grpc"}
        ], service

        budget = find(manifests, "PodDisruptionBudget", f"cfgclone-{service}")
        assert budget["apiVersion"] == "policy/v1"
        assert budget["spec"]["selector"]["matchLabels"] == selector, service


def test_base_probes_are_native_grpc_on_the_service_port(
    rendered: dict[str, list[Manifest]],
) -> None:
    for service in SERVICES:
        deployment = find(rendered["base"], "Deployment", f"cfgclone-{service}")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        port = default_port(service)
        assert container["readinessProbe"]["grpc"] == {"port": port}, service
        # Liveness asks the health name that does not follow the database.
        assert container["livenessProbe"]["grpc"] == {"port": port, "service": "liveness"}


def test_production_serves_tls_and_probes_with_the_tls_health_check(
    rendered: dict[str, list[Manifest]],
) -> None:
    manifests = rendered["production"]
    settings = find(manifests, "ConfigMap", "cfgclone-settings")["data"]
    for service in SERVICES:
        deployment = find(manifests, "Deployment", f"cfgclone-{service}")
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["tls"]["secret"]["secretName"] == f"cfgclone-{service}-tls"
        for variable in ("CFGCLONE_TLS_CERT", "CFGCLONE_TLS_KEY", "CFGCLONE_TLS_CA"):
            assert Path(settings[variable]).parent == Path(mounts["tls"]), variable
        for probe in ("readinessProbe", "livenessProbe"):
            # The kubelet's gRPC probe cannot speak TLS.
            assert "grpc" not in container[probe], service
            command = container[probe]["exec"]["command"]
            assert command == ["grpc-health-check", "--server-name", f"cfgclone-{service}"]
            check_command(command)
        assert container["image"].startswith("registry.example.com/")
        assert not container["image"].endswith(":latest")


def test_collector_and_similarity_scale_by_autoscalers(
    rendered: dict[str, list[Manifest]],
) -> None:
    for manifests in rendered.values():
        for service in SERVICES:
            deployment = find(manifests, "Deployment", f"cfgclone-{service}")
            autoscalers = [
                m
                for m in manifests
                if m["kind"] == "HorizontalPodAutoscaler"
                and m["spec"]["scaleTargetRef"]["name"] == f"cfgclone-{service}"
            ]
            if service in AUTOSCALED:
                (autoscaler,) = autoscalers
                assert autoscaler["apiVersion"] == "autoscaling/v2"
                assert autoscaler["spec"]["scaleTargetRef"]["kind"] == "Deployment"
                assert 2 <= autoscaler["spec"]["minReplicas"] <= autoscaler["spec"]["maxReplicas"]
                # The autoscaler owns the count; a fixed one would fight it on every apply.
                assert "replicas" not in deployment["spec"], service
            else:
                assert autoscalers == [], service
                assert deployment["spec"]["replicas"] >= 1, service


def test_every_container_has_resource_requests_and_limits(
    rendered: dict[str, list[Manifest]],
) -> None:
    for manifests in rendered.values():
        for owner, pod in pod_owners(manifests):
            for container in containers(pod):
                resources = container["resources"]
                for bound in ("requests", "limits"):
                    assert set(resources[bound]) == {"cpu", "memory"}, owner["metadata"]["name"]


def test_pods_take_no_service_links_and_no_api_token(
    rendered: dict[str, list[Manifest]],
) -> None:
    for manifests in rendered.values():
        for owner, pod in pod_owners(manifests):
            name = owner["metadata"]["name"]
            # Service links would add CFGCLONE_COLLECTOR_-prefixed variables.
            assert pod["enableServiceLinks"] is False, name
            assert pod["automountServiceAccountToken"] is False, name
            for container in containers(pod):
                security = container["securityContext"]
                assert security["allowPrivilegeEscalation"] is False, name
                assert security["readOnlyRootFilesystem"] is True, name
                assert security["capabilities"]["drop"] == ["ALL"], name


def test_commands_and_images_exist_in_the_project(rendered: dict[str, list[Manifest]]) -> None:
    seen = set()
    for overlay, manifests in rendered.items():
        for _, pod in pod_owners(manifests):
            for container in containers(pod):
                image = base_image(container["image"], overlay)
                assert image in PROJECT_IMAGES, f"{container['image']} is no project image"
                seen.add(image)
                command = container.get("command") or entrypoint(image)
                check_command([*command, *container.get("args", [])])
                for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                    if "exec" in container.get(probe, {}):
                        check_command(container[probe]["exec"]["command"])
    assert seen == set(PROJECT_IMAGES)


def test_migrations_run_as_a_job(rendered: dict[str, list[Manifest]]) -> None:
    for manifests in rendered.values():
        job = find(manifests, "Job", "cfgclone-migrate")
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["cfgclone", "migrate"]
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_database_is_external_and_named_by_the_secret(
    rendered: dict[str, list[Manifest]],
) -> None:
    for manifests in rendered.values():
        assert not [m for m in manifests if m["kind"] == "StatefulSet"], "no database here"
        secret = find(manifests, "Secret", "cfgclone-secrets")
        assert secret["stringData"]["database-url"].startswith("postgresql://")
        for owner, pod in pod_owners(manifests):
            if owner["kind"] == "DaemonSet":
                continue
            (container,) = pod["containers"]
            database = [e for e in container["env"] if e["name"] == "CFGCLONE_DATABASE_URL"]
            assert database == [
                {
                    "name": "CFGCLONE_DATABASE_URL",
                    "valueFrom": {
                        "secretKeyRef": {"name": "cfgclone-secrets", "key": "database-url"}
                    },
                }
            ], owner["metadata"]["name"]


def test_secret_references_resolve_and_base_secrets_are_placeholders(
    rendered: dict[str, list[Manifest]],
) -> None:
    manifests = rendered["base"]
    secrets = {m["metadata"]["name"]: m["stringData"] for m in manifests if m["kind"] == "Secret"}
    config_maps = {m["metadata"]["name"]: m["data"] for m in manifests if m["kind"] == "ConfigMap"}
    for data in secrets.values():
        for key, value in data.items():
            assert "CHANGE-ME" in value, f"{key} must be an obvious placeholder"
    for _, pod in pod_owners(manifests):
        for container in containers(pod):
            for variable in container.get("env", []):
                reference = variable.get("valueFrom", {}).get("secretKeyRef")
                if reference:
                    assert reference["key"] in secrets[reference["name"]], reference
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps
        for volume in pod["volumes"]:
            if "secret" in volume:
                data = secrets[volume["secret"]["secretName"]]
                assert {i["key"] for i in volume["secret"].get("items", [])} <= set(data)
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps


def test_settings_names_and_peer_addresses_agree_with_the_services(
    rendered: dict[str, list[Manifest]],
) -> None:
    for overlay, manifests in rendered.items():
        settings = find(manifests, "ConfigMap", "cfgclone-settings")["data"]
        names = set(settings)
        for _, pod in pod_owners(manifests):
            for container in containers(pod):
                names |= {e["name"] for e in container.get("env", [])}
        unknown = {n for n in names if n.startswith("CFGCLONE_")} - settings_variables()
        assert not unknown, f"{overlay}: {sorted(unknown)}"
        for peer in SERVICES:
            address = settings[f"CFGCLONE_{peer.upper()}_ADDRESS"]
            assert address == f"cfgclone-{peer}:{default_port(peer)}", overlay
            find(manifests, "Service", f"cfgclone-{peer}")


def test_agent_runs_on_every_node_with_its_config_token_and_spool(
    rendered: dict[str, list[Manifest]],
) -> None:
    for overlay, manifests in rendered.items():
        daemon_set = find(manifests, "DaemonSet", "cfgclone-agent")
        pod = daemon_set["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert base_image(container["image"], overlay) == "cfgclone-agent"
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        config_map = find(manifests, "ConfigMap", volumes["config"]["configMap"]["name"])
        arguments = container["args"]
        config_path = Path(arguments[arguments.index("--config") + 1])
        assert config_path == Path(mounts["config"]["mountPath"]) / "agent.toml"
        config = tomllib.loads(config_map["data"][config_path.name])

        assert mounts["tokens"]["subPathExpr"] == "$(NODE_NAME)"
        assert config["collector"]["token_file"] == mounts["tokens"]["mountPath"]
        assert Path(config["spool"]["path"]).is_relative_to(mounts["spool"]["mountPath"])
        assert volumes["spool"]["hostPath"]["path"] == mounts["spool"]["mountPath"]
        if "ca_file" in config["collector"]:
            assert Path(config["collector"]["ca_file"]).parent == Path(mounts["ca"]["mountPath"]), (
                overlay
            )
        host, _, port = config["collector"]["address"].rpartition(":")
        assert (host, int(port)) == ("cfgclone-collector", default_port("collector"))
        assert pod["hostNetwork"] is True
        assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
