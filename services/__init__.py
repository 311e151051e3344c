"""cfgclone: configuration cloning and predictive rollback for fleets of machines.

The suite is four gRPC services (collector, fingerprint, similarity, predictor)
and an orchestrator with the ``cfgclone`` command line. Each lives in its own
subpackage; ``cfgclone.v1`` holds the generated protobuf and gRPC stubs and
``cfgclone.common`` what every service shares.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
