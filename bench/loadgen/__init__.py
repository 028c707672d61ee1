"""Load generator for Pusher-protocol servers (protocol 7 WebSocket + signed HTTP API).

Python >= 3.11, the standard library, and the project's ``realtime.protocol`` (pure Python, no
Django) for request signing, so the bench signs exactly as the server verifies. Three scenarios,
each bounded in time and count:

* ``fanout``      S subscribers on one channel, one publisher over the HTTP API; throughput, loss,
                  duplicates, end-to-end latency, server CPU per delivery.
* ``connections`` N sockets over C channels; connect rate and latency, server RSS and CPU per
                  connection, then a liveness check (one event per channel reaches every socket).
* ``churn``       M sockets loop subscribe -> subscription_succeeded -> unsubscribe; rate and RTT.

Subscribers can be spread over ``--processes`` worker processes; results are aggregated. Latency
is measured with CLOCK_MONOTONIC (``time.monotonic_ns``), which is system-wide on Linux, so the
publisher (main process) and the receivers (any worker process) read the same clock.

Run ``python -m bench.loadgen <scenario> --help`` from the repository root for the options;
bench/README.md explains the figures.
"""
