"""``cfgclone report``: one self-contained HTML page about a change, or about the fleet.

``cfgclone report systems/db-02/changes/3`` writes ``db-02-change-3.html`` (or the file
given with ``--output``): the diff, the prediction per KPI against the policy's threshold,
the live verification, the judge's statistics, the decision, and the fingerprint's
load-response curves before and after. The page needs no network to open. The predictor
serves the same page at ``/reports/<name>`` on its metrics port.

``cfgclone report fleet`` writes ``fleet.html``: the fingerprints on a 2-D map coloured by
cohort, each system's nearest look-alikes, and the history of changes.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from pathlib import Path
from typing import Any

from cfgclone.cli import context
from cfgclone.common.clients import open_channel
from cfgclone.common.settings import PeerSettings
from cfgclone.v1 import collector_service_pb2_grpc as collector_grpc
from cfgclone.v1 import fingerprint_service_pb2_grpc as fingerprint_grpc
from cfgclone.v1 import predictor_service_pb2_grpc as predictor_grpc
from cfgclone.v1 import similarity_service_pb2_grpc as similarity_grpc

CHANGE_NAME = re.compile(r"^systems/([^/]+)/changes/([^/]+)$")
FLEET = "fleet"


async def change_report(name: str, peers: PeerSettings) -> str:
    """The HTML page of change ``name``, read from the services at ``peers``."""
    # Imported here: plotly (and numpy) stay out of the CLI's start, and of the agent.
    from cfgclone.predictor.report.gather import Sources, gather
    from cfgclone.predictor.report.render import render

    async with (
        open_channel(peers.address("predictor"), peers) as predictor,
        open_channel(peers.address("collector"), peers) as collector,
        open_channel(peers.address("fingerprint"), peers) as fingerprint,
    ):
        sources = Sources(
            predictor_grpc.PredictorServiceStub(predictor),
            collector_grpc.CollectorServiceStub(collector),
            fingerprint_grpc.FingerprintServiceStub(fingerprint),
            timeout=peers.timeout_seconds,
        )
        return render(await gather(sources, name))


async def fleet_report(peers: PeerSettings) -> str:
    """The HTML page of the fleet, read from the services at ``peers``."""
    from cfgclone.predictor.report.fleet import FleetSources, gather_fleet
    from cfgclone.predictor.report.fleet_render import render_fleet

    async with (
        open_channel(peers.address("collector"), peers) as collector,
        open_channel(peers.address("fingerprint"), peers) as fingerprint,
        open_channel(peers.address("similarity"), peers) as similarity,
        open_channel(peers.address("predictor"), peers) as predictor,
    ):
        sources = FleetSources(
            collector_grpc.CollectorServiceStub(collector),
            fingerprint_grpc.FingerprintServiceStub(fingerprint),
            similarity_grpc.SimilarityServiceStub(similarity),
            predictor_grpc.PredictorServiceStub(predictor),
            timeout=peers.timeout_seconds,
        )
        return render_fleet(await gather_fleet(sources))


def default_output(name: str) -> Path:
    """``systems/db-02/changes/3`` -> ``db-02-change-3.html``; ``fleet`` -> ``fleet.html``."""
    if name == FLEET:
        return Path("fleet.html")
    found = CHANGE_NAME.match(name)
    assert found is not None
    return Path(f"{found.group(1)}-change-{found.group(2)}.html")


def cmd_report(args: argparse.Namespace) -> int:
    """write an HTML report of a change (systems/X/changes/N) or of the fleet"""
    # Where the services are, as every command finds them: flags, variables, the
    # context file of `cfgclone up`, the default ports.
    peers = context.resolve({}).peers
    if args.subject == FLEET:
        page = asyncio.run(fleet_report(peers))
    elif CHANGE_NAME.match(args.subject) is not None:
        page = asyncio.run(change_report(args.subject, peers))
    else:
        print(
            f"cfgclone report: expected systems/<id>/changes/<n> or fleet, got {args.subject!r}",
            file=sys.stderr,
        )
        return 2
    output: Path = args.output or default_output(args.subject)
    output.write_text(page, encoding="utf-8")
    print(output)
    return 0


def add_report_command(commands: Any) -> None:
    """Register ``report`` on the CLI's subcommands."""
    report = commands.add_parser("report", help=cmd_report.__doc__)
    report.add_argument("subject", help="a change, systems/<id>/changes/<n>, or fleet")
    report.add_argument(
        "--output",
        "-o",
        type=Path,
        help="file to write (default <id>-change-<n>.html or fleet.html)",
    )
    report.set_defaults(func=cmd_report)
