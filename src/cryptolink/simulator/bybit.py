"""Placeholder: the bybit protocol module is being written (it will call registry.register)."""
