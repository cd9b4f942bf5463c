"""Placeholder: the bitget protocol module is being written (it will call registry.register)."""
