"""Norn llm."""
