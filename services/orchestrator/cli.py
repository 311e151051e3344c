"""The ``cfgclone`` command line.

Exit codes scripts can rely on: 0 success, 1 a failed call or check, 2 bad
usage, 3 a service unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import json_format

from cfgclone.common.clients import open_channel
from cfgclone.common.settings import SERVICE_NAMES, database_from_env, peers_from_env
from cfgclone.orchestrator import suite
from cfgclone.v1 import collector_service_pb2, collector_service_pb2_grpc

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [list(map(str, headers)), *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def cmd_up(args: argparse.Namespace) -> int:
    """Start the suite and keep it running until Ctrl-C."""
    database = database_from_env(os.environ)
    with suite.termination_as_interrupt():
        try:
            with suite.running_suite(database, args.base_port, args.host, args.timeout) as up:
                print(f"database: {up.database}")
                _print_table(
                    ("service", "address", "pid", "health"),
                    [(s.name, s.address, s.process.pid, "SERVING") for s in up.services],
                )
                print(f"logs: {up.log_dir}")
                print("cfgclone is up; press Ctrl-C to stop", flush=True)
                while all(s.process.poll() is None for s in up.services):
                    time.sleep(0.5)
                print("a service exited; stopping the suite", file=sys.stderr)
                return EXIT_FAILED
        except suite.SuiteStartError as error:
            print(f"cfgclone: {error}", file=sys.stderr)
            return EXIT_FAILED
        except KeyboardInterrupt:
            print("stopped", flush=True)
            return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the suite on free ports, walk through what it does, and stop it."""
    from cfgclone.orchestrator import demo

    database = database_from_env(os.environ)
    try:
        with suite.running_suite(database, suite.free_base_port(), "127.0.0.1", 60.0) as up:
            print(f"cfgclone demo: five services up on {up.database}\n")
            return asyncio.run(demo.run(up))
    except suite.SuiteStartError as error:
        print(f"cfgclone: {error}", file=sys.stderr)
        return EXIT_FAILED


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply schema migrations and exit (run once before rolling out new versions)."""
    url, _ = suite.resolve_database(database_from_env(os.environ))
    applied = asyncio.run(suite.migrate(url))
    print(f"applied migrations: {applied}" if applied else "schema is up to date")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """Health of every service at its configured address."""
    peers = peers_from_env(os.environ)

    async def check() -> list[bool]:
        return list(
            await asyncio.gather(
                *(suite.wait_serving(peers.address(n), args.timeout) for n in SERVICE_NAMES)
            )
        )

    states = asyncio.run(check())
    if args.json:
        print(json.dumps({n: ok for n, ok in zip(SERVICE_NAMES, states, strict=True)}))
    else:
        _print_table(
            ("service", "address", "health"),
            [
                (n, peers.address(n), "SERVING" if ok else "UNREACHABLE")
                for n, ok in zip(SERVICE_NAMES, states, strict=True)
            ],
        )
    return EXIT_OK if all(states) else EXIT_UNAVAILABLE


def cmd_systems(args: argparse.Namespace) -> int:
    """List registered systems."""
    peers = peers_from_env(os.environ)

    async def fetch() -> list[Any]:
        async with open_channel(peers.address("collector"), peers) as channel:
            stub = collector_service_pb2_grpc.CollectorServiceStub(channel)
            systems: list[Any] = []
            token = ""
            while True:
                reply = await stub.ListSystems(
                    collector_service_pb2.ListSystemsRequest(
                        page_size=500, page_token=token, label_selector=args.selector
                    ),
                    timeout=peers.timeout_seconds,
                )
                systems.extend(reply.systems)
                token = reply.next_page_token
                if not token:
                    return systems

    systems = asyncio.run(fetch())
    if args.json:
        print(json.dumps([json_format.MessageToDict(s) for s in systems]))
        return EXIT_OK
    _print_table(
        ("system", "cores", "memory GiB", "arch", "os", "labels"),
        [
            (
                s.name.removeprefix("systems/"),
                s.cpu_cores,
                f"{s.memory_bytes / 2**30:.1f}",
                s.architecture,
                s.os,
                ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())),
            )
            for s in systems
        ],
    )
    return EXIT_OK


def cmd_agent(args: argparse.Namespace) -> int:
    """Run the agent on this machine (see cfgclone agent --help)."""
    from cfgclone.collector import agent_main

    return agent_main.main(args.agent_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cfgclone",
        description="Clone configurations between machines, guarded by predicted impact.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help=cmd_up.__doc__)
    up.add_argument("--host", default="127.0.0.1", help="interface the services bind")
    up.add_argument(
        "--base-port",
        type=int,
        default=suite.default_base_port(),
        help="port of the collector; the others follow (default 50051-50055)",
    )
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for SERVING")
    up.set_defaults(func=cmd_up)

    agent = commands.add_parser("agent", help=cmd_agent.__doc__, add_help=False, prefix_chars="\0")
    agent.add_argument("agent_args", nargs=argparse.REMAINDER)
    agent.set_defaults(func=cmd_agent)

    demo = commands.add_parser("demo", help=cmd_demo.__doc__)
    demo.set_defaults(func=cmd_demo)

    migrate = commands.add_parser("migrate", help=cmd_migrate.__doc__)
    migrate.set_defaults(func=cmd_migrate)

    status = commands.add_parser("status", help=cmd_status.__doc__)
    status.add_argument("--timeout", type=float, default=3.0)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    systems = commands.add_parser("systems", help=cmd_systems.__doc__)
    systems.add_argument("--selector", default="", help="label selector, e.g. role=db")
    systems.add_argument("--json", action="store_true", help="machine-readable output")
    systems.set_defaults(func=cmd_systems)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except grpc.aio.AioRpcError as error:
        print(f"cfgclone: {error.code().name}: {error.details()}", file=sys.stderr)
        return EXIT_UNAVAILABLE if error.code() == grpc.StatusCode.UNAVAILABLE else EXIT_FAILED
    return code


if __name__ == "__main__":
    raise SystemExit(main())
