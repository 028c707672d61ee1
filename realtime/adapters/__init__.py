"""Fan-out adapters: how a broadcast reaches every node. One interface, one module per driver."""
