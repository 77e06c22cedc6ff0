"""Norn bench."""
