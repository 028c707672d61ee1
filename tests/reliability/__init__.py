"""Faults and bad inputs: each test reproduces one way the server could lose data, keep a ghost, or
let a client in, against real servers over real sockets (Redis and PostgreSQL cut with
``realtime.testing.TcpProxy``), bounded in time, and prints the figure it measured."""
