"""Choosing the version a target can run from a catalogue in order of preference."""

from __future__ import annotations

import pytest

from cfgclone.adaptation import (
    Catalogue,
    CatalogueEntry,
    HostResources,
    NoSuitableVersion,
    select_version,
)

GiB = 1 << 30

CATALOGUE = Catalogue(
    (
        CatalogueEntry("postgresql", "17", ("amd64",), ("debian",), min_memory_bytes=4 * GiB),
        CatalogueEntry("postgresql", "16", ("x86_64", "aarch64"), ("debian", "rhel")),
        CatalogueEntry("postgresql", "15", ("aarch64",), ("alpine",)),
        CatalogueEntry("pgbouncer", "1.23"),
    )
)


def host(architecture: str, os: str, memory_gib: int | None = 8) -> HostResources:
    memory = None if memory_gib is None else memory_gib * GiB
    return HostResources(memory_bytes=memory, architecture=architecture, os=os)


def test_the_most_preferred_entry_the_target_satisfies_is_chosen() -> None:
    chosen = select_version(CATALOGUE, host("x86_64", "ubuntu 24.04"), package="postgresql")
    assert (chosen.package, chosen.version) == ("postgresql", "17")


def test_a_target_too_small_for_the_preferred_entry_gets_the_next_one() -> None:
    chosen = select_version(CATALOGUE, host("x86_64", "debian 12", 2), package="postgresql")
    assert chosen.version == "16"


def test_families_and_architecture_aliases_match() -> None:
    rocky_arm = host("arm64", "rocky 9.3")
    assert select_version(CATALOGUE, rocky_arm, package="postgresql").version == "16"
    alpine_arm = host("aarch64", "alpine 3.20")
    assert select_version(CATALOGUE, alpine_arm, package="postgresql").version == "15"


def test_an_entry_without_constraints_fits_any_target() -> None:
    assert select_version(CATALOGUE, HostResources(), package="pgbouncer").version == "1.23"


def test_when_nothing_fits_the_error_gives_each_entry_s_reason() -> None:
    with pytest.raises(NoSuitableVersion) as raised:
        select_version(CATALOGUE, host("riscv64", "debian 12", 2), package="postgresql")
    assert [str(rejection) for rejection in raised.value.rejections] == [
        "postgresql 17: needs x86_64, the target is riscv64; "
        "needs at least 4 GiB of memory, the target has 2 GiB",
        "postgresql 16: needs aarch64 or x86_64, the target is riscv64",
        "postgresql 15: needs aarch64, the target is riscv64; "
        "needs alpine, the target runs debian 12",
    ]
    assert str(raised.value).startswith("no version of postgresql fits the target: ")


def test_unknown_target_facts_do_not_pass_a_constraint() -> None:
    with pytest.raises(NoSuitableVersion) as raised:
        select_version(CATALOGUE, HostResources(), package="postgresql")
    reasons = raised.value.rejections[0].reasons
    assert reasons == (
        "needs x86_64, and the target's architecture is unknown",
        "needs debian, and the target's OS is unknown",
        "needs at least 4 GiB of memory, and the target's memory is unknown",
    )


def test_a_package_the_catalogue_lacks_is_said_to_be_missing() -> None:
    with pytest.raises(NoSuitableVersion, match="the catalogue has no version of mysql"):
        select_version(CATALOGUE, host("x86_64", "debian 12"), package="mysql")
