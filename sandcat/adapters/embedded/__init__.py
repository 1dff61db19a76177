"""Embedded mode: SQLite, in-process bus, counters and presence, a local folder for files."""
