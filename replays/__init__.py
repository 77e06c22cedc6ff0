"""Norn replays."""
