"""Helpers over engine tables, now in ``rules/tables.py`` (re-exported for the model)."""

from __future__ import annotations

from norn.rules.tables import lookup, room

__all__ = ["lookup", "room"]
