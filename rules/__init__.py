"""Norn rules."""
