"""``cfgclone agent``: the agent's command line.

Runs until SIGTERM or SIGINT, then spools what it holds and tries briefly to
deliver it; what is left is delivered at the next start. Exit codes: 0 after a
normal stop, 2 for a bad command line or configuration file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Sequence
from pathlib import Path

from cfgclone.collector.agent_config import AgentConfig, ConfigError, load_agent_config
from cfgclone.collector.agent_runner import run_agent
from cfgclone.common.clients import open_channel
from cfgclone.common.logs import configure_logging
from cfgclone.common.settings import PeerSettings, SettingsError, TelemetrySettings
from cfgclone.common.usage import OneLineParser, usage_error

__all__ = ["build_parser", "main"]

DEFAULT_CONFIG = Path("/etc/cfgclone/agent.toml")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="cfgclone agent",
        description="Sample this machine and stream the samples to the cfgclone collector. "
        "The configuration file format is described in docs/agent.md.",
    )
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        default=Path(os.environ.get("CFGCLONE_AGENT_CONFIG") or DEFAULT_CONFIG),
        help="TOML configuration file (CFGCLONE_AGENT_CONFIG, default %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("CFGCLONE_LOG_LEVEL") or "INFO",
        help="DEBUG, INFO, WARNING or ERROR (CFGCLONE_LOG_LEVEL)",
    )
    parser.add_argument(
        "--log-format",
        choices=("json", "text"),
        default=os.environ.get("CFGCLONE_LOG_FORMAT") or "text",
        help="CFGCLONE_LOG_FORMAT",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=_metrics_port_from_env(),
        help="serve the spool's depth on /metrics at this port, 0 for any "
        "(CFGCLONE_METRICS_PORT; unset serves none)",
    )
    parser.add_argument(
        "--metrics-host",
        default=os.environ.get("CFGCLONE_METRICS_HOST") or "127.0.0.1",
        help="interface of /metrics (CFGCLONE_METRICS_HOST, default %(default)s)",
    )
    return parser


def _metrics_port_from_env() -> int | None:
    raw = os.environ.get("CFGCLONE_METRICS_PORT")
    return int(raw) if raw and raw.isdigit() else None


async def _collector_reachable(config: AgentConfig) -> str | None:
    """None when the collector answers within the connect timeout, else why not."""
    channel = open_channel(
        config.collector,
        PeerSettings(tls=config.tls, token=None, timeout_seconds=config.call_timeout_seconds),
    )
    try:
        async with asyncio.timeout(config.connect_timeout_seconds):
            await channel.channel_ready()
    except TimeoutError:
        return (
            f"collector.address: the collector at {config.collector} did not answer within "
            f"{config.connect_timeout_seconds:g} s"
        )
    finally:
        await channel.close(grace=None)
    return None


async def _run_until_signalled(
    config: AgentConfig, metrics_port: int | None, metrics_host: str
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await run_agent(config, stop, metrics_port=metrics_port, metrics_host=metrics_host)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cfgclone agent``."""
    args = build_parser().parse_args(argv)
    try:
        TelemetrySettings(log_level=args.log_level, log_format=args.log_format)
        config = load_agent_config(args.config, os.environ)
    except (ConfigError, SettingsError) as error:
        return usage_error("cfgclone agent", str(error))
    unreachable = asyncio.run(_collector_reachable(config))
    if unreachable is not None:
        return usage_error("cfgclone agent", f"{args.config}: {unreachable}")
    configure_logging("agent", args.log_level.upper(), args.log_format)
    asyncio.run(_run_until_signalled(config, args.metrics_port, args.metrics_host))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
