"""Placeholder: the gate protocol module is being written (it will call registry.register)."""
