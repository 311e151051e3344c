"""Unexpected failures: reported as INTERNAL with an error id that is also in the log.

A caller who gets INTERNAL quotes the id; the operator finds the traceback by
it. Nothing about the failure except the method and the id leaves the service.
"""

from __future__ import annotations

import logging
import uuid

from cfgclone.common.errors import CfgcloneError

logger = logging.getLogger(__name__)

__all__ = ["internal_error"]


def internal_error(method: str) -> CfgcloneError:
    """Called from an ``except`` block: logs the traceback being handled under a new error id."""
    error_id = uuid.uuid4().hex
    logger.exception(  # noqa: LOG004
        "unexpected error in %s, error id %s", method, error_id, extra={"error_id": error_id}
    )
    return CfgcloneError(
        f"internal error in {method}, error id {error_id}; the service log has the details",
        reason="INTERNAL",
        metadata={"error_id": error_id, "method": method},
    )
