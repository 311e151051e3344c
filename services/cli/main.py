# PYTHON_ARGCOMPLETE_OK
"""The ``cfgclone`` command line.

Commands print tables for people; with ``--json`` they print one JSON document on
standard output (protobuf messages in their JSON form) and progress, if any, on
standard error. Services are found at ``--<service>``, ``CFGCLONE_<SERVICE>_ADDRESS``,
or where a running ``cfgclone up`` put them (see :mod:`cfgclone.cli.context`).

Exit codes scripts can rely on (see :mod:`cfgclone.cli.exits`):

* 0: success; for ``clone`` and ``apply``: every change applied and kept (or, in a
  dry run, predicted and kept);
* 1: failed: a call refused (bad input, not found), a change that failed, an
  operation that failed or was cancelled;
* 2: bad usage;
* 3: a service unreachable;
* 4: rejected: a change predicted to hurt, not applied;
* 5: rolled back: a change applied, found to regress, and rolled back;
* 6: held: a change waiting for an operator to approve or abort it.

When targets end differently, the most serious outcome decides, in the order
failed, rolled back, rejected, held.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import argcomplete
import grpc

from cfgclone.cli import context, suite
from cfgclone.cli.calls import ADDRESS_FLAGS, MODES, add_json, in_cli_terms
from cfgclone.cli.change_commands import (
    cmd_abort,
    cmd_apply,
    cmd_approve,
    cmd_changes,
    cmd_rollbacks,
    parse_override,
)
from cfgclone.cli.clone_command import cmd_clone
from cfgclone.cli.exits import EXIT_CODES, EXIT_FAILED, EXIT_UNAVAILABLE
from cfgclone.cli.fleet_commands import (
    cmd_cohorts,
    cmd_fingerprint_build,
    cmd_fingerprint_show,
    cmd_similar,
    cmd_systems,
)
from cfgclone.cli.report_command import add_report_command
from cfgclone.cli.suite_commands import (
    cmd_agent,
    cmd_context,
    cmd_demo,
    cmd_migrate,
    cmd_status,
    cmd_up,
)
from cfgclone.common.embedded import EmbeddedDatabaseError
from cfgclone.common.settings import (
    DEFAULT_PORTS,
    SERVICE_NAMES,
    SettingsError,
)
from cfgclone.common.usage import OneLineParser, usage_error


def _base_port(text: str) -> int:
    """``up --base-port``: a port with room for the four after it."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    highest = 65535 - (len(SERVICE_NAMES) - 1)
    if not 1 <= port <= highest:
        raise argparse.ArgumentTypeError(
            f"must be 1-{highest}, so that the {len(SERVICE_NAMES)} services' ports fit "
            f"(got {port})"
        )
    return port


def _add_guard_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="predict only; apply nothing")
    parser.add_argument(
        "--mode", choices=sorted(MODES), default="learned", help="how to predict the impact"
    )
    parser.add_argument("--policy", default="", help="a policy id; default: default")
    parser.add_argument("--request-id", default="", help="idempotency key; a repeat is a no-op")
    add_json(parser)


def _add_clone_commands(commands: Any) -> None:
    fingerprint = commands.add_parser("fingerprint", help="fingerprints of systems")
    actions = fingerprint.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help=cmd_fingerprint_show.__doc__)
    show.add_argument("system", help="system id or systems/{id}")
    add_json(show)
    show.set_defaults(func=cmd_fingerprint_show)
    build = actions.add_parser("build", help=cmd_fingerprint_build.__doc__)
    build.add_argument("system", help="system id or systems/{id}")
    build.add_argument(
        "--load-metric",
        default="",
        help="metric whose levels are the load regimes (default: the system's offered load, "
        "else system.cpu.utilization)",
    )
    add_json(build)
    build.set_defaults(func=cmd_fingerprint_build)

    similar = commands.add_parser("similar", help=cmd_similar.__doc__)
    similar.add_argument("system", help="system id or systems/{id}")
    similar.add_argument("--limit", type=int, default=10, help="how many systems")
    similar.add_argument("--selector", default="", help="only systems whose labels match")
    add_json(similar)
    similar.set_defaults(func=cmd_similar)

    cohorts = commands.add_parser("cohorts", help=cmd_cohorts.__doc__)
    cohorts.add_argument(
        "--member", default="", metavar="SYSTEM", help="only the cohort this system is in"
    )
    add_json(cohorts)
    cohorts.set_defaults(func=cmd_cohorts)

    clone = commands.add_parser("clone", help=cmd_clone.__doc__)
    clone.add_argument("source", help="the system whose current configuration is cloned")
    clone.add_argument("targets", nargs="*", metavar="TARGET", help="target systems")
    clone.add_argument("--selector", default="", help="targets by labels, e.g. role=db")
    clone.add_argument(
        "--cohort", default="", help="targets by cohort, as cfgclone cohorts prints it"
    )
    clone.add_argument("--wave-size", type=int, default=0, help="targets per wave; 0: all")
    clone.add_argument(
        "--max-fail", type=float, default=0.0, help="share of a wave that may fail (0-1)"
    )
    clone.add_argument(
        "--threshold", type=float, default=0.0, help="clone as is at this similarity"
    )
    clone.add_argument("--force-adapt", action="store_true", help="adapt whatever the score")
    _add_guard_options(clone)
    clone.set_defaults(func=cmd_clone)

    apply = commands.add_parser("apply", help=cmd_apply.__doc__)
    apply.add_argument("system", help="system id or systems/{id}")
    apply.add_argument(
        "--set",
        dest="overrides",
        action="append",
        type=parse_override,
        required=True,
        metavar="KEY=VALUE",
        help="a parameter to change (values are JSON when they parse, else text)",
    )
    apply.add_argument(
        "--watch",
        action="store_true",
        help="follow a held change too, until an operator decides and it ends",
    )
    apply.add_argument(
        "--allow-new",
        action="store_true",
        help="set parameters that neither the kind's schema nor the configuration has",
    )
    _add_guard_options(apply)
    apply.set_defaults(func=cmd_apply)

    for name, func in (("changes", cmd_changes), ("rollbacks", cmd_rollbacks)):
        listing = commands.add_parser(name, help=func.__doc__)
        listing.add_argument("system", nargs="?", help="one system; all when omitted")
        listing.add_argument("--limit", type=int, default=50, help="newest N")
        add_json(listing)
        listing.set_defaults(func=func)

    for name, func in (("approve", cmd_approve), ("abort", cmd_abort)):
        decision = commands.add_parser(name, help=func.__doc__)
        decision.add_argument(
            "change", help="a change as cfgclone changes prints it: {system}/changes/{id}"
        )
        decision.add_argument("--reason", default="", help="recorded with the decision")
        if name == "approve":
            decision.add_argument(
                "--watch",
                action="store_true",
                help="follow the change until it ends; exit with its outcome",
            )
        add_json(decision)
        decision.set_defaults(func=func)


def _exit_codes_epilog() -> str:
    lines = [f"  {code}  {meaning}" for code, meaning in sorted(EXIT_CODES.items())]
    return "exit codes:\n" + "\n".join(lines) + "\n\n" + _SETTINGS_HELP


_SETTINGS_HELP = """settings (environment variables; flags win):
  CFGCLONE_<SERVICE>_ADDRESS    host:port of a service (else cfgclone up's context file,
                                else 127.0.0.1:50051-50055); see cfgclone context
  CFGCLONE_TOKEN                bearer token sent on every call
  CFGCLONE_TLS_CA               CA bundle that verifies the services (TLS)
  CFGCLONE_TLS_CLIENT_CERT/KEY  client certificate and key (mutual TLS)
  CFGCLONE_CALL_TIMEOUT_SECONDS deadline of each call (default 10)
  CFGCLONE_DATABASE_URL         PostgreSQL of up, demo and migrate (default: embedded)
  CFGCLONE_DATA_DIR             embedded database and logs (default: /var/lib/cfgclone
                                as root, else ~/.local/share/cfgclone)
  CFGCLONE_LOG_DIR              where up writes the services' logs (default DATA_DIR/logs)

shell completion (bash, zsh): eval "$(register-python-argcomplete cfgclone)"
"""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's layout and shows each option's default when it has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and "%(default)" not in text
            and default is not None
            and default is not False
            and default not in ("", argparse.SUPPRESS)
            and not isinstance(default, list)
        ):
            text += " (default: %(default)s)"
        return text


class _Parser(OneLineParser):
    """The CLI's parser; its sub-command parsers show defaults too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cfgclone")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cfgclone",
        description="Clone configurations between machines, guarded by predicted impact.",
        epilog=_exit_codes_epilog(),
    )
    parser.add_argument("--version", action="version", version=f"cfgclone {_version()}")
    for name in SERVICE_NAMES:
        parser.add_argument(
            f"--{name}",
            dest=f"{name}_address",
            metavar="HOST:PORT",
            help=f"the {name} (default: {context.address_variable(name)}, else where "
            f"cfgclone up runs it, else 127.0.0.1:{DEFAULT_PORTS[name]})",
        )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help=cmd_up.__doc__)
    up.add_argument("--host", default="127.0.0.1", help="interface the services bind")
    up.add_argument(
        "--base-port",
        type=_base_port,
        default=suite.default_base_port(),
        help="port of the collector; the other four follow it",
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

    where = commands.add_parser("context", help=cmd_context.__doc__)
    where.add_argument("--json", action="store_true", help="machine-readable output")
    where.set_defaults(func=cmd_context)

    status = commands.add_parser("status", help=cmd_status.__doc__)
    status.add_argument("--timeout", type=float, default=3.0)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    systems = commands.add_parser("systems", help=cmd_systems.__doc__)
    systems.add_argument("--selector", default="", help="label selector, e.g. role=db")
    systems.add_argument("--json", action="store_true", help="machine-readable output")
    systems.set_defaults(func=cmd_systems)
    _add_clone_commands(commands)
    add_report_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    ADDRESS_FLAGS.set({name: getattr(args, f"{name}_address", None) for name in SERVICE_NAMES})
    try:
        code: int = args.func(args)
    except SettingsError as error:
        return usage_error("cfgclone", str(error))
    except EmbeddedDatabaseError as error:
        print(f"cfgclone: {error}", file=sys.stderr)
        return EXIT_FAILED
    except context.ServiceUnreachable as error:
        print(f"cfgclone: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except grpc.aio.AioRpcError as error:
        details = in_cli_terms(error.details() or "")
        print(f"cfgclone: {error.code().name}: {details}", file=sys.stderr)
        return EXIT_UNAVAILABLE if error.code() == grpc.StatusCode.UNAVAILABLE else EXIT_FAILED
    return code


if __name__ == "__main__":
    raise SystemExit(main())
