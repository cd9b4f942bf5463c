"""Consumers that persist or forward bus events.

Every sink follows the :class:`~cryptolink.sinks.base.Sink` protocol; :class:`~cryptolink.sinks.jsonl.JsonlSink`
writes JSON Lines files.
"""

from cryptolink.sinks.base import Sink, SinkHealth
from cryptolink.sinks.jsonl import JsonlSink, JsonlSinkStats, read_jsonl

__all__ = ["JsonlSink", "JsonlSinkStats", "Sink", "SinkHealth", "read_jsonl"]
