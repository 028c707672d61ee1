"""Spreading the sockets over processes: a fleet in the main process or in forked workers.

One process receives around 100k frames per second; ``--processes N`` forks N workers that each
run a ``Fleet`` and answer commands over a pipe, while the publisher stays in the main process.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import time
from typing import Any

from .fleet import Fleet
from .proc import is_quiet, raise_nofile, set_quiet, start_watchdog


async def pipe_recv(conn: Any, timeout: float | None) -> Any:
    """Receive from a multiprocessing Connection without blocking the event loop."""
    if not conn.poll():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        fd = conn.fileno()
        loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            loop.remove_reader(fd)
    return conn.recv()


def worker_main(conn: Any, cfg: dict, watchdog: float, quiet: bool) -> None:
    """A worker process: run fleet commands from the pipe until ``close`` or the pipe's end."""
    set_quiet(quiet)
    raise_nofile()
    start_watchdog(watchdog + 10, f"worker {os.getpid()}")

    async def serve() -> None:
        fleet = Fleet(cfg)
        while True:
            try:
                cmd, kwargs = await pipe_recv(conn, None)
            except (EOFError, OSError):
                await fleet.close(2.0)
                return
            try:
                result = await getattr(fleet, cmd)(**kwargs)
                conn.send(("ok", result))
            except Exception as exc:  # reported to the main process
                conn.send(("err", f"{type(exc).__name__}: {exc}"))
            if cmd == "close":
                return

    asyncio.run(serve())


class LocalFleet:
    """The fleet in the main process (``--processes 1``), created inside the running loop."""

    def __init__(self, cfg: dict) -> None:
        self.fleet: Fleet | None = None
        self.cfg = cfg

    async def call(self, cmd: str, timeout: float = 600, **kwargs: Any) -> Any:
        if self.fleet is None:
            self.fleet = Fleet(self.cfg)
        return await asyncio.wait_for(getattr(self.fleet, cmd)(**kwargs), timeout)

    def stop(self) -> None:
        pass


class RemoteFleet:
    """A fleet in a forked worker process, driven through a pipe."""

    def __init__(self, ctx: Any, cfg: dict, watchdog: float) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, args=(child, cfg, watchdog, is_quiet()), daemon=True)
        self.proc.start()
        child.close()

    async def call(self, cmd: str, timeout: float = 600, **kwargs: Any) -> Any:
        self.conn.send((cmd, kwargs))
        status, result = await pipe_recv(self.conn, timeout)
        if status != "ok":
            raise RuntimeError(f"worker {self.proc.pid}: {cmd} failed: {result}")
        return result

    def stop(self) -> None:
        self.conn.close()  # a worker still waiting for a command sees EOF, closes its sockets, exits
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(2)


def make_fleets(args: argparse.Namespace, cfg: dict, watchdog: float) -> list:
    """One local fleet, or ``--processes`` forked workers (fork: nothing to re-import or pickle)."""
    if args.processes <= 1:
        return [LocalFleet(cfg)]
    ctx = multiprocessing.get_context("fork")
    return [RemoteFleet(ctx, cfg, watchdog) for _ in range(args.processes)]


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def open_all(
    args: argparse.Namespace, fleets: list, total: int, channels: list[str], channel_of: str, concurrency: int
) -> tuple[list[dict], float]:
    """Open ``total`` sockets spread evenly over the fleets; their reports and the wall time."""
    shares = split(total, len(fleets))
    starts = [sum(shares[:i]) for i in range(len(shares))]
    per_conc = max(1, math.ceil(concurrency / len(fleets)))
    t0 = time.monotonic()
    res = await asyncio.gather(
        *(
            f.call(
                "open",
                timeout=args.max_seconds + args.connect_timeout + 30,
                start=st,
                count=n,
                channels=channels,
                channel_of=channel_of,
                concurrency=per_conc,
                max_seconds=args.max_seconds,
                channel_type=args.channel_type,
            )
            for f, st, n in zip(fleets, starts, shares, strict=True)
        )
    )
    return res, time.monotonic() - t0
