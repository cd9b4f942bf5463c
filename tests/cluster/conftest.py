"""Fixtures of the cluster tests: a simulator of binance spot and USD-M, and a lease bucket name of the test's own
(the bucket is deleted afterwards from the NATS server at 127.0.0.1:4222)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import nats
import nats.js.errors
import pytest

from cryptolink.simulator import Simulator

NATS_URL = "nats://127.0.0.1:4222"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(exchanges=["binance", "binanceusdm"], speed=1.0) as s:
        yield s


@pytest.fixture
async def bucket() -> AsyncIterator[str]:
    name = f"cltest_{uuid.uuid4().hex[:12]}"
    yield name
    nc = await nats.connect(NATS_URL, connect_timeout=2)
    try:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_key_value(name)
    finally:
        await nc.close()
