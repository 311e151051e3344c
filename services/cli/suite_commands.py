"""Commands that run the suite on this machine.

``up``, ``demo``, ``migrate``, ``context``, ``status`` and ``agent``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator

from cfgclone.cli import context, suite
from cfgclone.cli.calls import print_table, resolved_addresses
from cfgclone.cli.exits import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE
from cfgclone.common.settings import (
    SERVICE_NAMES,
    database_from_env,
)


def cmd_up(args: argparse.Namespace) -> int:
    """Start the suite and keep it running until Ctrl-C."""
    database = database_from_env(os.environ)
    with suite.termination_as_interrupt():
        try:
            with (
                suite.running_suite(database, args.base_port, args.host, args.timeout) as up,
                _context_written(up),
            ):
                print(f"database: {up.database}")
                print_table(
                    ("service", "address", "pid", "health"),
                    [(s.name, s.address, s.process.pid, "SERVING") for s in up.services],
                )
                print(f"logs: {up.log_dir}")
                print(f"context: {context.context_path()} (other cfgclone commands read it)")
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


@contextlib.contextmanager
def _context_written(up: suite.RunningSuite) -> Iterator[None]:
    """The context file names the suite's services while it runs."""
    addresses = {s.name: s.address for s in up.services}
    context.write_context(context.Context(addresses, os.getpid(), up.database))
    try:
        yield
    finally:
        context.remove_context(os.getpid())


def cmd_context(args: argparse.Namespace) -> int:
    """Where the commands find the services, and which setting says so."""
    resolved = resolved_addresses()
    path = context.context_path()
    found = context.read_context(path)
    if args.json:
        print(
            json.dumps(
                {
                    "file": str(path),
                    "exists": found is not None,
                    "services": {
                        n: {"address": resolved.peers.address(n), "from": resolved.sources[n]}
                        for n in SERVICE_NAMES
                    },
                }
            )
        )
        return EXIT_OK
    print(f"context file: {path}" + ("" if found else " (none: no cfgclone up running)"))
    if found is not None:
        print(f"written by cfgclone up, pid {found.pid}; database: {found.database}")
    print_table(
        ("service", "address", "from"),
        [(n, resolved.peers.address(n), resolved.sources[n]) for n in SERVICE_NAMES],
    )
    return EXIT_OK


DEMO_START_ATTEMPTS = 3
"""The demo picks other free ports when one it picked was taken before its services bound."""


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the suite on free ports, walk through what it does, and stop it."""
    from cfgclone.cli import demo

    chosen = database_from_env(os.environ)
    database = suite.demo_database(chosen)
    for attempt in range(DEMO_START_ATTEMPTS):
        try:
            with suite.running_suite(database, suite.free_base_port(), "127.0.0.1", 60.0) as up:
                where = up.database
                if not chosen.url:
                    where = (
                        f"the embedded PostgreSQL in {chosen.data_dir}, in a database of "
                        f"its own made afresh ({suite.DEMO_DATABASE})"
                    )
                print(f"cfgclone demo: five services up on {where}\n")
                return asyncio.run(demo.run(up))
        except suite.SuiteStartError as error:
            if error.port_taken and attempt + 1 < DEMO_START_ATTEMPTS:
                continue  # another program took a port between the choice and the bind
            print(f"cfgclone: {error}", file=sys.stderr)
            return EXIT_FAILED
    return EXIT_FAILED


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply schema migrations and exit (run once before rolling out new versions)."""
    url, _ = suite.resolve_database(database_from_env(os.environ))
    applied = asyncio.run(suite.migrate(url))
    print(f"applied migrations: {applied}" if applied else "schema is up to date")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """Health of every service at its configured address."""
    resolved = resolved_addresses()
    peers = resolved.peers

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
        print_table(
            ("service", "address", "health", "from"),
            [
                (n, peers.address(n), "SERVING" if ok else "UNREACHABLE", resolved.sources[n])
                for n, ok in zip(SERVICE_NAMES, states, strict=True)
            ],
        )
    return EXIT_OK if all(states) else EXIT_UNAVAILABLE


def cmd_agent(args: argparse.Namespace) -> int:
    """Run the agent on this machine (see cfgclone agent --help)."""
    from cfgclone.collector import agent_main

    return agent_main.main(args.agent_args)
