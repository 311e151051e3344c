"""The hardware and OS facts of a host that adaptation works from."""

from __future__ import annotations

from dataclasses import dataclass

from .spec import Scaling

__all__ = [
    "HostResources",
    "describe_memory",
    "normalize_architecture",
    "os_families",
    "typical_disk_throughput",
]

_ARCHITECTURE_ALIASES = {
    "amd64": "x86_64",
    "x64": "x86_64",
    "x86-64": "x86_64",
    "arm64": "aarch64",
    "armv8": "aarch64",
    "i386": "i686",
    "x86": "i686",
}

_DISTRIBUTION_FAMILIES = {
    "debian": ("debian",),
    "ubuntu": ("debian",),
    "linuxmint": ("ubuntu", "debian"),
    "raspbian": ("debian",),
    "rhel": ("rhel",),
    "centos": ("rhel",),
    "rocky": ("rhel",),
    "almalinux": ("rhel",),
    "ol": ("rhel",),
    "amzn": ("rhel",),
    "fedora": ("fedora",),
    "sles": ("suse",),
    "opensuse-leap": ("suse",),
    "opensuse-tumbleweed": ("suse",),
    "alpine": ("alpine",),
    "arch": ("arch",),
}
"""Distribution ids (`ID` of /etc/os-release) and the families whose packages they run."""

_MIB = 1 << 20
_ROTATIONAL_THROUGHPUT = 150 * _MIB
_NVME_THROUGHPUT = 2000 * _MIB
_SSD_THROUGHPUT = 500 * _MIB


def normalize_architecture(name: str) -> str:
    """The `uname -m` spelling of an architecture: `amd64` -> `x86_64`, `arm64` -> `aarch64`."""
    lowered = name.strip().lower()
    return _ARCHITECTURE_ALIASES.get(lowered, lowered)


def os_families(os: str) -> frozenset[str]:
    """The names an OS answers to: its id, its families, and `linux` for a Linux distribution.

    `os` is written as the agent reports it, id and version: `ubuntu 24.04` answers to
    `ubuntu`, `debian` and `linux`. Empty when the OS is unknown.
    """
    words = os.strip().lower().split()
    if not words:
        return frozenset()
    distribution = words[0]
    families = {distribution, *_DISTRIBUTION_FAMILIES.get(distribution, ())}
    if distribution in _DISTRIBUTION_FAMILIES:
        families.add("linux")
    return frozenset(families)


def typical_disk_throughput(device: str, *, rotational: bool) -> int:
    """A typical sequential throughput, bytes per second, for a kind of disk.

    A system reports its disks but not their speed; the kind of device is a fair
    guide to it (a spinning disk ~150 MB/s, a SATA SSD ~500 MB/s, NVMe ~2000 MB/s).
    """
    if rotational:
        return _ROTATIONAL_THROUGHPUT
    return _NVME_THROUGHPUT if device.startswith("nvme") else _SSD_THROUGHPUT


def _trimmed(number: float) -> str:
    return f"{number:.2f}".rstrip("0").rstrip(".")


def describe_memory(amount: float) -> str:
    """Memory in binary units, as people say it: `16 GiB`, `512 MiB`."""
    if amount >= 1 << 30:
        return f"{_trimmed(amount / (1 << 30))} GiB"
    return f"{_trimmed(amount / _MIB)} MiB"


@dataclass(frozen=True)
class HostResources:
    """What is known of a host's hardware and OS; None and empty mean unknown."""

    memory_bytes: int | None = None
    cores: int | None = None
    """Logical CPU cores."""
    disk_throughput: float | None = None
    """Sequential throughput of the data disk, bytes per second."""
    disk_throughput_estimated: bool = False
    """Whether `disk_throughput` is a typical figure for the kind of disk, not a measurement."""
    architecture: str = ""
    """As `uname -m` prints it, for example `x86_64`."""
    os: str = ""
    """Distribution id and version, for example `debian 12`."""

    def amount(self, scaling: Scaling) -> float | None:
        """How much of the resource `scaling` refers to the host has; None when unknown."""
        match scaling:
            case Scaling.MEMORY:
                amount: float | None = self.memory_bytes
            case Scaling.CORES:
                amount = self.cores
            case Scaling.DISK_THROUGHPUT:
                amount = self.disk_throughput
            case Scaling.NONE:
                amount = None
        return amount if amount is not None and amount > 0 else None

    def describe(self, scaling: Scaling) -> str:
        """The host's amount of a resource as people say it: `16 GiB`, `4`, `150 MB/s`."""
        amount = self.amount(scaling)
        if amount is None:
            return "unknown"
        match scaling:
            case Scaling.MEMORY:
                return describe_memory(amount)
            case Scaling.DISK_THROUGHPUT:
                estimated = " (estimated)" if self.disk_throughput_estimated else ""
                return f"{_trimmed(amount / _MIB)} MB/s{estimated}"
        return _trimmed(amount)

    @property
    def os_families(self) -> frozenset[str]:
        """See `os_families`."""
        return os_families(self.os)

    def to_json(self) -> dict[str, object]:
        """The facts as a JSON object, for adaptation scripts; unknown facts are null."""
        return {
            "memory_bytes": self.memory_bytes,
            "cores": self.cores,
            "disk_throughput_bytes_per_second": self.disk_throughput,
            "disk_throughput_estimated": self.disk_throughput_estimated,
            "architecture": self.architecture or None,
            "os": self.os or None,
        }
