"""Adapters: one folder per backend, each implementing the ports of ``sandcat.ports``."""
