"""Choosing the software version a target can run, from a catalogue in order of preference."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import NoSuitableVersion
from .hosts import HostResources, describe_memory, normalize_architecture

__all__ = ["Catalogue", "CatalogueEntry", "Rejection", "select_version"]


@dataclass(frozen=True)
class CatalogueEntry:
    """A build of a package and what a host needs to run it; empty constraints allow any."""

    package: str
    """Software name, for example `postgresql`."""
    version: str
    architectures: tuple[str, ...] = ()
    """Architectures it is built for (`x86_64`, `aarch64`; `amd64` and `arm64` also do)."""
    os_families: tuple[str, ...] = ()
    """Distributions or families it installs on: `debian` covers Debian and Ubuntu,
    `rhel` covers RHEL, Rocky and Alma, `linux` any Linux distribution."""
    min_memory_bytes: int | None = None

    def __post_init__(self) -> None:
        if not self.package.strip() or not self.version.strip():
            raise ValueError("a catalogue entry needs a package name and a version")
        if self.min_memory_bytes is not None and self.min_memory_bytes < 0:
            raise ValueError(f"{self}: the minimum memory must not be negative")

    def __str__(self) -> str:
        return f"{self.package} {self.version}"

    def reasons_against(self, target: HostResources) -> tuple[str, ...]:
        """Why `target` cannot run this entry; empty when it can."""
        reasons = [self._architecture_reason(target), self._os_reason(target)]
        reasons.append(self._memory_reason(target))
        return tuple(reason for reason in reasons if reason)

    def _architecture_reason(self, target: HostResources) -> str | None:
        if not self.architectures:
            return None
        wanted = sorted({normalize_architecture(name) for name in self.architectures})
        if not target.architecture:
            return f"needs {' or '.join(wanted)}, and the target's architecture is unknown"
        if normalize_architecture(target.architecture) in wanted:
            return None
        return f"needs {' or '.join(wanted)}, the target is {target.architecture}"

    def _os_reason(self, target: HostResources) -> str | None:
        if not self.os_families:
            return None
        wanted = sorted({family.strip().lower() for family in self.os_families})
        if not target.os:
            return f"needs {' or '.join(wanted)}, and the target's OS is unknown"
        if target.os_families & set(wanted):
            return None
        return f"needs {' or '.join(wanted)}, the target runs {target.os}"

    def _memory_reason(self, target: HostResources) -> str | None:
        if self.min_memory_bytes is None:
            return None
        needed = describe_memory(self.min_memory_bytes)
        if target.memory_bytes is None:
            return f"needs at least {needed} of memory, and the target's memory is unknown"
        if target.memory_bytes >= self.min_memory_bytes:
            return None
        has = describe_memory(target.memory_bytes)
        return f"needs at least {needed} of memory, the target has {has}"


@dataclass(frozen=True)
class Catalogue:
    """Builds that may be installed, most preferred first."""

    entries: tuple[CatalogueEntry, ...]


@dataclass(frozen=True)
class Rejection:
    """A catalogue entry the target cannot run, and why."""

    entry: CatalogueEntry
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.entry}: {'; '.join(self.reasons)}"


def select_version(
    catalogue: Catalogue, target: HostResources, *, package: str | None = None
) -> CatalogueEntry:
    """The most preferred entry (of `package`, when given) that `target` can run.

    Raises `NoSuitableVersion` listing each entry and why it does not fit.
    """
    entries = [e for e in catalogue.entries if package is None or e.package == package]
    rejections = []
    for entry in entries:
        reasons = entry.reasons_against(target)
        if not reasons:
            return entry
        rejections.append(Rejection(entry, reasons))
    subject = f"version of {package}" if package is not None else "catalogued version"
    if not rejections:
        raise NoSuitableVersion(f"the catalogue has no {subject}", ())
    listed = "; ".join(f"[{rejection}]" for rejection in rejections)
    raise NoSuitableVersion(f"no {subject} fits the target: {listed}", rejections)
