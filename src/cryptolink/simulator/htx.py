"""Placeholder: the htx protocol module is being written (it will call registry.register)."""
