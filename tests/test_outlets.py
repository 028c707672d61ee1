"""The daphne outlet corks frames per event-loop turn: one kernel write per socket per turn, in
order, flushed before a close or ping, bounded by the slow-consumer limit."""

from __future__ import annotations

import asyncio

from realtime.outlets import FLUSH_BYTES, DaphneOutlet, OutFrame


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
        await asyncio.sleep(0)
        await asyncio.sleep(0)

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
