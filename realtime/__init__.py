"""The realtime server: WebSocket protocols, node-local registry, publish pipeline, HTTP API."""
