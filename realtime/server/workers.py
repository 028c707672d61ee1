"""``manage.py serve --workers N``: N node processes serving one port, supervised.

The parent binds and listens (with the configured backlog) before any worker starts, then runs each
worker as ``manage.py serve --listen-fd FD``; the worker adopts the socket into daphne's Twisted
reactor (``reactor.adoptStreamPort``). The parent keeps the sockets open for its whole life, so a
worker that crashes and is restarted takes over the same socket: connections that arrive meanwhile
wait in the backlog instead of being refused.

On Linux the parent opens one socket per worker, all bound to the port with ``SO_REUSEPORT``: the
kernel spreads new connections evenly over them. (One shared socket accepted by every worker would
let whichever process wakes first take a whole burst of connects.) Elsewhere all workers share one
socket.

Each worker is a node of the cluster (the Redis adapter; a system check refuses the in-process one),
with its own node id. Workers write their metrics to a shared prometheus_client multiprocess
directory (``PROMETHEUS_MULTIPROC_DIR``), so ``/metrics`` on any worker reports all of them.
SIGTERM/SIGINT to the parent is forwarded to every worker, which drains (``realtime.server.node``); a
worker that exits on its own is restarted, with a back-off while it keeps failing.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from realtime.conf import server_settings

log = logging.getLogger(__name__)

RESTART_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)  # seconds, by consecutive quick failures
STABLE_AFTER = 10.0  # a worker that lived this long resets its back-off
KILL_MARGIN = 15.0  # seconds past the grace period before stragglers are killed


def pin_to_cpu(pid: int, index: int) -> None:
    """Pin worker ``index`` to one CPU (round robin) when ``SOCKUDO_WORKER_CPU_AFFINITY`` is on.

    A Python process whose threads (event loop, Django's sync view threads) wander between cores
    pays for every GIL hand-off across cores: measured here, two unpinned workers delivered *less*
    than one pinned worker (139k vs 184k deliveries/s) and pinned ones 231k.
    """
    if not server_settings().SOCKUDO_WORKER_CPU_AFFINITY:
        return
    if not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return
    try:
        os.sched_setaffinity(pid, {cpus[index % len(cpus)]})
    except OSError:
        log.warning("could not pin worker %d to a CPU", index)


def spread_by_kernel(workers: int) -> bool:
    return workers > 1 and sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def listening_sockets(host: str, port: int, backlog: int, count: int) -> list[socket.socket]:
    """``count`` sockets listening on ``host:port`` (one per worker, or one shared)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    spread = spread_by_kernel(count)
    sockets: list[socket.socket] = []
    try:
        for _ in range(count if spread else 1):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if spread:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6 and host in ("::", ""):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            if len(sockets) > 1:  # port 0 picks a port once; the others join it
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)  # Twisted accepts until EAGAIN
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


@dataclass
class Worker:
    index: int
    sock: socket.socket
    process: subprocess.Popen | None = None
    started: float = 0.0
    failures: int = 0
    restart_at: float = 0.0
    generation: int = 0


class Supervisor:
    def __init__(
        self,
        workers: int,
        host: str,
        port: int,
        backlog: int,
        worker_args: list[str],
        grace: float,
        manage_py: str,
    ) -> None:
        self.count = workers
        self.host, self.port, self.backlog = host, port, backlog
        self.worker_args = worker_args
        self.grace = grace
        self.manage_py = manage_py
        self.stopping = False
        self.kill_at = 0.0
        self.forced = False
        self.workers: list[Worker] = []
        self.metrics_dir = ""
        self._own_metrics_dir = False

    # -- lifecycle -----------------------------------------------------------------------------
    def run(self) -> int:
        sockets = listening_sockets(self.host, self.port, self.backlog, self.count)
        self.port = sockets[0].getsockname()[1]
        self._prepare_metrics_dir()
        self.workers = [Worker(i, sockets[i if len(sockets) > 1 else 0]) for i in range(self.count)]
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            for worker in self.workers:
                self._spawn(worker)
            while not self._finished():
                self._reap()
                self._restart_due()
                if self.stopping and time.monotonic() > self.kill_at:
                    self._kill_remaining()
                time.sleep(0.1)
        finally:
            for sock in sockets:
                sock.close()
            if self._own_metrics_dir:
                shutil.rmtree(self.metrics_dir, ignore_errors=True)
        return 0

    def _finished(self) -> bool:
        return self.stopping and all(w.process is None or w.process.poll() is not None for w in self.workers)

    def _prepare_metrics_dir(self) -> None:
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
        if path:
            # Files of an earlier run would add its counts to this one.
            Path(path).mkdir(parents=True, exist_ok=True)
            for stale in glob.glob(os.path.join(path, "*.db")):
                os.unlink(stale)
        else:
            path = tempfile.mkdtemp(prefix="sockudo-metrics-")
            self._own_metrics_dir = True
        self.metrics_dir = path

    def _spawn(self, worker: Worker) -> None:
        fd = worker.sock.fileno()
        env = {
            **os.environ,
            "SOCKUDO_WORKERS": str(self.count),
            "SOCKUDO_WORKER_INDEX": str(worker.index),
            "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir,
        }
        base_id = server_settings().INSTANCE_PROCESS_ID
        if base_id:
            # A node id per process, and a fresh one per restart: the old id's sockets and presence
            # members are cleaned up by the cluster as those of a dead node.
            env["INSTANCE_PROCESS_ID"] = f"{base_id}-{worker.index}-{worker.generation}"
        argv = [
            sys.executable,
            self.manage_py,
            "serve",
            "--listen-fd",
            str(fd),
            "--host",
            self.host,
            "--port",
            str(self.port),
            *self.worker_args,
        ]
        worker.process = subprocess.Popen(argv, env=env, pass_fds=(fd,))  # noqa: S603 - our own command
        pin_to_cpu(worker.process.pid, worker.index)
        worker.started = time.monotonic()
        worker.generation += 1
        log.info("worker %d started (pid %d)", worker.index, worker.process.pid)

    def _reap(self) -> None:
        if self.stopping:
            return  # exits are expected now; nothing is restarted
        for worker in self.workers:
            process = worker.process
            if process is None or process.poll() is None:
                continue
            self._forget_metrics(process.pid)
            code = process.returncode
            lived = time.monotonic() - worker.started
            worker.failures = 0 if lived >= STABLE_AFTER else worker.failures + 1
            delay = (
                RESTART_BACKOFF[min(worker.failures, len(RESTART_BACKOFF) - 1)] if worker.failures else 0.0
            )
            log.warning(
                "worker %d (pid %d) exited with %s after %.1fs; restarting in %.1fs",
                worker.index,
                process.pid,
                code,
                lived,
                delay,
            )
            worker.process = None
            worker.restart_at = time.monotonic() + delay

    def _restart_due(self) -> None:
        if self.stopping:
            return
        now = time.monotonic()
        for worker in self.workers:
            if worker.process is None and now >= worker.restart_at:
                self._spawn(worker)

    def _forget_metrics(self, pid: int) -> None:
        """Drop the dead process's live gauges (its counters stay: totals never go down)."""
        try:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, self.metrics_dir)
        except Exception:  # metrics must never take the supervisor down
            log.exception("could not clear the metrics of pid %d", pid)

    # -- signals -------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: object) -> None:
        if self.stopping:
            if signum == signal.SIGINT and not self.forced:
                self.forced = True  # Ctrl-C twice: workers stop without waiting
                self._signal_all(signal.SIGINT)
            return
        self.stopping = True
        self.kill_at = time.monotonic() + self.grace + KILL_MARGIN
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, signum: int) -> None:
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(signum)  # Popen ignores a process already reaped

    def _kill_remaining(self) -> None:
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is None:
                log.warning("worker %d did not stop within the grace period; killing it", worker.index)
                worker.process.kill()
