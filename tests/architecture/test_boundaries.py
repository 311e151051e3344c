"""The architecture's rules, checked on the tree: dependencies run one way, and every
service's SQL touches only its own tables and the views other services publish."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services"
OWNERS = ("common", "collector", "fingerprint", "similarity", "predictor", "orchestrator")
_CREATED = re.compile(
    r"\bCREATE\s+(?:TABLE|VIEW)\s+(?:IF\s+NOT\s+EXISTS\s+)?([a-z_][a-z0-9_]*)", re.I
)
_READ = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE)\s+([a-z_][a-z0-9_]*)\s*([(.])?", re.I)
_CTE = re.compile(r"(?:\bWITH|,)\s*([a-z_][a-z0-9_]*)\s+AS\s*\(", re.I)
_NOT_RELATIONS = {"lateral", "stdin", "stdout", "only", "set", "skip", "nowait", "of"}


def _without_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def _owned() -> dict[str, str]:
    """Relation -> the package whose migrations (or own queries) create it."""
    owner_of: dict[str, str] = {}
    for owner in OWNERS:
        files = [
            *(SERVICES / owner / "migrations").glob("*.sql"),
            *(SERVICES / owner).rglob("sql/*.sql"),
        ]
        for migration in sorted(files):
            for name in _CREATED.findall(_without_comments(migration.read_text())):
                assert owner_of.setdefault(name.lower(), owner) == owner, (
                    f"{name} is created by both {owner_of[name.lower()]} and {owner}"
                )
    return owner_of


def _relations(sql: str) -> set[str]:
    sql = _without_comments(sql)
    ctes = {name.lower() for name in _CTE.findall(sql)}
    found = set()
    for name, call in _READ.findall(sql):
        name = name.lower()
        if call or name in ctes or name in _NOT_RELATIONS:
            continue  # a function, a column (extract(epoch FROM b.ts)), a CTE, a keyword
        if name.startswith(("pg_", "information_schema")):
            continue  # the server's catalogs
        found.add(name)
    return found


def test_every_relation_has_one_owner_and_published_views_say_so() -> None:
    owned = _owned()
    assert owned["samples"] == "collector"
    assert owned["fingerprints"] == "fingerprint"
    assert owned["configurations"] == "predictor"
    assert owned["operations"] == "orchestrator"
    for name, owner in owned.items():
        if name.startswith("published_"):
            assert owner != "common", name


@pytest.mark.parametrize("owner", OWNERS)
def test_a_services_sql_touches_its_own_tables_and_published_views_only(owner: str) -> None:
    owned = _owned()
    crossings = []
    for path in sorted((SERVICES / owner).rglob("sql/*.sql")):
        for name in sorted(_relations(path.read_text())):
            home = owned.get(name)
            assert home is not None, (
                f"{path.relative_to(ROOT)} reads {name}, which no migration creates"
            )
            if home != owner and not name.startswith("published_"):
                crossings.append(f"{path.relative_to(ROOT)} reads {home}'s {name}")
    assert crossings == []


def test_the_checker_sees_a_crossing() -> None:
    """The two checks above can fail: a read of another service's table is seen."""
    sql = "-- name: x\nWITH c AS (SELECT 1)\nSELECT * FROM fingerprints f JOIN c ON true, unnest(a)"
    assert _relations(sql) == {"fingerprints"}
    assert _owned()["fingerprints"] != "similarity"


def test_dependencies_run_one_way() -> None:
    """import-linter's contract in pyproject.toml: common <- shared packages <- services <- CLI."""
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint is not None, "import-linter is a development dependency (pip install -e '.[dev]')"
    result = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
