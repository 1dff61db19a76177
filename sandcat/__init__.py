"""Sandcat: a fast, wire-compatible Python re-implementation of the sandcat IM backend."""

__version__ = "0.1.0"
