"""Mesh devices as separate processes in Linux network namespaces (root only)."""
