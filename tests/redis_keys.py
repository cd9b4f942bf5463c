"""Test keys in the real Redis server: a prefix of one test whose keys are all deleted afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from uuid import uuid4

import redis.asyncio as aioredis

__all__ = ["REDIS_URL", "redis_prefix"]

REDIS_URL = "redis://127.0.0.1:6379/0"
"""The machine's Redis server (``.ci/run`` starts one where none answers)."""


@contextlib.asynccontextmanager
async def redis_prefix(stem: str = "cltest") -> AsyncIterator[str]:
    """A key prefix of one test (``<stem>-<random hex>``); every key under it is deleted afterwards."""
    prefix = f"{stem}-{uuid4().hex}"
    try:
        yield prefix
    finally:
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()
