"""Scheduled jobs, run inside the process that owns them."""
