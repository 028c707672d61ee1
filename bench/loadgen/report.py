"""Figures and their output: latency histogram, CPU figures, delivery accounting, table + JSON line.

Every process records into the same log-bucketed histogram and ships it as plain data, so the
main process can merge percentiles across worker processes without keeping every sample.
"""

from __future__ import annotations

import argparse
import json
import math
from array import array
from collections.abc import Callable
from typing import Any

from .proc import CLK_TCK, Server, own_cpu

# Latency histogram: bucket 0 holds < 1 µs, bucket b >= 1 holds [2**((b-1)/R), 2**(b/R)) µs.
HIST_RES = 64  # buckets per doubling, ~1.1 % wide
HIST_SIZE = HIST_RES * 40
_log2 = math.log2


class Hist:
    """Log-bucketed histogram of durations (recorded in ns, reported in ms)."""

    __slots__ = ("buckets", "n", "max_ns")

    def __init__(self) -> None:
        self.buckets = [0] * HIST_SIZE
        self.n = 0
        self.max_ns = 0

    def add(self, ns: int) -> None:
        us = ns / 1000
        b = 0 if us < 1 else int(_log2(us) * HIST_RES) + 1
        self.buckets[b if b < HIST_SIZE else HIST_SIZE - 1] += 1
        self.n += 1
        if ns > self.max_ns:
            self.max_ns = ns

    def wire(self) -> dict:
        """Plain data (non-empty buckets only) to send from a worker process."""
        return {"b": {i: c for i, c in enumerate(self.buckets) if c}, "n": self.n, "max": self.max_ns}

    def merge(self, wire: dict) -> None:
        for i, c in wire["b"].items():
            self.buckets[int(i)] += c
        self.n += wire["n"]
        self.max_ns = max(self.max_ns, wire["max"])

    def pct_ms(self, p: float) -> float | None:
        if not self.n:
            return None
        rank = max(1, math.ceil(self.n * p / 100))
        seen = 0
        for b, c in enumerate(self.buckets):
            seen += c
            if seen >= rank:
                us = 0.5 if b == 0 else 2 ** ((b - 0.5) / HIST_RES)
                return round(min(us * 1000, self.max_ns) / 1e6, 3)
        return round(self.max_ns / 1e6, 3)

    def max_ms(self) -> float | None:
        return round(self.max_ns / 1e6, 3) if self.n else None


def cpu_figures(server: Server, ticks0: int | None, wall: float, per: int, per_name: str) -> dict:
    """Server CPU over a window, as seconds, % of a core and µs per unit of work (none without a PID)."""
    if ticks0 is None:
        return {}
    ticks = server.ticks() - ticks0  # type: ignore[operator]
    secs = ticks / CLK_TCK
    out = {
        "server_cpu_s": round(secs, 3),
        "server_cpu_pct": round(secs / wall * 100, 1) if wall > 0 else None,
    }
    out[f"server_cpu_us_per_{per_name}"] = round(secs * 1e6 / per, 2) if per else None
    return out


def gen_cpu(main_cpu0: tuple[float, float], parts: list[dict], local: bool) -> tuple[float, float]:
    """The generator's own (CPU, system) seconds since ``main_cpu0``, over all its processes."""
    cpu, sys_cpu = own_cpu()
    total, total_sys = cpu - main_cpu0[0], sys_cpu - main_cpu0[1]
    if not local:  # worker processes report their own CPU
        total += sum(p["cpu"] for p in parts)
        total_sys += sum(p["sys"] for p in parts)
    return total, total_sys


def pct(x: float, wall: float) -> float | None:
    return round(x / wall * 100, 1) if wall > 0 else None


def delivery_accounting(
    marks: list[dict], drains: list[dict], pub: dict, channel_of_seq: Callable[[int], int]
) -> dict:
    """Lost / unexpected deliveries from per-process first-copy counts."""
    accepted_set = set(pub["accepted"])
    expected = lost = unexpected = 0
    for mark, dr in zip(marks, drains, strict=True):
        live = {int(k): v for k, v in mark["live"].items()}
        counts = array("I")
        counts.frombytes(dr["counts"])
        for s in pub["accepted"]:
            want = live.get(channel_of_seq(s), 0)
            got = counts[s] if s < len(counts) else 0
            expected += want
            if got < want:
                lost += want - got
            else:
                unexpected += got - want
        for s, c in enumerate(counts):
            if c and s not in accepted_set:
                unexpected += c
        unexpected += dr["unparsable"]
    return {"expected": expected, "lost": lost, "unexpected": unexpected}


def merge_errors(parts: list[dict]) -> dict:
    """Sum error counts by reason across processes and phases."""
    out: dict[str, int] = {}
    for p in parts:
        for k, v in p.items():
            out[k] = out.get(k, 0) + v
    return out


def cells(*values: Any) -> str:
    return " / ".join("-" if v is None else str(v) for v in values)


def emit(args: argparse.Namespace, title: str, rows: list[tuple[str, Any]], result: dict) -> int:
    """Print the table (unless ``--json``) and then the one JSON line; the run completed: 0."""
    if not args.json and rows:
        width = max(len(r[0]) for r in rows)
        print(f"\n{title}")
        print("-" * (width + 22))
        for label, value in rows:
            if isinstance(value, float):
                value = f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.0f}"
            elif isinstance(value, int):
                value = f"{value:,}"
            print(f"{label:<{width}}  {'-' if value is None else value}")
        print()
    if args.label:
        result = {"label": args.label, **result}
    print(json.dumps(result, separators=(",", ":")), flush=True)
    return 0
