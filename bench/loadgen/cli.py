"""Command line: options, limits, the watchdog, and the scenario run; ``main`` returns the exit status.

0 when the run completed (whatever the figures), 1 when no socket could connect, 2 for a bad
``--server-pid`` (or bad options), 3 when the watchdog ends a run that overran its bound.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from . import __doc__ as package_doc
from .connections import target_config
from .proc import Server, log, raise_nofile, set_quiet, start_watchdog
from .scenarios import scenario_churn, scenario_connections, scenario_fanout
from .workers import make_fleets


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("target")
    g.add_argument("--ws-url", default="ws://127.0.0.1:6001", help="server base URL (ws:// or wss://)")
    g.add_argument(
        "--protocol", type=int, default=7, help="7 = Pusher protocol (V1), 2 = Sockudo Protocol V2"
    )
    g.add_argument("--http-url", default="http://127.0.0.1:6001", help="HTTP API base URL")
    g.add_argument("--app-id", default="1001")
    g.add_argument("--key", default="app-key")
    g.add_argument("--secret", default="app-secret")
    g.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    g.add_argument("--server-pid", help="server PID(s), comma-separated: CPU and RSS from /proc")
    g = common.add_argument_group("run")
    g.add_argument("--processes", type=int, default=1, help="worker processes holding the sockets")
    g.add_argument("--channel-type", choices=["public", "private", "presence"], default="public")
    g.add_argument("--connect-timeout", type=float, default=10.0, help="per socket (s)")
    g.add_argument("--max-seconds", type=float, default=120.0, help="bound of the connect phase (s)")
    g.add_argument("--drain", type=float, default=10.0, help="max wait for outstanding deliveries (s)")
    g.add_argument(
        "--drain-idle", type=float, default=3.0, help="stop draining after this long without a delivery (s)"
    )
    g.add_argument("--http-timeout", type=float, default=10.0, help="per publish request (s)")
    g.add_argument("--payload-bytes", type=int, default=0, help="padding added to each event's data")
    g.add_argument("--json", action="store_true", help="print only the JSON result line")
    g.add_argument("--quiet", action="store_true", help="no progress messages on stderr")
    g.add_argument("--label", help="added to the JSON line (e.g. the server's name)")

    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=package_doc.split("\n\n")[0])
    sub = p.add_subparsers(dest="scenario", required=True)
    f = sub.add_parser("fanout", parents=[common], help="one channel, many subscribers, HTTP publisher")
    f.add_argument("--subscribers", type=int, default=1000)
    f.add_argument("--rate", type=float, default=0, help="events/s; 0 = as fast as the server accepts")
    f.add_argument("--duration", type=float, default=10.0, help="publishing time (s)")
    f.add_argument("--concurrency", type=int, default=16, help="HTTP requests in flight")
    f.add_argument("--max-events", type=int, default=None, help="stop publishing after this many events")
    f.add_argument("--connect-concurrency", type=int, default=100)
    c = sub.add_parser("connections", parents=[common], help="open many sockets, check liveness, close")
    c.add_argument("--connections", type=int, default=10000)
    c.add_argument("--channels", type=int, default=100)
    c.add_argument("--concurrency", type=int, default=100, help="connects in flight")
    ch = sub.add_parser("churn", parents=[common], help="subscribe/unsubscribe loop")
    ch.add_argument("--sockets", type=int, default=100)
    ch.add_argument("--channels", type=int, default=1)
    ch.add_argument("--duration", type=float, default=10.0)
    ch.add_argument("--sub-timeout", type=float, default=5.0, help="max wait for subscription_succeeded (s)")
    ch.add_argument("--connect-concurrency", type=int, default=100)
    args = p.parse_args(argv)
    if args.scenario == "fanout" and args.max_events is None and args.duration <= 0:
        p.error("--duration must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_quiet(args.quiet or args.json)
    nofile = raise_nofile()
    need = {"fanout": "subscribers", "connections": "connections", "churn": "sockets"}[args.scenario]
    if getattr(args, need) + 100 > nofile * max(1, args.processes):
        log(f"warning: open-files limit {nofile} may be too low for {getattr(args, need)} sockets")
    watchdog = args.max_seconds + args.connect_timeout + getattr(args, "duration", 0) + args.drain + 60
    server = Server(args.server_pid)
    try:
        server.ticks()
    except (OSError, IndexError, ValueError) as exc:
        print(f"cannot read /proc for --server-pid {args.server_pid}: {exc}", file=sys.stderr)
        return 2
    cfg = target_config(args)
    fleets = make_fleets(args, cfg, watchdog)  # forked before any event loop or thread exists
    start_watchdog(watchdog, "main")
    scenario = {"fanout": scenario_fanout, "connections": scenario_connections, "churn": scenario_churn}
    try:
        return asyncio.run(scenario[args.scenario](args, fleets, server))
    finally:
        for f in fleets:
            f.stop()
