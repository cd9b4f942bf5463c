"""The JetStream stream of the NATS sink: settings from the configuration, and the start-time check against the
real server at 127.0.0.1:4222 (a stream of each test's own, deleted afterwards)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import nats
import nats.js.errors
import pytest
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from cryptolink.config import NatsConfig
from cryptolink.errors import NatsError
from cryptolink.sinks.nats_streams import ensure_stream, stream_config, subject_covers

NATS_URL = "nats://127.0.0.1:4222"


def config(**kw: Any) -> NatsConfig:
    uid = uuid4().hex[:12]
    stream = {"name": f"CLTEST_{uid}", "storage": "memory", **kw.pop("stream", {})}
    return NatsConfig.model_validate({"subject_root": f"cltest{uid}", "stream": stream, **kw})


@contextlib.asynccontextmanager
async def jetstream(*names: str) -> AsyncIterator[JetStreamContext]:
    """A JetStream context on the machine's server; the streams ``names`` are deleted afterwards."""
    nc = await nats.connect(NATS_URL)
    try:
        yield nc.jetstream()
    finally:
        js = nc.jetstream()
        for name in names:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(name)
        await nc.close()


def test_stream_config_carries_every_setting_in_nats_py_units() -> None:
    cfg = config(
        max_attempts=3,
        stream={"max_age_s": 3600, "duplicate_window_s": 30, "max_msgs": 5000, "discard": "new"},
    )
    sc = stream_config(cfg)
    assert sc.name == cfg.stream.name
    assert sc.subjects == [f"{cfg.subject_root}.>"]
    assert (sc.retention, sc.storage, sc.discard) == (
        RetentionPolicy.LIMITS,
        StorageType.MEMORY,
        DiscardPolicy.NEW,
    )
    assert (sc.num_replicas, sc.max_msgs, sc.max_bytes, sc.max_msg_size) == (1, 5000, 1024**3, 1024 * 1024)
    wire = sc.as_dict()  # what goes to the server: durations in nanoseconds
    assert (wire["max_age"], wire["duplicate_window"]) == (3600 * 10**9, 30 * 10**9)
    unlimited = stream_config(config(stream={"max_bytes": None, "max_age_s": 0}))
    assert (unlimited.max_bytes, unlimited.max_msgs, unlimited.as_dict()["max_age"]) == (-1, -1, 0)


@pytest.mark.parametrize(
    ("pattern", "subject", "covered"),
    [
        ("a.>", "a.>", True),
        ("a.>", "a.b.*", True),
        ("a.>", "a", False),
        (">", "a.b", True),
        ("a.*", "a.b", True),
        ("a.*", "a.*", True),
        ("a.*", "a.>", False),
        ("a.*", "a.b.c", False),
        ("a.b", "a.*", False),
        ("a.b", "a.b", True),
        ("a.b.>", "a.>", False),
    ],
)
def test_subject_coverage(pattern: str, subject: str, covered: bool) -> None:
    assert subject_covers(pattern, subject) is covered


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_created_when_missing_then_found_matching() -> None:
    cfg = config()
    async with jetstream(cfg.stream.name) as js:
        assert await ensure_stream(js, cfg) == "created"
        info = await js.stream_info(cfg.stream.name)
        assert info.config.subjects == [f"{cfg.subject_root}.>"]
        assert (info.config.max_age, info.config.duplicate_window) == (86_400.0, 120.0)
        assert await ensure_stream(js, cfg) == "matches"
        checking = config(streams="check", subject_root=cfg.subject_root, stream=cfg.stream.model_dump())
        assert await ensure_stream(js, checking) == "matches"


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_an_existing_stream_that_differs_is_refused_naming_every_difference() -> None:
    cfg = config()
    name = cfg.stream.name
    async with jetstream(name) as js:
        await js.add_stream(
            StreamConfig(
                name=name,
                subjects=[f"{cfg.subject_root}.trades.>"],
                storage=StorageType.MEMORY,
                max_age=3600,
                duplicate_window=60,
                max_msg_size=2048,
                max_bytes=-1,
                discard=DiscardPolicy.NEW,
            )
        )
        with pytest.raises(NatsError) as refused:
            await ensure_stream(js, cfg)
        text = str(refused.value)
        assert text.startswith(f"stream {name}: ")
        for part in (
            f"subjects are ['{cfg.subject_root}.trades.>'], which do not cover ['{cfg.subject_root}.>']",
            "discard is new, config says old",
            "max_age is 3600 s, config says 86400 s",
            "duplicate_window is 60 s, config says 120 s",
            "max_bytes is no limit, config says 1073741824",
            "max_msg_size is 2048, config says 1048576",
        ):
            assert part in text
        assert text.count("config says") == 5  # nothing else named: storage, retention, replicas match
        info = await js.stream_info(name)
        assert (info.config.max_age, info.config.discard) == (3600.0, "new")  # never changed by the check


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_a_wider_existing_stream_covers_narrower_configured_subjects() -> None:
    root = f"cltest{uuid4().hex[:12]}"
    cfg = config(subject_root=root, stream={"subjects": [f"{root}.trades.>", f"{root}.book.*.BTC-USDT"]})
    async with jetstream(cfg.stream.name) as js:
        wide = config(subject_root=root, stream={**cfg.stream.model_dump(), "subjects": None})
        assert await ensure_stream(js, wide) == "created"
        assert await ensure_stream(js, cfg) == "matches"


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_check_mode_refuses_a_missing_stream_and_off_mode_looks_at_nothing() -> None:
    cfg = config(streams="check")
    async with jetstream(cfg.stream.name) as js:
        with pytest.raises(
            NatsError, match=rf"stream {cfg.stream.name} does not exist \(nats.streams is check\)"
        ):
            await ensure_stream(js, cfg)
        off = config(streams="off", stream={"name": cfg.stream.name})
        assert await ensure_stream(js, off) == "unchecked"
        with pytest.raises(nats.js.errors.NotFoundError):  # neither mode created it
            await js.stream_info(cfg.stream.name)
