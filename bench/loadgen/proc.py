"""Process-level helpers: progress messages, /proc readings, limits and the watchdog.

The server's CPU and RSS are read from ``/proc`` rather than asked of the server, so any
Pusher-compatible server can be measured the same way.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silence progress messages (``--quiet``/``--json``); worker processes inherit the choice."""
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


def log(msg: str) -> None:
    """A progress message on stderr, so stdout carries only the table and the JSON line."""
    if not _quiet:
        print(msg, file=sys.stderr, flush=True)


def proc_cpu_ticks(pids: list[int]) -> int:
    """utime + stime of the given processes (all their threads), in clock ticks."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


def proc_rss_kb(pids: list[int]) -> int:
    """Summed ``VmRSS`` of the given processes, in KB."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
    return total


def own_cpu() -> tuple[float, float]:
    """This process's (user + system, system) CPU seconds."""
    t = os.times()
    return t.user + t.system, t.system


def raise_nofile() -> int:
    """Raise the open-files soft limit to the hard limit (each socket is a file); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def start_watchdog(seconds: float, who: str) -> None:
    """End the process (exit 3) after ``seconds`` whatever it is waiting for: runs are bounded."""

    def die() -> None:
        print(f"loadgen {who}: watchdog fired after {seconds:.0f} s, exiting", file=sys.stderr, flush=True)
        os._exit(3)

    timer = threading.Timer(seconds, die)
    timer.daemon = True
    timer.start()


class Server:
    """Optional /proc view of the server process(es) given by --server-pid."""

    def __init__(self, spec: str | None) -> None:
        self.pids = [int(p) for p in spec.split(",") if p.strip()] if spec else []

    def ticks(self) -> int | None:
        return proc_cpu_ticks(self.pids) if self.pids else None

    def rss_kb(self) -> int | None:
        return proc_rss_kb(self.pids) if self.pids else None

    async def wait_idle(self, max_wait: float = 30.0, threshold_pct: float = 10.0) -> None:
        """Wait (bounded) until the server's CPU use is below ``threshold_pct`` of a core."""
        if not self.pids:
            return
        deadline = time.monotonic() + max_wait
        while time.monotonic() < deadline:
            t0, w0 = self.ticks(), time.monotonic()
            await asyncio.sleep(0.5)
            pct = (self.ticks() - t0) / CLK_TCK / (time.monotonic() - w0) * 100  # type: ignore[operator]
            if pct < threshold_pct:
                return
        log(f"server still busy after {max_wait:.0f} s; measuring anyway")
