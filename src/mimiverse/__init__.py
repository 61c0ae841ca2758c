"""Mimiverse: a self-hosted, privacy-first AI coding workspace."""

__version__ = "0.1.0"
