"""The WebSocket edge: connections, the per-process registry, pushes."""
