"""``PendingMetric``: updates wait for ``flush`` and then read exactly as direct updates would."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from realtime.node import metrics
from realtime.node.metrics import PendingMetric


def _pair(kind: type, name: str, labels: tuple[str, ...] = (), **kwargs) -> tuple:
    direct_registry, pending_registry = CollectorRegistry(), CollectorRegistry()
    direct = kind(name, "help", labels, registry=direct_registry, **kwargs)
    pending = PendingMetric(kind(name, "help", labels, registry=pending_registry, **kwargs))
    return direct, pending, direct_registry, pending_registry


def test_counters_and_histograms_match_direct_updates_once_flushed() -> None:
    c_direct, c_pending, c_reg, c_preg = _pair(Counter, "calls", ("method", "status"))
    h_direct, h_pending, h_reg, h_preg = _pair(Histogram, "latency", ("view",), buckets=(0.01, 0.1, 1))
    u_direct, u_pending, u_reg, u_preg = _pair(Histogram, "size", buckets=(10, 100))
    for i in range(50):
        status = "200" if i % 3 else "500"
        c_direct.labels(method="POST", status=status).inc()
        c_pending.labels(method="POST", status=status).inc()
        c_direct.labels("GET", 200).inc(2)
        c_pending.labels("GET", 200).inc(2)
        value = i / 40  # on, between and past the bounds
        h_direct.labels(view="events").observe(value)
        h_pending.labels(view="events").observe(value)
        u_direct.observe(i * 3)
        u_pending.observe(i * 3)
        for bound in (0.01, 0.1, 1):
            h_direct.labels(view="edge").observe(bound)
            h_pending.labels(view="edge").observe(bound)

    # Nothing reached prometheus_client yet (a label set's series exists from its first use, at 0).
    assert c_preg.get_sample_value("calls_total", {"method": "GET", "status": "200"}) == 0
    assert u_preg.get_sample_value("size_count") == 0
    for pending in (c_pending, h_pending, u_pending):
        pending.flush()
    for direct_reg, pending_reg in ((c_reg, c_preg), (h_reg, h_preg), (u_reg, u_preg)):
        assert generate_latest(pending_reg) == generate_latest(direct_reg)

    c_pending.flush()  # a second flush adds nothing
    assert generate_latest(c_preg) == generate_latest(c_reg)


def test_the_module_flush_hands_over_every_pending_metric() -> None:
    registry = CollectorRegistry()
    pending = PendingMetric(Counter("handed_over", "help", ["app"], registry=registry))
    pending.labels(app="a").inc(3)
    metrics.flush(None)
    assert registry.get_sample_value("handed_over_total", {"app": "a"}) == 3


def test_updates_from_threads_are_not_lost() -> None:
    registry = CollectorRegistry()
    pending = PendingMetric(Counter("threaded", "help", registry=registry))

    def bump() -> None:
        for _ in range(20_000):
            pending.inc()

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(50):
        pending.flush()  # flushing while others add
    for thread in threads:
        thread.join()
    pending.flush()
    assert registry.get_sample_value("threaded_total") == 80_000


def test_one_label_set_passed_in_different_spellings_is_one_series() -> None:
    direct, pending, direct_registry, pending_registry = _pair(Counter, "spelled", ("method", "status"))
    spellings = [
        lambda m: m.labels(method="POST", status="200"),
        lambda m: m.labels(status="200", method="POST"),
        lambda m: m.labels("POST", "200"),
        lambda m: m.labels("POST", 200),
        lambda m: m.labels(method="POST", status=200),
    ]
    for spell in spellings * 3:
        spell(direct).inc()
        spell(pending).inc()
    assert len({id(spell(pending)) for spell in spellings}) == 1
    metrics.flush(None)
    assert generate_latest(pending_registry) == generate_latest(direct_registry)
    assert b'spelled_total{method="POST",status="200"} 15.0' in generate_latest(pending_registry)
