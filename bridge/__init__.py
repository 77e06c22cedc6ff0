"""Norn bridge."""
