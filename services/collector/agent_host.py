"""The metadata an agent registers for its machine: hardware, OS and kernel, labels.

Read from the places Linux keeps them (``/proc/cpuinfo``, ``/sys/block``,
``/etc/os-release``) with portable fallbacks, so a fingerprint can later tell a
4-core VM from a 64-core host.
"""

from __future__ import annotations

import platform
import socket
from collections.abc import Mapping
from pathlib import Path

import psutil

from cfgclone.v1 import common_pb2

__all__ = ["describe_host"]

_VIRTUAL_DISKS = ("loop", "ram", "zram", "dm-", "md", "sr", "fd")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model"):
                return value.strip()
    except OSError:
        pass
    return platform.processor()


def _disks() -> list[common_pb2.Disk]:
    disks = []
    try:
        devices = sorted(Path("/sys/block").iterdir())
    except OSError:
        return []
    for device in devices:
        if device.name.startswith(_VIRTUAL_DISKS):
            continue
        try:
            sectors = int((device / "size").read_text().strip())
            rotational = (device / "queue" / "rotational").read_text().strip() == "1"
        except (OSError, ValueError):
            continue
        if sectors > 0:
            disks.append(
                common_pb2.Disk(device=device.name, size_bytes=sectors * 512, rotational=rotational)
            )
    return disks


def _os_name() -> str:
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        return f"{platform.system().lower()} {platform.version()}".strip()
    return " ".join(filter(None, (release.get("ID"), release.get("VERSION_ID"))))


def describe_host(system: str, labels: Mapping[str, str]) -> common_pb2.System:
    """This machine as the system ``system`` (``systems/db-01``)."""
    return common_pb2.System(
        name=system,
        hostname=socket.gethostname(),
        cpu_model=_cpu_model(),
        cpu_cores=psutil.cpu_count() or 0,
        memory_bytes=psutil.virtual_memory().total,
        disks=_disks(),
        os=_os_name(),
        kernel=platform.release(),
        architecture=platform.machine(),
        labels=dict(labels),
    )
