"""Render a kustomization: with ``kubectl kustomize`` when a recent one is installed,
else with the small renderer here.

The renderer implements only what deploy/kubernetes uses (resources, namespace,
images, replicas, strategic-merge patches) and refuses any other field, so a
kustomization it cannot render fails loudly instead of rendering wrong. Where
kubectl is available a test checks that both agree.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]

SUPPORTED_FIELDS = frozenset(
    {"apiVersion", "kind", "resources", "namespace", "images", "replicas", "patches"}
)
CLUSTER_SCOPED_KINDS = frozenset(
    {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass", "StorageClass"}
)
MERGE_KEYS = {
    # Kubernetes' patchMergeKey of each list the manifests patch.
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "tolerations": None,  # atomic: replaced whole
}
POD_OWNERS = frozenset({"Deployment", "DaemonSet", "StatefulSet", "Job"})
MINIMUM_KUSTOMIZE = (4, 0)


class UnsupportedKustomization(ValueError):
    """The kustomization uses a field this renderer does not implement."""


def render(directory: Path) -> list[Manifest]:
    """The manifests the kustomization in ``directory`` produces."""
    kubectl = kubectl_with_kustomize()
    if kubectl is not None:
        return render_with_kubectl(kubectl, directory)
    return render_in_python(directory)


@functools.cache
def kubectl_with_kustomize() -> str | None:
    """kubectl when it is installed with kustomize 4 or later (older lacks ``patches``)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    completed = subprocess.run(
        [kubectl, "version", "--client", "--output=json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if completed.returncode != 0:
        return None
    version = json.loads(completed.stdout).get("kustomizeVersion", "")
    match = re.match(r"v?(\d+)\.(\d+)", version)
    if match is None or (int(match.group(1)), int(match.group(2))) < MINIMUM_KUSTOMIZE:
        return None
    return kubectl


def render_with_kubectl(kubectl: str, directory: Path) -> list[Manifest]:
    completed = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if completed.returncode != 0:
        raise UnsupportedKustomization(f"kubectl kustomize {directory}: {completed.stderr}")
    return [doc for doc in yaml.safe_load_all(completed.stdout) if doc is not None]


def render_in_python(directory: Path) -> list[Manifest]:
    kustomization = _load_one(directory / "kustomization.yaml")
    unknown = set(kustomization) - SUPPORTED_FIELDS
    if unknown:
        raise UnsupportedKustomization(f"{directory}: cannot render {sorted(unknown)}")
    manifests: list[Manifest] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            manifests.extend(render_in_python(path))
        else:
            manifests.extend(_load_all(path))
    for patch_entry in kustomization.get("patches", []):
        if set(patch_entry) != {"path"}:
            raise UnsupportedKustomization(f"{directory}: patches need exactly a path")
        for patch in _load_all(directory / patch_entry["path"]):
            index = _find(manifests, patch["kind"], patch["metadata"]["name"])
            manifests[index] = strategic_merge(manifests[index], patch)
    namespace = kustomization.get("namespace")
    for manifest in manifests:
        if namespace and manifest["kind"] not in CLUSTER_SCOPED_KINDS:
            manifest["metadata"]["namespace"] = namespace
    for replicas in kustomization.get("replicas", []):
        found = [
            m
            for m in manifests
            if m["metadata"]["name"] == replicas["name"] and "replicas" in m.get("spec", {})
        ]
        if len(found) != 1:
            raise UnsupportedKustomization(f"replicas: no one object {replicas['name']}")
        found[0]["spec"]["replicas"] = replicas["count"]
    for image in kustomization.get("images", []):
        for manifest in manifests:
            for container in _containers(manifest):
                if _image_name(container["image"]) == image["name"]:
                    name = image.get("newName", image["name"])
                    tag = image.get("newTag")
                    container["image"] = f"{name}:{tag}" if tag else name
    return manifests


def strategic_merge(target: Any, patch: Any, field: str | None = None) -> Any:
    """``patch`` merged into ``target`` as a strategic merge patch: maps merge, null
    deletes, lists with a merge key merge item by item, other lists are replaced."""
    if isinstance(target, dict) and isinstance(patch, dict):
        merged = dict(target)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value, key)
            else:
                merged[key] = _without_nulls(value)
        return merged
    if isinstance(target, list) and isinstance(patch, list) and MERGE_KEYS.get(field or ""):
        # As kustomize does: items the patch adds come first, in the patch's order.
        key = MERGE_KEYS[field or ""]
        merged_list = list(target)
        added = []
        for item in patch:
            positions = [i for i, old in enumerate(merged_list) if old.get(key) == item.get(key)]
            if positions:
                merged_list[positions[0]] = strategic_merge(merged_list[positions[0]], item)
            else:
                added.append(_without_nulls(item))
        return added + merged_list
    return _without_nulls(patch)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return copy.deepcopy(value)


def _containers(manifest: Manifest) -> list[dict[str, Any]]:
    if manifest["kind"] not in POD_OWNERS:
        return []
    pod = manifest["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def _image_name(reference: str) -> str:
    last = reference.rsplit("/", 1)[-1]
    return reference[: len(reference) - len(last)] + last.split(":", 1)[0]


def _find(manifests: list[Manifest], kind: str, name: str) -> int:
    found = [
        i for i, m in enumerate(manifests) if m["kind"] == kind and m["metadata"]["name"] == name
    ]
    if len(found) != 1:
        raise UnsupportedKustomization(f"patch target {kind}/{name} found {len(found)} times")
    return found[0]


def _load_all(path: Path) -> list[Manifest]:
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def _load_one(path: Path) -> Manifest:
    documents = _load_all(path)
    if len(documents) != 1:
        raise UnsupportedKustomization(f"{path}: expected one document")
    return documents[0]
