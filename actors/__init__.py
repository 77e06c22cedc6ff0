"""Norn actors."""
