"""The history storage layer: one conformance suite over every store driver, the group-commit writer,
the sequencers (local and real Redis, including two OS processes on one channel) and the policy.

Django runs in this test process (the session's ``django_in_process`` fixture: a temporary SQLite
file, or a fresh PostgreSQL database when ``TEST_DATABASE_URL`` names one); this module migrates it.
Other modules keep starting their own server processes. Every test uses its own app id and channel,
so tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
T0 = 1_700_000_000_000  # published_at_ms of serial 1 in seeded channels; +1000 ms per serial


# --------------------------------------------------------------------------- Django in this process


@pytest.fixture(scope="module", autouse=True)
def django_db(django_in_process: str) -> str:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    return django_in_process


# --------------------------------------------------------------------------- helpers

DRIVERS = ["memory", "orm"]


def make_store(kind: str):
    if kind == "memory":
        from history.store.memory import MemoryStore

        return MemoryStore()
    from history.store.orm import OrmStore

    return OrmStore()


@pytest.fixture(params=DRIVERS)
def store(request):
    return make_store(request.param)


@pytest.fixture
def where() -> tuple[str, str]:
    """A fresh (app_id, channel) per test."""
    return f"app-{uuid.uuid4().hex[:8]}", f"chan-{uuid.uuid4().hex[:8]}"


def record(app_id: str, channel: str, stream_id: str, serial: int, **kw):
    from history.records import HistoryRecord

    message_id = kw.pop("message_id", f"m-{stream_id[:8]}-{serial}")
    payload = json.dumps(
        {
            "event": "e",
            "channel": channel,
            "data": json.dumps({"n": serial}),
            "message_id": message_id,
            "stream_id": stream_id,
            "serial": serial,
        },
        separators=(",", ":"),
    )
    return HistoryRecord(
        app_id,
        channel,
        stream_id,
        serial,
        message_id,
        kw.pop("event_name", "e"),
        kw.pop("published_at_ms", T0 + (serial - 1) * 1000),
        payload,
        **kw,
    )


def seed(store, where, n: int, stream_id: str | None = None, first: int = 1) -> str:
    stream_id = stream_id or str(uuid.uuid4())
    store.append([record(*where, stream_id, s) for s in range(first, first + n)])
    return stream_id


def query(where, **params):
    from history.query import HistoryQuery

    attach = params.pop("attach_serial", None)
    cap = params.pop("max_page_size", 100)
    return HistoryQuery.parse(
        params, app_id=where[0], channel=where[1], max_page_size=cap, attach_serial=attach, surface="http"
    )


def serials(page) -> list[int]:
    return [item.serial for item in page.items]


def all_pages(store, where, **params) -> list[list[int]]:
    pages, cursor = [], None
    while True:
        page = store.page(query(where, **params, **({"cursor": cursor} if cursor else {})))
        pages.append(serials(page))
        if not page.has_more:
            assert page.next_cursor is None
            return pages
        cursor = page.next_cursor


# --------------------------------------------------------------------------- conformance: pages


def test_page_shape_and_item(store, where):
    stream_id = seed(store, where, 3)
    data = store.page(query(where)).to_dict()
    assert set(data) == {
        "items",
        "direction",
        "limit",
        "has_more",
        "next_cursor",
        "bounds",
        "continuity",
        "stream_state",
    }
    assert data["direction"] == "newest_first" and data["limit"] == 100 and data["has_more"] is False
    item = data["items"][0]
    assert item == {
        "stream_id": stream_id,
        "serial": 3,
        "published_at_ms": T0 + 2000,
        "message_id": f"m-{stream_id[:8]}-3",
        "event_name": "e",
        "operation_kind": "append",
        "payload_size_bytes": len(record(*where, stream_id, 3).payload.encode()),
        "message": json.loads(record(*where, stream_id, 3).payload),
    }
    assert data["continuity"] == {
        "stream_id": stream_id,
        "oldest_available_serial": 1,
        "newest_available_serial": 3,
        "oldest_available_published_at_ms": T0,
        "newest_available_published_at_ms": T0 + 2000,
        "retained_messages": 3,
        "retained_bytes": sum(len(record(*where, stream_id, s).payload.encode()) for s in (1, 2, 3)),
        "complete": True,
        "truncated_by_retention": False,
    }
    state = data["stream_state"]
    assert state["stream_id"] == stream_id and state["durable_state"] == "healthy"
    assert state["recovery_allowed"] is True and state["reset_required"] is False and state["reason"] is None
    assert state["authoritative_source"] == store.source == state["observed_source"]
    assert data["bounds"] == {
        "start_serial": None,
        "end_serial": None,
        "start_time_ms": None,
        "end_time_ms": None,
        "until_attach": False,
        "attach_serial": None,
    }


def test_cursor_pages_cover_everything_once_in_both_directions(store, where):
    seed(store, where, 23)
    newest = all_pages(store, where, limit="5")
    assert [len(p) for p in newest] == [5, 5, 5, 5, 3]
    assert sum(newest, []) == list(range(23, 0, -1))
    for alias in ("oldest_first", "forwards", "FORWARD"):
        oldest = all_pages(store, where, limit="10", direction=alias)
        assert sum(oldest, []) == list(range(1, 24))
    for alias in ("backwards", "Reverse", "newest_first"):
        assert sum(all_pages(store, where, limit="50", direction=alias), []) == list(range(23, 0, -1))


def test_limit_default_cap_and_zero(store, where):
    from history.query import InvalidQuery

    seed(store, where, 30)
    assert store.page(query(where, max_page_size=10)).limit == 10  # default = cap
    assert len(store.page(query(where, limit="500", max_page_size=10)).items) == 10
    assert len(store.page(query(where, limit="7")).items) == 7
    for bad in ("0", "-1", "x", "1.5"):
        with pytest.raises(InvalidQuery):
            query(where, limit=bad)
    with pytest.raises(InvalidQuery):
        query(where, direction="sideways")


def test_serial_and_time_bounds_are_inclusive(store, where):
    seed(store, where, 20)
    assert serials(store.page(query(where, start_serial="5", end_serial="8"))) == [8, 7, 6, 5]
    page = store.page(
        query(where, start_time_ms=str(T0 + 2000), end_time_ms=str(T0 + 4000), direction="oldest_first")
    )
    assert serials(page) == [3, 4, 5]
    # HTTP aliases start/end are times.
    assert serials(store.page(query(where, start=str(T0 + 18000)))) == [20, 19]
    both = store.page(query(where, start_serial="3", end_time_ms=str(T0 + 5000), direction="forward"))
    assert serials(both) == [3, 4, 5, 6]
    assert both.bounds["start_serial"] == 3 and both.bounds["end_time_ms"] == T0 + 5000
    # Bounded pages continue with cursors inside the bounds.
    assert sum(all_pages(store, where, start_serial="4", end_serial="15", limit="4"), []) == list(
        range(15, 3, -1)
    )


def test_websocket_aliases_are_serials():
    from history.query import HistoryQuery

    q = HistoryQuery.parse(
        {"params": {"start": 3, "end": 9, "untilAttach": True, "limit": 5000}},
        app_id="a",
        channel="c",
        max_page_size=1000,
        default_limit=100,
        attach_serial=7,
        surface="ws",
    )
    assert (q.start_serial, q.end_serial, q.until_attach, q.limit) == (3, 7, True, 1000)
    assert (
        HistoryQuery.parse(
            {}, app_id="a", channel="c", max_page_size=1000, default_limit=100, surface="ws"
        ).limit
        == 100
    )


def test_bad_bounds_are_refused(where):
    from history.query import InvalidQuery

    for params in (
        {"start_serial": "9", "end_serial": "3"},
        {"start_time_ms": "9", "end_time_ms": "3"},
        {"start_serial": "-3"},
        {"end_time_ms": "soon"},
        {"start_serial": str(2**63)},
        {"until_attach": "maybe", "attach_serial": 3},
    ):
        with pytest.raises(InvalidQuery):
            query(where, **params)


def test_until_attach_bounds_the_end(store, where):
    from history.query import InvalidQuery

    seed(store, where, 12)
    page = store.page(query(where, until_attach="true", attach_serial=9))
    assert serials(page)[0] == 9 and page.bounds["until_attach"] is True and page.bounds["attach_serial"] == 9
    assert page.bounds["end_serial"] == 9
    assert serials(store.page(query(where, until_attach="true", attach_serial=9, end_serial="4"))) == [
        4,
        3,
        2,
        1,
    ]
    assert sum(all_pages(store, where, until_attach="1", attach_serial=9, limit="4"), []) == list(
        range(9, 0, -1)
    )
    with pytest.raises(InvalidQuery, match="attach"):
        query(where, until_attach="true")
    assert store.page(query(where, attach_serial=5)).bounds["attach_serial"] == 5  # reported, not applied


def test_cursor_is_bound_to_its_query(store, where):
    from history.query import MAX_CURSOR_BYTES, InvalidQuery

    seed(store, where, 10)
    cursor = store.page(query(where, limit="3")).next_cursor
    assert cursor
    assert serials(store.page(query(where, limit="3", cursor=cursor))) == [7, 6, 5]
    assert serials(store.page(query(where, limit="2", cursor=cursor))) == [7, 6]  # limit may change
    other = (where[0], where[1] + "x")
    for bad in (
        lambda: query(other, limit="3", cursor=cursor),  # another channel
        lambda: query(("other-app", where[1]), limit="3", cursor=cursor),  # another app
        lambda: query(where, limit="3", cursor=cursor, direction="oldest_first"),  # another shape
        lambda: query(where, limit="3", cursor=cursor, end_serial="9"),
        lambda: query(where, cursor=cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")),  # tampered
        lambda: query(where, cursor="not a cursor"),
        lambda: query(where, cursor="x" * (MAX_CURSOR_BYTES + 1)),
    ):
        with pytest.raises(InvalidQuery):
            bad()


def test_unknown_channel_is_an_empty_page(store, where):
    data = store.page(query(where)).to_dict()
    assert data["items"] == [] and data["has_more"] is False
    assert data["continuity"]["stream_id"] is None and data["continuity"]["retained_messages"] == 0
    assert data["stream_state"]["durable_state"] == "healthy"
    assert store.head(*where) is None
    assert store.state(*where)["next_serial"] == 1


# --------------------------------------------------------------------------- conformance: writes


def test_append_is_atomic_and_positions_unique(store, where):
    stream_id = seed(store, where, 3)
    with pytest.raises(Exception):  # noqa: B017 - drivers raise their backend's integrity error
        store.append([record(*where, stream_id, 4), record(*where, stream_id, 2)])
    assert serials(store.page(query(where))) == [3, 2, 1]
    with pytest.raises(Exception):  # noqa: B017
        store.append([record(*where, stream_id, 5), record(*where, stream_id, 5)])
    assert store.head(*where).serial == 3
    # Another channel may use the same serials.
    other = (where[0], where[1] + "-2")
    seed(store, other, 3, stream_id=stream_id)
    assert serials(store.page(query(other))) == [3, 2, 1]


def test_idempotency_key_lookup(store, where):
    stream_id = str(uuid.uuid4())
    store.append([record(*where, stream_id, 1, idempotency_key="k1"), record(*where, stream_id, 2)])
    found = store.find_by_key(*where, "k1")
    assert found is not None and found.serial == 1 and found.idempotency_key == "k1"
    assert store.find_by_key(*where, "nope") is None


def test_state(store, where):
    stream_id = seed(store, where, 4)
    state = store.state(*where)
    assert state["stream_id"] == stream_id and state["next_serial"] == 5
    assert state["retained"]["stream_id"] == stream_id
    assert state["retained"]["retained_messages"] == 4
    assert state["retained"]["oldest_available_serial"] == 1
    assert state["retained"]["newest_available_serial"] == 4
    assert state["retained"]["newest_available_published_at_ms"] == T0 + 3000
    assert state["state"]["durable_state"] == "healthy"


# --------------------------------------------------------------------------- conformance: purge, reset, retention


def test_purge_keeps_the_stream_and_its_head(store, where):
    stream_id = seed(store, where, 10)
    size = len(record(*where, stream_id, 1).payload.encode())
    result = store.purge(*where, before_serial=4)
    assert (result.stream_id, result.purged_messages, result.purged_bytes) == (stream_id, 3, 3 * size)
    assert serials(store.page(query(where, direction="oldest_first")))[:2] == [4, 5]
    page = store.page(query(where))
    assert page.continuity["truncated_by_retention"] is True and page.continuity["complete"] is False
    assert store.page(query(where, start_serial="4")).continuity["truncated_by_retention"] is False
    assert (
        store.page(query(where, start_time_ms=str(T0 + 5000))).continuity["truncated_by_retention"] is False
    )

    assert store.purge(*where, before_time_ms=T0 + 6000).purged_messages == 3  # serials 4, 5, 6
    assert store.purge(*where).purged_messages == 4  # all
    assert store.head(*where) == (stream_id, 10)  # the head survives
    state = store.state(*where)
    assert state["stream_id"] == stream_id and state["next_serial"] == 11
    assert state["retained"]["retained_messages"] == 0
    seed(store, where, 2, stream_id=stream_id, first=11)
    assert serials(store.page(query(where))) == [12, 11]


def test_reset_starts_a_new_stream(store, where):
    from history.query import InvalidQuery

    old = seed(store, where, 5)
    cursor = store.page(query(where, limit="2")).next_cursor
    new = str(uuid.uuid4())
    # A publish on the new stream committed before the store's reset (the sequencer switches first).
    store.append([record(*where, new, 1)])
    result = store.reset(*where, new)
    assert (result.previous_stream_id, result.new_stream_id, result.purged_messages) == (old, new, 5)
    assert result.purged_bytes > 0
    assert serials(store.page(query(where))) == [1]
    assert store.head(*where) == (new, 1)
    with pytest.raises(InvalidQuery):
        store.page(query(where, limit="2", cursor=cursor))
    # A late write on the old stream is never visible, and the next purge removes it.
    store.append([record(*where, old, 6)])
    assert serials(store.page(query(where))) == [1] and store.head(*where) == (new, 1)
    store.purge(*where, before_serial=0)
    store.set_state(*where, "degraded", "test")
    assert store.reset(*where, str(uuid.uuid4())).purged_messages == 1
    assert store.stream(*where).durable_state == "healthy"  # a reset clears degradation
    fresh = (where[0], where[1] + "-new")
    assert store.reset(*fresh, "s-1").previous_stream_id is None and store.head(*fresh) == ("s-1", 0)


def test_retention_by_age_and_count(store, where):
    from history.records import Retention

    by_age, by_count, kept = where, (where[0], where[1] + "-n"), (where[0], where[1] + "-k")
    seed(store, by_age, 10)
    seed(store, by_count, 10)
    seed(store, kept, 3)
    rules = {by_age: Retention(5, 0), by_count: Retention(0, 4)}
    now = T0 + 9000 + 1  # serial 10 was published at T0 + 9000
    purged = store.purge_expired(lambda app_id, channel: rules.get((app_id, channel)), now=now)
    assert purged == 5 + 6
    assert serials(store.page(query(by_age, direction="oldest_first"))) == [6, 7, 8, 9, 10]
    assert serials(store.page(query(by_count, direction="oldest_first"))) == [7, 8, 9, 10]
    assert serials(store.page(query(kept))) == [3, 2, 1]
    assert store.state(*by_count)["next_serial"] == 11


def test_stream_states(store, where):
    seed(store, where, 2)
    store.set_state(*where, "reset_required", "operator")
    state = store.page(query(where)).stream_state
    assert state["durable_state"] == "reset_required" and state["reset_required"] is True
    assert state["recovery_allowed"] is False and state["reason"] == "operator"
    assert isinstance(state["last_transition_at_ms"], int)


# --------------------------------------------------------------------------- conformance: cold recovery


def test_range_after_replays_exactly_the_missed_serials(store, where):
    stream_id = seed(store, where, 10)
    got = store.range_after(*where, stream_id, 6, limit=100)
    assert got.failure is None and got.contiguous and [m.serial for m in got.items] == [7, 8, 9, 10]
    assert (got.head, got.current_stream_id, got.oldest_available_serial, got.newest_available_serial) == (
        10,
        stream_id,
        1,
        10,
    )
    at_head = store.range_after(*where, stream_id, 10, limit=100)
    assert at_head.failure is None and at_head.items == []


def test_range_after_failures(store, where):
    stream_id = seed(store, where, 10)

    def failure(serial, limit=100, stream=stream_id, at=where):
        return store.range_after(*at, stream, serial, limit=limit).failure

    assert failure(3, stream="other") == ("stream_reset", "durable_stream_id_mismatch")
    assert failure(11) == ("continuity_unverifiable", "position_ahead_of_durable_stream")
    assert failure(2, limit=5) == ("position_expired", "recovery_window_exceeded")
    data = store.range_after(*where, stream_id, 2, limit=5).failure_data(where[1])
    assert data == {
        "channel": where[1],
        "code": "position_expired",
        "reason": "recovery_window_exceeded",
        "expected_stream_id": stream_id,
        "current_stream_id": stream_id,
        "oldest_available_serial": 1,
        "newest_available_serial": 10,
    }
    assert failure(0, stream="x", at=(where[0], "never")) == (
        "continuity_unverifiable",
        "durable_stream_head_unavailable",
    )
    store.purge(*where, before_serial=5)
    assert failure(2) == ("position_expired", "retained_history_floor_is_ahead_of_requested_serial")
    assert failure(4) is None
    # A hole (a failed batch's serials) breaks continuity for ranges across it only.
    gap = (where[0], where[1] + "-gap")
    gap_stream = seed(store, gap, 3)
    seed(store, gap, 2, stream_id=gap_stream, first=6)
    assert failure(1, stream=gap_stream, at=gap) == (
        "continuity_unverifiable",
        "durable_history_is_not_contiguous",
    )
    assert failure(6, stream=gap_stream, at=gap) is None
    assert store.page(query(gap)).continuity["complete"] is False
    store.purge(*where)
    assert failure(8) == ("position_expired", "durable_history_empty_after_prior_writes")
    assert failure(10) is None  # at the head: nothing to replay
    store.set_state(*where, "degraded", "test")
    assert failure(10) == ("persistence_unavailable", "history_stream_degraded")
    store.set_state(*where, "reset_required", "test")
    assert failure(10) == ("stream_reset", "durable_stream_reset_required")


def test_async_wrappers(store, where):
    stream_id = seed(store, where, 3)

    async def body():
        page = await store.apage(query(where))
        cold = await store.arange_after(*where, stream_id, 1, 10)
        return (
            page,
            cold,
            await store.ahead(*where),
            await store.astate(*where),
            await store.afind_by_key(*where, "x"),
        )

    page, cold, head, state, missing = asyncio.run(body())
    assert serials(page) == [3, 2, 1] and [m.serial for m in cold.items] == [2, 3]
    assert head == (stream_id, 3) and state["next_serial"] == 4 and missing is None


# --------------------------------------------------------------------------- group commit writer


class Spy:
    """Wraps a store: records which serials were committed, optionally blocks or fails appends."""

    def __init__(self, inner, fail: bool = False, gate=None) -> None:
        self.inner = inner
        self.fail = fail
        self.gate = gate
        self.committed: set[int] = set()
        self.batches: list[list[int]] = []

    def append(self, records) -> None:
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail:
            raise getattr(self, "error", None) or RuntimeError("database is down")
        self.inner.append(records)
        self.batches.append([r.serial for r in records])
        self.committed.update(r.serial for r in records)


def test_group_commit_batches_concurrent_writers(store, where):
    from history.sequencer.local import LocalSequencer
    from history.writer import GroupCommitWriter

    spy = Spy(store)
    writer = GroupCommitWriter(spy, max_batch=256, max_delay_ms=5)
    sequencer = LocalSequencer()
    resumed: list[int] = []

    async def publish() -> None:
        position = await sequencer.next(*where)
        await writer.write(record(*where, position.stream_id, position.serial))
        assert position.serial in spy.committed  # resumed only after its batch committed
        resumed.append(position.serial)

    async def body() -> None:
        await asyncio.gather(*(publish() for _ in range(100)))

    asyncio.run(body())
    stats = writer.stats()
    assert stats["records"] == 100 and stats["failed_batches"] == 0 and stats["queue_depth"] == 0
    assert stats["batches"] <= 5, stats  # far fewer batches than records
    assert stats["mean_batch_size"] == 100 / stats["batches"] and stats["max_batch_size"] >= 20
    assert sorted(resumed) == list(range(1, 101))
    # Batches committed in order: every serial of a batch is above every serial of earlier batches.
    flat = [s for batch in spy.batches for s in sorted(batch)]
    assert flat == list(range(1, 101))
    assert sum(all_pages(store, where, direction="oldest_first"), []) == list(range(1, 101))
    writer.close()


def test_batches_close_at_max_batch_and_commit_in_order(store, where):
    from history.writer import GroupCommitWriter

    spy = Spy(store)
    writer = GroupCommitWriter(spy, max_batch=64, max_delay_ms=50)
    stream_id = str(uuid.uuid4())
    done: list[int] = []

    async def one(serial: int) -> None:
        await writer.write(record(*where, stream_id, serial))
        done.append(serial)

    async def body() -> float:
        start = time.monotonic()
        await asyncio.gather(*(one(s) for s in range(1, 201)))
        return time.monotonic() - start

    asyncio.run(body())
    assert writer.stats()["max_batch_size"] <= 64 and writer.stats()["batches"] >= 4
    assert [len(b) for b in spy.batches][:3] == [64, 64, 64]
    # Callers resume batch by batch, in commit order.
    batch_of = {s: i for i, b in enumerate(spy.batches) for s in b}
    assert [batch_of[s] for s in done] == sorted(batch_of[s] for s in done)
    writer.close()


def test_a_lone_write_waits_at_most_the_batch_delay():
    from history.store.memory import MemoryStore
    from history.writer import GroupCommitWriter

    writer = GroupCommitWriter(MemoryStore(), max_batch=256, max_delay_ms=20)
    serial = iter(range(1, 10))

    async def body() -> float:
        start = time.monotonic()
        await writer.write(record("a", "c", "s", next(serial)))
        return time.monotonic() - start

    elapsed = asyncio.run(body())
    assert 0.015 <= elapsed < 1.0
    assert asyncio.run(body()) < 1.0  # a second event loop reuses the same writer
    writer.close()


def test_a_failed_batch_raises_to_every_caller_and_the_next_batch_works(store, where):
    from history.writer import GroupCommitWriter, HistoryWriteFailed

    spy = Spy(store, fail=True)
    writer = GroupCommitWriter(spy, max_batch=256, max_delay_ms=5)
    stream_id = str(uuid.uuid4())

    async def body() -> list:
        return await asyncio.gather(
            *(writer.write(record(*where, stream_id, s)) for s in range(1, 21)), return_exceptions=True
        )

    results = asyncio.run(body())
    assert all(isinstance(r, HistoryWriteFailed) for r in results), results
    assert all(isinstance(r.__cause__, RuntimeError) for r in results)
    assert writer.stats()["failed_batches"] >= 1 and writer.stats()["records"] == 0
    spy.fail = False
    asyncio.run(writer.write(record(*where, stream_id, 21)))  # a new loop, a healthy store
    assert serials(store.page(query(where))) == [21]
    writer.close()


def test_a_broken_connection_is_retried_once(store, where):
    from django.db import OperationalError

    from history.writer import GroupCommitWriter

    class Flaky(Spy):
        def append(self, records) -> None:
            if not self.batches and not getattr(self, "failed_once", False):
                self.failed_once = True
                raise OperationalError("server closed the connection unexpectedly")
            super().append(records)

    writer = GroupCommitWriter(Flaky(store), max_delay_ms=1)
    stream_id = str(uuid.uuid4())

    async def body() -> None:
        await asyncio.gather(*(writer.write(record(*where, stream_id, s)) for s in range(1, 6)))

    asyncio.run(body())
    assert writer.stats()["failed_batches"] == 0 and serials(store.page(query(where))) == [5, 4, 3, 2, 1]
    writer.close()


def test_failed_writes_give_their_serials_back_newest_first(where):
    """A database outage: the batch in the writer thread fails on a connection error, the records of
    its channel queued behind it fail with it, callers learn newest first, and each gives its serial
    back: the next publish takes the serial after the last stored one (no hole)."""
    import threading

    from django.db import OperationalError

    from history.records import Position
    from history.sequencer.local import LocalSequencer
    from history.store.memory import MemoryStore
    from history.writer import GroupCommitWriter, HistoryWriteFailed

    gate = threading.Event()
    spy = Spy(MemoryStore(), gate=gate)
    writer = GroupCommitWriter(spy, max_batch=4, max_delay_ms=0)
    sequencer = LocalSequencer()
    other = (where[0], where[1] + "-other")

    async def publish(channel: tuple[str, str]) -> int | None:
        position = await sequencer.next(*channel)
        try:
            await writer.write(record(*channel, position.stream_id, position.serial))
        except HistoryWriteFailed as exc:
            assert not exc.may_be_stored
            await sequencer.release(*channel, Position(position.stream_id, position.serial))
            return None
        return position.serial

    async def body() -> tuple[list, list]:
        spy.fail = False
        assert await publish(where) == 1
        spy.fail = True
        spy.error = OperationalError("server closed the connection unexpectedly")
        batch = [asyncio.ensure_future(publish(where)) for _ in range(4)]
        await asyncio.sleep(0.05)  # the first batch is in the (blocked) writer thread
        behind = [asyncio.ensure_future(publish(where)) for _ in range(6)]
        bystander = asyncio.ensure_future(publish(other))
        await asyncio.sleep(0)
        gate.set()
        failed = await asyncio.gather(*batch, *behind)
        spy.fail = False
        return failed, [await bystander, await publish(where)]

    failed, (bystander, after) = asyncio.run(body())
    assert failed == [None] * 10
    assert bystander is None or bystander == 1  # another channel's record is not failed for it
    assert after == 2, "a failed write left a hole in the stream"
    assert writer.stats()["failed_records"] >= 10
    writer.close()


def test_a_full_queue_refuses_writes_instead_of_growing():
    import threading

    from history.store.memory import MemoryStore
    from history.writer import GroupCommitWriter, HistoryBackpressure

    gate = threading.Event()
    writer = GroupCommitWriter(Spy(MemoryStore(), gate=gate), max_batch=4, max_delay_ms=0, capacity=8)

    async def body():
        first = [asyncio.ensure_future(writer.write(record("a", "c", "s", s))) for s in range(1, 5)]
        await asyncio.sleep(0.05)  # batch 1 is in the (blocked) writer thread
        queued = [asyncio.ensure_future(writer.write(record("a", "c", "s", s))) for s in range(5, 13)]
        await asyncio.sleep(0)
        with pytest.raises(HistoryBackpressure):
            await writer.write(record("a", "c", "s", 99))
        gate.set()
        await asyncio.gather(*first, *queued)

    asyncio.run(body())
    assert writer.stats()["records"] == 12
    writer.close()


# --------------------------------------------------------------------------- sequencers


async def _exercise_sequencer(seq, app_id: str, channel: str) -> None:
    from history.records import Position

    first = await seq.current(app_id, channel)
    assert first.serial == 0
    got = [await seq.next(app_id, channel) for _ in range(5)]
    assert [p.serial for p in got] == [1, 2, 3, 4, 5]
    assert {p.stream_id for p in got} == {first.stream_id}
    assert await seq.current(app_id, channel) == (first.stream_id, 5)
    many = await asyncio.gather(*(seq.next(app_id, channel) for _ in range(200)))
    assert sorted(p.serial for p in many) == list(range(6, 206))
    # A serial is given back only while it is the newest taken on its stream.
    taken = await seq.next(app_id, channel)
    assert not await seq.release(app_id, channel, Position(taken.stream_id, taken.serial - 1))
    assert not await seq.release(app_id, channel, Position("another-stream", taken.serial))
    assert await seq.release(app_id, channel, taken)
    assert await seq.next(app_id, channel) == taken
    new_stream = await seq.reset(app_id, channel)
    assert new_stream != first.stream_id
    assert await seq.next(app_id, channel) == (new_stream, 1)
    other = await seq.next(app_id, channel + "-other")
    assert other.serial == 1 and other.stream_id not in (first.stream_id, new_stream)


def _seeded(seq_factory, store, where) -> None:
    """A channel with durable history continues its stream after a restart (a fresh sequencer)."""
    stream_id = seed(store, where, 7)
    store.purge(*where)  # even with every row purged, serials never go back

    async def body() -> None:
        seq = seq_factory(store.ahead)
        assert await seq.current(*where) == (stream_id, 7)
        assert await seq.next(*where) == (stream_id, 8)
        await seq.close()

    asyncio.run(body())


def test_local_sequencer(where):
    from history.sequencer.local import LocalSequencer

    asyncio.run(_exercise_sequencer(LocalSequencer(), *where))


def test_local_sequencer_is_seeded_from_the_durable_head(store, where):
    from history.sequencer.local import LocalSequencer

    _seeded(lambda loader: LocalSequencer(head_loader=loader), store, where)


def test_sequencer_driver_selection():
    from history.sequencer import sequencer_path

    assert sequencer_path({"ADAPTER_DRIVER": "local", "SEQUENCER_DRIVER": ""}).endswith("LocalSequencer")
    assert sequencer_path({"ADAPTER_DRIVER": "redis", "SEQUENCER_DRIVER": ""}).endswith("RedisSequencer")
    assert sequencer_path({"ADAPTER_DRIVER": "redis", "SEQUENCER_DRIVER": "local"}).endswith("LocalSequencer")
    assert sequencer_path({"SEQUENCER_DRIVER": "my.Seq"}) == "my.Seq"


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        message = f"Redis is not reachable at {REDIS_URL}: {exc}"
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail(message)
        pytest.skip(message)
    prefix = f"test-hist-{uuid.uuid4().hex[:8]}:"
    yield prefix
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_redis_sequencer(redis_prefix, where):
    from history.sequencer.redis import RedisSequencer

    seq = RedisSequencer(url=REDIS_URL, prefix=redis_prefix)

    async def body() -> None:
        await _exercise_sequencer(seq, *where)
        await seq.close()

    asyncio.run(body())

    async def again() -> None:  # a new event loop gets its own connection; state is in Redis
        assert (await seq.current(*where)).serial == 1
        await seq.close()

    asyncio.run(again())


def test_redis_sequencer_is_seeded_from_the_durable_head(redis_prefix, store, where):
    from history.sequencer.redis import RedisSequencer

    _seeded(
        lambda loader: RedisSequencer(head_loader=loader, url=REDIS_URL, prefix=redis_prefix), store, where
    )


_HAMMER = r"""
import asyncio, json, sys, time
sys.path.insert(0, sys.argv[1])
from history.sequencer.redis import RedisSequencer

async def main(url, prefix, start_at):
    seq = RedisSequencer(url=url, prefix=prefix)
    await seq.current("app", "hammered")  # connect before the start signal
    time.sleep(max(0.0, start_at - time.time()))

    async def task():
        got = []
        for _ in range(250):
            position = await seq.next("app", "hammered")
            got.append([position.stream_id, position.serial])
        return got

    results = await asyncio.gather(*(task() for _ in range(8)))
    await seq.close()
    print(json.dumps(results))

asyncio.run(main(sys.argv[2], sys.argv[3], float(sys.argv[4])))
"""


def test_redis_sequencer_two_processes_one_channel(redis_prefix):
    start_at = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _HAMMER, str(ROOT), REDIS_URL, redis_prefix, str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out))
    streams = {stream for tasks in outputs for seq in tasks for stream, _ in seq}
    assert len(streams) == 1
    everything = []
    for tasks in outputs:
        for seq in tasks:
            numbers = [serial for _, serial in seq]
            assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)  # strictly increasing
            everything.extend(numbers)
    assert sorted(everything) == list(range(1, 2 * 8 * 250 + 1))  # no duplicate, no gap
    # Both processes really interleaved on the channel.
    firsts = [max(s for seq in tasks for _, s in seq) for tasks in outputs]
    lasts = [min(s for seq in tasks for _, s in seq) for tasks in outputs]
    assert max(lasts) < min(firsts)


# --------------------------------------------------------------------------- policy


@pytest.fixture
def server_defaults(monkeypatch):
    from realtime.conf import server_settings

    values = server_settings()
    for key, value in {
        "HISTORY_ENABLED": False,
        "HISTORY_REWIND_ENABLED": True,
        "HISTORY_RETENTION_WINDOW_SECONDS": 86400,
        "HISTORY_MAX_MESSAGES_PER_CHANNEL": 0,
        "HISTORY_MAX_PAGE_SIZE": 100,
    }.items():
        monkeypatch.setitem(values, key, value)
    return values


def test_policy_resolves_namespace_then_app_then_server(server_defaults, monkeypatch):
    from apps_admin.models import App
    from history import policy
    from history.records import Retention

    plain = App(id="p1")
    assert not policy.history_enabled(plain, "orders")
    assert not policy.rewind_enabled(plain, "orders")
    assert policy.retention(plain, "orders") == Retention(86400, 0)
    monkeypatch.setitem(server_defaults, "HISTORY_ENABLED", True)
    assert policy.history_enabled(plain, "orders") and policy.rewind_enabled(plain, "orders")
    monkeypatch.setitem(server_defaults, "HISTORY_ENABLED", False)

    app = App(
        id="p2",
        history={"enabled": True, "retention_window_seconds": 60, "max_messages_per_channel": None},
        channel_namespaces=[
            {"name": "chat", "history": {"enabled": False}},
            {
                "name": "feed",
                "history": {"rewind_enabled": False, "max_messages_per_channel": 50, "max_page_size": 20},
            },
            {"name": "bare"},
        ],
    )
    assert policy.history_enabled(app, "orders") and policy.retention(app, "orders") == Retention(60, 0)
    assert not policy.history_enabled(app, "chat:room-1")
    assert not policy.history_enabled(app, "private-chat:room-1")
    assert policy.history_enabled(app, "feed:news") and not policy.rewind_enabled(app, "feed:news")
    assert policy.retention(app, "presence-feed:x") == Retention(60, 50)
    assert policy.max_page_size(app, "feed:news") == 20 and policy.max_page_size(app, "orders") == 100
    assert policy.history_enabled(app, "bare:x")  # a namespace without overrides inherits the app
    assert policy.history_enabled(app, "unknown:x")  # (names are validated elsewhere)


def test_policy_forced_on_by_annotations(server_defaults, monkeypatch):
    from apps_admin.models import App
    from history import policy

    app = App(
        id="p3", annotations_enabled=True, channel_namespaces=[{"name": "n", "annotations_enabled": False}]
    )
    assert not policy.history_enabled(app, "x")  # annotations off server-wide
    monkeypatch.setitem(server_defaults, "ANNOTATIONS_ENABLED", True)
    assert policy.history_enabled(app, "x") and not policy.history_enabled(app, "n:x")
