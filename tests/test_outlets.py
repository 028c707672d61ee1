"""The daphne outlet corks frames: one kernel write per socket per idle loop turn (later, bounded,
when the loop is busy), in order, flushed before a close or ping, bounded by the slow-consumer
limit."""

from __future__ import annotations

import asyncio
import socket as stdlib_socket
import time

import pytest

from realtime.server import outlets
from realtime.server.outlets import FLUSH_BYTES, DaphneOutlet, OutFrame, set_flush_max_delay


@pytest.fixture(autouse=True)
def _default_flush_delay():
    yield
    set_flush_max_delay(0.1)
    outlets._corked.clear()  # a test's loop may end with frames still corked
    outlets._last_write = float("-inf")


class FakeSocket:
    def __init__(self, log: list, accept: int | None = None) -> None:
        self.log = log
        self.accept = accept  # bytes the kernel takes per send (None: everything)
        self.sends = 0

    def send(self, data: bytes) -> int:
        self.sends += 1
        taken = len(data) if self.accept is None else min(self.accept, len(data))
        self.log.append(("kernel", bytes(data[:taken])))
        return taken


class FakeTransport:
    TLS = False
    disconnecting = False

    def __init__(self, socket: FakeSocket, log: list) -> None:
        self.socket = socket
        self.log = log
        self.dataBuffer = b""
        self.offset = 0
        self._tempDataLen = 0

    def write(self, data: bytes) -> None:
        self.log.append(("twisted", bytes(data)))
        self._tempDataLen += len(data)


class FakeProtocol:
    def __init__(self, socket: FakeSocket, log: list) -> None:
        self.state = 3
        self.transport = FakeTransport(socket, log)
        self.log = log

    def sendClose(self, code: int, reason: str) -> None:  # noqa: N802 - autobahn's name
        self.log.append(("close", code))
        self.state = 2

    def sendPing(self) -> None:  # noqa: N802 - autobahn's name
        self.log.append(("ping", None))


def outlet(accept: int | None = None, limit: int = 1 << 20) -> tuple[DaphneOutlet, FakeSocket, list]:
    log: list = []
    socket = FakeSocket(log, accept)
    return DaphneOutlet(FakeProtocol(socket, log), limit), socket, log


def frame(text: str) -> OutFrame:
    return OutFrame(text)


def run_turns(body) -> None:
    async def main() -> None:
        await body()

    asyncio.run(main())


def test_frames_of_one_turn_leave_in_one_write_in_order():
    out, socket, log = outlet()

    async def body() -> None:
        for i in range(3):
            assert out.send(frame(f'{{"n":{i}}}'))
        assert socket.sends == 0  # nothing written until the turn ends
        await asyncio.sleep(0.01)

    run_turns(body)
    assert socket.sends == 1
    assert log == [("kernel", b"".join(frame(f'{{"n":{i}}}').wire for i in range(3)))]


def test_each_turn_is_written_separately():
    out, socket, log = outlet()

    async def body() -> None:
        out.send(frame("a"))
        await asyncio.sleep(0.01)
        out.send(frame("b"))
        await asyncio.sleep(0.01)

    run_turns(body)
    assert [entry[1] for entry in log] == [frame("a").wire, frame("b").wire]


def test_close_and_ping_go_out_after_the_frames_sent_before_them():
    out, _socket, log = outlet()

    async def body() -> None:
        out.send(frame("one"))
        assert out.native_ping()
        out.send(frame("two"))
        out.close(4100, "slow")
        await asyncio.sleep(0.01)

    run_turns(body)
    assert log == [
        ("kernel", frame("one").wire),
        ("ping", None),
        ("kernel", frame("two").wire),
        ("close", 4100),
    ]
    assert not out.send(frame("late"))  # closed: refused, never written


def test_what_the_kernel_refuses_goes_through_twisted_and_counts_against_the_limit():
    wire = frame("x" * 100).wire
    out, _socket, log = outlet(accept=10, limit=3 * len(wire))

    async def body() -> None:
        out.send(frame("x" * 100))
        await asyncio.sleep(0.01)
        # The transport now holds the rest of the first frame: that backlog plus new frames
        # passes the limit on the third, so the engine is told to drop this slow consumer.
        assert out.send(frame("x" * 100))
        assert out.send(frame("x" * 100))
        assert not out.send(frame("x" * 100))

    run_turns(body)
    assert log[0] == ("kernel", wire[:10])
    assert log[1] == ("twisted", wire[10:])


def test_once_twisted_holds_bytes_later_frames_queue_behind_them():
    out, socket, log = outlet(accept=0)

    async def body() -> None:
        out.send(frame("first"))
        await asyncio.sleep(0.01)
        out.send(frame("second"))
        await asyncio.sleep(0.01)

    run_turns(body)
    assert socket.sends == 1  # the second turn did not bypass what Twisted still holds
    assert [kind for kind, _ in log] == ["kernel", "twisted", "twisted"]


def test_a_failing_socket_does_not_keep_other_sockets_frames_unsent():
    broken, _, _ = outlet()
    healthy, socket, log = outlet()
    del broken.protocol.transport.dataBuffer  # a transport in a state nobody expected

    async def body() -> None:
        broken.send(frame("x"))
        healthy.send(frame("y"))
        await asyncio.sleep(0.01)

    run_turns(body)
    assert log == [("kernel", frame("y").wire)]


def test_a_large_burst_in_one_turn_is_not_a_slow_consumer_when_the_kernel_takes_it():
    big = "x" * 10_000
    out, socket, log = outlet(limit=100_000)

    async def body() -> None:
        assert all(out.send(frame(big)) for _ in range(200))  # 2 MB in one turn, limit 100 KB
        await asyncio.sleep(0.01)

    run_turns(body)
    # Written as it grew: no write holds more than the flush threshold plus one frame.
    assert socket.sends > 1
    assert max(len(data) for _kind, data in log) < FLUSH_BYTES + len(frame(big).wire)
    assert b"".join(data for _kind, data in log) == frame(big).wire * 200


def test_a_large_burst_the_kernel_refuses_is_a_slow_consumer():
    big = "x" * 10_000
    out, _socket, _log = outlet(accept=0, limit=100_000)

    async def body() -> None:
        results = [out.send(frame(big)) for _ in range(30)]
        assert results[0] and not results[-1]

    run_turns(body)


def busy(loop: asyncio.AbstractEventLoop, until: float, turns: list) -> None:
    """A callback that keeps the loop busy (always something ready) until ``until``."""
    turns.append(time.monotonic())
    if time.monotonic() < until:
        loop.call_soon(busy, loop, until, turns)


async def recent_write(out: DaphneOutlet) -> None:
    """Under load the last write round was moments ago; frames keep coming."""
    out.send(frame("warm"))
    await asyncio.sleep(0.001)


def test_a_busy_loop_writes_after_the_work_already_queued():
    out, socket, log = outlet()

    async def body() -> None:
        loop = asyncio.get_running_loop()
        await recent_write(out)
        out.send(frame("a"))
        # Work already queued when the turn ends (other publishes, reads): their frames join.
        loop.call_soon(out.send, frame("b"))
        loop.call_soon(lambda: loop.call_soon(out.send, frame("c")))
        await asyncio.sleep(0.01)

    run_turns(body)
    assert socket.sends == 2
    assert log[1:] == [("kernel", frame("a").wire + frame("b").wire + frame("c").wire)]


def test_a_busy_loop_lets_io_that_already_arrived_join_the_write():
    """Nothing queued, but a request is waiting in a socket: the write waits one poll for it."""
    out, socket, log = outlet()
    reader, writer = stdlib_socket.socketpair()

    async def body() -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(reader, lambda: (reader.recv(64), out.send(frame("from-io"))))
        try:
            await recent_write(out)
            # The request arrives during the turn that writes "a", after that turn polled for I/O.
            loop.call_soon(writer.send, b"x")
            out.send(frame("a"))
            await asyncio.sleep(0.01)
        finally:
            loop.remove_reader(reader)

    try:
        run_turns(body)
    finally:
        reader.close()
        writer.close()
    assert log[1:] == [("kernel", frame("a").wire + frame("from-io").wire)]


def test_an_idle_loop_writes_at_the_end_of_the_turn_even_with_callbacks_queued():
    out, socket, log = outlet()  # no write for longer than the delay: not under load

    async def body() -> None:
        loop = asyncio.get_running_loop()
        out.send(frame("a"))
        loop.call_soon(lambda: loop.call_soon(out.send, frame("b")))
        await asyncio.sleep(0.01)

    run_turns(body)
    assert log == [("kernel", frame("a").wire), ("kernel", frame("b").wire)]


def test_the_wait_for_a_busy_loop_is_bounded_by_the_flush_delay():
    set_flush_max_delay(0.01)
    out, socket, log = outlet()
    written_at: list[float] = []
    real_send = socket.send

    def timed_send(data: bytes) -> int:
        written_at.append(time.monotonic())
        return real_send(data)

    socket.send = timed_send

    async def body() -> None:
        loop = asyncio.get_running_loop()
        start = time.monotonic()
        turns: list = []
        outlets.FLUSH_MAX_DEFERRALS, saved = 10**9, outlets.FLUSH_MAX_DEFERRALS
        try:
            outlets._last_write = loop.time()  # under load
            busy(loop, start + 0.2, turns)
            out.send(frame("a"))
            await asyncio.sleep(0.3)
        finally:
            outlets.FLUSH_MAX_DEFERRALS = saved
        assert written_at, "a loop that never idles must not hold frames forever"
        assert written_at[0] - start < 0.1  # about the 10 ms bound, far before the loop idles

    run_turns(body)
    assert log == [("kernel", frame("a").wire)]


def test_the_wait_for_a_busy_loop_is_bounded_in_turns():
    set_flush_max_delay(60)
    out, socket, _log = outlet()

    async def body() -> None:
        loop = asyncio.get_running_loop()
        turns: list = []
        outlets._last_write = loop.time()  # under load
        busy(loop, time.monotonic() + 0.5, turns)
        out.send(frame("a"))
        while socket.sends == 0:
            await asyncio.sleep(0)
        assert len(turns) <= outlets.FLUSH_MAX_DEFERRALS + 2

    run_turns(body)


def test_a_zero_delay_writes_at_the_end_of_every_turn():
    set_flush_max_delay(0)
    out, socket, log = outlet()

    async def body() -> None:
        loop = asyncio.get_running_loop()
        outlets._last_write = loop.time()
        out.send(frame("a"))
        loop.call_soon(lambda: loop.call_soon(out.send, frame("b")))
        await asyncio.sleep(0.01)

    run_turns(body)
    assert log == [("kernel", frame("a").wire), ("kernel", frame("b").wire)]
