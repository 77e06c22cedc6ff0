"""Norn engine."""
