"""Names every deploy file and deployment doc shares with the code: settings variables and
paths of the repository."""

from __future__ import annotations

import re
from pathlib import Path

from tests.deploy.support import DEPLOY, DOCS, REPO, settings_variables, variables_in

DEPLOYMENT_DOCS = (DOCS / "deploy.md", DOCS / "agent.md")
GENERATED = ("deploy/certs",)
"""Paths the docs name that a script creates (deploy/make-dev-certs.sh)."""


def deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file() and "certs" not in p.parts)


def test_settings_variables_are_read_from_the_settings_module() -> None:
    known = settings_variables()
    # The docstring's brace form expands to one variable per service.
    assert {"CFGCLONE_DATABASE_URL", "CFGCLONE_PREDICTOR_ADDRESS", "CFGCLONE_TLS_CA"} <= known
    assert not any("{" in name for name in known)


def test_every_cfgclone_variable_in_deploy_files_and_docs_is_a_setting() -> None:
    known = settings_variables()
    for path in (*deploy_files(), *DEPLOYMENT_DOCS):
        unknown = variables_in(path.read_text(encoding="utf-8")) - known
        assert not unknown, f"{path.relative_to(REPO)}: {sorted(unknown)}"


def test_the_scan_finds_a_variable_the_settings_do_not_know() -> None:
    assert variables_in(
        "CFGCLONE_DATABASE_URI=x, CFGCLONE_TLS_* and CFGCLONE_<SERVICE>_ADDRESS"
    ) == {"CFGCLONE_DATABASE_URI"}


def test_repository_paths_in_the_docs_exist() -> None:
    for doc in DEPLOYMENT_DOCS:
        text = doc.read_text(encoding="utf-8")
        for path in set(re.findall(r"(?<![\w/.])((?:deploy|docs|scripts)/[\w./-]*[\w])", text)):
            if path.startswith(GENERATED):
                continue
            assert (REPO / path).exists(), f"{doc.name} names {path}, which does not exist"
