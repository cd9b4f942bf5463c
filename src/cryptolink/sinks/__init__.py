"""Consumers that persist or forward bus events.

:class:`~cryptolink.sinks.jsonl.JsonlSink` writes JSON Lines files.
"""

from cryptolink.sinks.jsonl import JsonlSink, JsonlSinkStats, read_jsonl

__all__ = ["JsonlSink", "JsonlSinkStats", "read_jsonl"]
