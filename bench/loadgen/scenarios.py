"""The three scenarios: ``fanout`` (delivery throughput, loss, latency), ``connections`` (capacity,
memory per connection, liveness) and ``churn`` (subscription round trips).

Each returns the process's exit status: 0 when the run completed, whatever the figures; 1 when no
socket could connect.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from typing import Any

from .http import publish
from .proc import Server, log, own_cpu
from .report import Hist, cells, cpu_figures, delivery_accounting, emit, gen_cpu, merge_errors, pct
from .workers import LocalFleet, open_all


def channel_name(args: argparse.Namespace, base: str) -> str:
    """A fresh channel name per run, prefixed for ``--channel-type``."""
    prefix = {"public": "", "private": "private-", "presence": "presence-"}[args.channel_type]
    return f"{prefix}{base}"


async def no_sockets(args: argparse.Namespace, fleets: list, scenario: str, failures: dict) -> int:
    """Close what was opened and report the failure reasons: exit status 1."""
    await asyncio.gather(*(f.call("close", timeout=30) for f in fleets))
    print(f"{scenario}: no socket connected: {failures}", file=sys.stderr)
    emit(args, "", [], {"scenario": scenario, "error": "no socket connected", "failures": failures})
    return 1


async def scenario_fanout(args: argparse.Namespace, fleets: list, server: Server) -> int:
    """S subscribers on one fresh channel, then publish for ``--duration`` and drain."""
    run = uuid.uuid4().hex[:8]
    channel = channel_name(args, f"bench-fanout-{run}")
    log(f"fanout: opening {args.subscribers} subscribers on {channel} over {len(fleets)} process(es)")
    opened, connect_s = await open_all(
        args, fleets, args.subscribers, [channel], "mod", args.connect_concurrency
    )
    ok = sum(o["ok"] for o in opened)
    failures = merge_errors([o["failures"] for o in opened])
    if failures:
        log(f"fanout: connect failures {failures}")
    if not ok:
        return await no_sockets(args, fleets, "fanout", failures)
    await asyncio.sleep(0.3)
    await server.wait_idle()
    marks = await asyncio.gather(*(f.call("mark") for f in fleets))
    ticks0, main0, w0 = server.ticks(), own_cpu(), time.monotonic()
    log(
        f"fanout: publishing for {args.duration} s (rate {args.rate or 'max'}, concurrency {args.concurrency})"
    )
    pub = await publish(
        args,
        lambda s: channel,
        duration=args.duration,
        count=args.max_events,
        rate=args.rate,
        concurrency=args.concurrency,
    )
    n_acc = len(pub["accepted"])
    log(f"fanout: {n_acc} events accepted, draining (up to {args.drain} s)")
    drains = await asyncio.gather(
        *(
            f.call(
                "drain",
                timeout=args.drain + 30,
                expected=n_acc * m["live"].get(0, 0),
                failed=pub["failed"],
                max_wait=args.drain,
                idle=args.drain_idle,
            )
            for f, m in zip(fleets, marks, strict=True)
        )
    )
    wall = time.monotonic() - w0
    local = isinstance(fleets[0], LocalFleet)
    g_cpu, g_sys = gen_cpu(main0, drains, local)
    acc = delivery_accounting(marks, drains, pub, lambda s: 0)
    deliveries = sum(d["unique"] for d in drains)
    duplicates = sum(d["duplicates"] for d in drains)
    lat = Hist()
    for d in drains:
        lat.merge(d["lat"])
    last_ns = max((d["last_ns"] for d in drains), default=0)
    span = (last_ns / 1e9 - pub["t_start"]) if last_ns else 0
    result: dict[str, Any] = {
        "scenario": "fanout",
        "subscribers": args.subscribers,
        "subscribed": ok,
        "connect_failures": sum(failures.values()),
        "processes": len(fleets),
        "rate": args.rate,
        "concurrency": args.concurrency,
        "payload_bytes": args.payload_bytes,
        "connect_s": round(connect_s, 3),
        "events_sent": pub["sent"],
        "events": n_acc,
        "events_failed": len(pub["failed"]),
        "publish_s": round(pub["seconds"], 3),
        "events_per_s": round(n_acc / max(pub["seconds"], args.duration or 0), 1) if pub["seconds"] else None,
        "deliveries": deliveries,
        "expected": acc["expected"],
        "deliveries_per_s": round(deliveries / span, 1) if span > 0 else None,
        "lost": acc["lost"],
        "lost_pct": round(acc["lost"] / acc["expected"] * 100, 3) if acc["expected"] else 0.0,
        "duplicates": duplicates,
        "unexpected": acc["unexpected"],
        "disconnects": sum(d["disconnects"] for d in drains),
        "lat_p50_ms": lat.pct_ms(50),
        "lat_p95_ms": lat.pct_ms(95),
        "lat_p99_ms": lat.pct_ms(99),
        "lat_max_ms": lat.max_ms(),
        "http_p50_ms": pub["http"].pct_ms(50),
        "http_p99_ms": pub["http"].pct_ms(99),
        "window_s": round(wall, 3),
        **cpu_figures(server, ticks0, wall, deliveries, "delivery"),
        "gen_cpu_pct": pct(g_cpu, wall),
        "gen_sys_pct": pct(g_sys, wall),
    }
    errors = merge_errors([pub["errors"]] + [d["errors"] for d in drains])
    if errors:
        result["errors"] = dict(list(errors.items())[:10])
    await asyncio.gather(*(f.call("close", timeout=30) for f in fleets))
    rows = [
        ("subscribers (subscribed)", f"{args.subscribers} ({ok})"),
        ("connect time s", result["connect_s"]),
        ("events accepted (failed)", f"{n_acc} ({len(pub['failed'])})"),
        ("events accepted/s", result["events_per_s"]),
        ("deliveries / expected", f"{deliveries} / {acc['expected']}"),
        ("deliveries/s", result["deliveries_per_s"]),
        ("lost / duplicates / unexpected", f"{acc['lost']} / {duplicates} / {acc['unexpected']}"),
        (
            "latency p50/p95/p99/max ms",
            cells(result["lat_p50_ms"], result["lat_p95_ms"], result["lat_p99_ms"], result["lat_max_ms"]),
        ),
        ("HTTP publish p50/p99 ms", cells(result["http_p50_ms"], result["http_p99_ms"])),
        ("server CPU %", result.get("server_cpu_pct")),
        ("server CPU µs/delivery", result.get("server_cpu_us_per_delivery")),
        ("generator CPU % (sys %)", f"{result['gen_cpu_pct']} ({result['gen_sys_pct']})"),
    ]
    return emit(
        args,
        f"fanout: {args.subscribers} subscribers, rate {args.rate or 'max'}, {args.duration} s",
        rows,
        result,
    )


async def scenario_connections(args: argparse.Namespace, fleets: list, server: Server) -> int:
    """N sockets over C channels, server RSS before and after, one event per channel, close."""
    run = uuid.uuid4().hex[:8]
    channels = [channel_name(args, f"bench-conn-{run}-{i}") for i in range(args.channels)]
    await server.wait_idle()
    rss0, ticks0, main0 = server.rss_kb(), server.ticks(), own_cpu()
    log(f"connections: opening {args.connections} sockets over {args.channels} channels")
    opened, connect_s = await open_all(args, fleets, args.connections, channels, "mod", args.concurrency)
    ok = sum(o["ok"] for o in opened)
    connect_cpu = cpu_figures(server, ticks0, connect_s, ok, "connect")
    local = isinstance(fleets[0], LocalFleet)
    g_cpu = own_cpu()[0] - main0[0] + (0 if local else sum(o["cpu"] for o in opened))
    failures = merge_errors([o["failures"] for o in opened])
    if not ok:
        return await no_sockets(args, fleets, "connections", failures)
    est, ready = Hist(), Hist()
    for o in opened:
        est.merge(o["est"])
        ready.merge(o["ready"])
    await asyncio.sleep(1.0)
    await server.wait_idle()
    rss1 = server.rss_kb()
    # liveness: one event per channel; every subscribed socket must receive its channel's event
    marks = await asyncio.gather(*(f.call("mark") for f in fleets))
    log("connections: liveness check (one event per channel)")
    pub = await publish(
        args,
        lambda s: channels[s],
        duration=None,
        count=args.channels,
        rate=0,
        concurrency=min(16, args.channels),
    )
    drains = await asyncio.gather(
        *(
            f.call(
                "drain",
                timeout=args.drain + 30,
                expected=sum(m["live"].get(s, 0) for s in pub["accepted"]),
                failed=pub["failed"],
                max_wait=args.drain,
                idle=args.drain_idle,
            )
            for f, m in zip(fleets, marks, strict=True)
        )
    )
    acc = delivery_accounting(marks, drains, pub, lambda s: s)
    still_open = sum(m["sockets"] for m in marks)
    closed = await asyncio.gather(*(f.call("close", timeout=30) for f in fleets))
    close_s = max(c["seconds"] for c in closed)
    result: dict[str, Any] = {
        "scenario": "connections",
        "connections": args.connections,
        "channels": args.channels,
        "processes": len(fleets),
        "concurrency": args.concurrency,
        "connected": ok,
        "failures": sum(failures.values()),
        "connect_s": round(connect_s, 3),
        "connects_per_s": round(ok / connect_s, 1) if connect_s else None,
        "connect_p50_ms": est.pct_ms(50),
        "connect_p99_ms": est.pct_ms(99),
        "connect_max_ms": est.max_ms(),
        "subscribed_p50_ms": ready.pct_ms(50),
        "subscribed_p99_ms": ready.pct_ms(99),
        **connect_cpu,
        "gen_cpu_pct": pct(g_cpu, connect_s),
        "open_after_connect": still_open,
        "liveness_events": len(pub["accepted"]),
        "liveness_expected": acc["expected"],
        "liveness_missing": acc["lost"],
        "liveness_unexpected": acc["unexpected"],
        "disconnects": sum(d["disconnects"] for d in drains),
        "close_s": round(close_s, 3),
    }
    if rss0 is not None and rss1 is not None:
        result.update(
            server_rss_before_kb=rss0,
            server_rss_after_kb=rss1,
            rss_per_conn_kb=round((rss1 - rss0) / ok, 2) if ok else None,
        )
    errors = merge_errors([failures, pub["errors"]] + [d["errors"] for d in drains])
    if errors:
        result["errors"] = dict(list(errors.items())[:10])
    rows = [
        ("connections (connected)", f"{args.connections} ({ok})"),
        ("failures", result["failures"]),
        ("connect time s", result["connect_s"]),
        ("connects/s", result["connects_per_s"]),
        (
            "connect p50/p99/max ms",
            cells(result["connect_p50_ms"], result["connect_p99_ms"], result["connect_max_ms"]),
        ),
        ("subscribed p50/p99 ms", cells(result["subscribed_p50_ms"], result["subscribed_p99_ms"])),
        ("server RSS before/after KB", f"{rss0} / {rss1}" if rss0 is not None else None),
        ("server RSS per connection KB", result.get("rss_per_conn_kb")),
        ("server CPU µs/connect", result.get("server_cpu_us_per_connect")),
        ("liveness missing / expected", f"{acc['lost']} / {acc['expected']}"),
        ("close time s", result["close_s"]),
        ("generator CPU % (connect)", result["gen_cpu_pct"]),
    ]
    return emit(args, f"connections: {args.connections} sockets, {args.channels} channels", rows, result)


async def scenario_churn(args: argparse.Namespace, fleets: list, server: Server) -> int:
    """Every socket loops subscribe -> subscription_succeeded -> unsubscribe for ``--duration``."""
    run = uuid.uuid4().hex[:8]
    channels = [channel_name(args, f"bench-churn-{run}-{i}") for i in range(args.channels)]
    log(f"churn: opening {args.sockets} sockets")
    opened, connect_s = await open_all(args, fleets, args.sockets, channels, "none", args.connect_concurrency)
    ok = sum(o["ok"] for o in opened)
    failures = merge_errors([o["failures"] for o in opened])
    if not ok:
        return await no_sockets(args, fleets, "churn", failures)
    await asyncio.sleep(0.3)
    await server.wait_idle()
    ticks0, main0, w0 = server.ticks(), own_cpu(), time.monotonic()
    start_at = time.monotonic_ns() + int(0.2e9)
    log(f"churn: subscribe/unsubscribe loop for {args.duration} s")
    parts = await asyncio.gather(
        *(
            f.call(
                "churn",
                timeout=args.duration + args.sub_timeout + 30,
                start_at_ns=start_at,
                duration=args.duration,
                channels=channels,
                channel_type=args.channel_type,
                sub_timeout=args.sub_timeout,
            )
            for f in fleets
        )
    )
    wall = time.monotonic() - w0 - 0.2
    local = isinstance(fleets[0], LocalFleet)
    g_cpu, g_sys = gen_cpu(main0, parts, local)
    rtt = Hist()
    for p in parts:
        rtt.merge(p["rtt"])
    sub_failures = merge_errors([p["failures"] for p in parts])
    await asyncio.gather(*(f.call("close", timeout=30) for f in fleets))
    result: dict[str, Any] = {
        "scenario": "churn",
        "sockets": args.sockets,
        "connected": ok,
        "connect_failures": sum(failures.values()),
        "channels": args.channels,
        "channel_type": args.channel_type,
        "processes": len(fleets),
        "duration_s": args.duration,
        "subscribes": rtt.n,
        "subscribe_failures": sum(sub_failures.values()),
        "subscribes_per_s": round(rtt.n / args.duration, 1),
        "sub_p50_ms": rtt.pct_ms(50),
        "sub_p99_ms": rtt.pct_ms(99),
        "sub_max_ms": rtt.max_ms(),
        "disconnects": sum(p["disconnects"] for p in parts),
        **cpu_figures(server, ticks0, wall, rtt.n, "subscribe"),
        "gen_cpu_pct": pct(g_cpu, wall),
    }
    errors = merge_errors([failures] + [p["errors"] for p in parts])
    if errors:
        result["errors"] = dict(list(errors.items())[:10])
    rows = [
        ("sockets (connected)", f"{args.sockets} ({ok})"),
        ("subscribes (failures)", f"{rtt.n} ({result['subscribe_failures']})"),
        ("subscribes/s", result["subscribes_per_s"]),
        (
            "subscribe RTT p50/p99/max ms",
            cells(result["sub_p50_ms"], result["sub_p99_ms"], result["sub_max_ms"]),
        ),
        ("server CPU %", result.get("server_cpu_pct")),
        ("server CPU µs/subscribe", result.get("server_cpu_us_per_subscribe")),
        ("generator CPU %", result["gen_cpu_pct"]),
    ]
    return emit(
        args,
        f"churn: {args.sockets} sockets, {args.channels} {args.channel_type} channel(s), {args.duration} s",
        rows,
        result,
    )
