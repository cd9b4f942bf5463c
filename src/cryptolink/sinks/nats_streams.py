"""The JetStream stream the NATS sink publishes into: its settings from :class:`~cryptolink.config.NatsConfig`,
and the start-time check that it exists and matches (:func:`ensure_stream`).

Stream settings (https://docs.nats.io/nats-concepts/jetstream/streams) and how nats-py carries them
(:class:`nats.js.api.StreamConfig`):

======================  ====================  ==================================================================
config key              nats-py field         unit / meaning
======================  ====================  ==================================================================
``name``                ``name``              stream name
``subjects``            ``subjects``          default ``<subject_root>.>`` (:attr:`NatsConfig.stream_subjects`)
``retention``           ``retention``         ``limits`` / ``interest`` / ``workqueue``
``storage``             ``storage``           ``file`` / ``memory``
``replicas``            ``num_replicas``      copies in a cluster
``max_age_s``           ``max_age``           seconds (nats-py sends nanoseconds); 0: no age limit
``max_bytes``           ``max_bytes``         bytes; ``None`` -> -1 (no limit)
``max_msgs``            ``max_msgs``          messages; ``None`` -> -1 (no limit)
``max_msg_size``        ``max_msg_size``      bytes, headers included (a larger message is refused: error 10054)
``duplicate_window_s``  ``duplicate_window``  seconds (nats-py sends nanoseconds): ``Nats-Msg-Id`` memory
``discard``             ``discard``           ``old`` / ``new``
======================  ====================  ==================================================================

Modes (``nats.streams``): ``create`` makes the stream when it is missing, ``check`` requires it to exist, ``off``
looks at nothing. In both ``create`` and ``check`` an existing stream must match every setting above, and its
subjects must cover ours (it may capture more); cryptolink never changes an existing stream. A mismatch raises
:class:`~cryptolink.errors.NatsError` naming every difference at once.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from cryptolink.config import NatsConfig
from cryptolink.errors import NatsError

__all__ = [
    "EnsureResult",
    "NatsError",
    "ensure_stream",
    "stream_config",
    "stream_differences",
    "subject_covers",
]

EnsureResult = Literal["created", "matches", "unchecked"]
"""What :func:`ensure_stream` did."""

_STREAM_NAME_IN_USE = 10058
"""JSStreamNameExistErr: another publisher created the stream between our lookup and our create
(https://docs.nats.io/reference/jetstream/errors)."""


def stream_config(cfg: NatsConfig) -> StreamConfig:
    """The nats-py stream configuration of ``cfg.stream`` (see the module docstring's table for units)."""
    s = cfg.stream
    return StreamConfig(
        name=s.name,
        subjects=cfg.stream_subjects,
        retention=RetentionPolicy(s.retention),
        storage=StorageType(s.storage),
        num_replicas=s.replicas,
        max_age=s.max_age_s,
        max_bytes=-1 if s.max_bytes is None else s.max_bytes,
        max_msgs=-1 if s.max_msgs is None else s.max_msgs,
        max_msg_size=s.max_msg_size,
        duplicate_window=s.duplicate_window_s,
        discard=DiscardPolicy(s.discard),
    )


def subject_covers(pattern: str, subject: str) -> bool:
    """Whether every subject matched by ``subject`` (which may hold wildcards) is matched by ``pattern``.

    ``*`` matches one token, ``>`` one or more trailing tokens
    (https://docs.nats.io/nats-concepts/subjects#wildcards): ``a.>`` covers ``a.b.*`` and ``a.>``; ``a.*`` covers
    ``a.b`` but not ``a.>``.
    """
    p = pattern.split(".")
    s = subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s):
            return False
        if s[i] == ">":
            return False
        if token != "*" and token != s[i]:
            return False
    return len(p) == len(s)


def _text(value: object) -> str:
    if isinstance(value, Enum):
        value = value.value
    return str(value)


def _seconds(value: float | None) -> str:
    return "no limit" if not value else f"{value:g} s"


def _limit(value: int | None) -> str:
    return "no limit" if value is None or value < 0 else str(value)


def stream_differences(have: StreamConfig, want: StreamConfig) -> list[str]:
    """Every setting in which the existing stream ``have`` differs from ``want``, as ``"<key> is <existing>,
    config says <wanted>"`` (config key names, units as in the module docstring); subjects differ when some
    subject of ``want`` is not covered by the existing ones."""
    out: list[str] = []
    missing = [w for w in want.subjects or [] if not any(subject_covers(h, w) for h in have.subjects or [])]
    if missing:
        out.append(f"subjects are {have.subjects}, which do not cover {missing}")
    for key, h, w in (
        ("retention", have.retention, want.retention),
        ("storage", have.storage, want.storage),
        ("discard", have.discard, want.discard),
    ):
        if _text(h) != _text(w):
            out.append(f"{key} is {_text(h)}, config says {_text(w)}")
    if (have.num_replicas or 1) != (want.num_replicas or 1):
        out.append(f"replicas is {have.num_replicas}, config says {want.num_replicas}")
    for key, hs, ws in (
        ("max_age", have.max_age, want.max_age),
        ("duplicate_window", have.duplicate_window, want.duplicate_window),
    ):
        if abs((hs or 0.0) - (ws or 0.0)) > 1e-6:
            out.append(f"{key} is {_seconds(hs)}, config says {_seconds(ws)}")
    for key, hn, wn in (
        ("max_bytes", have.max_bytes, want.max_bytes),
        ("max_msgs", have.max_msgs, want.max_msgs),
        ("max_msg_size", have.max_msg_size, want.max_msg_size),
    ):
        if _limit(hn) != _limit(wn):
            out.append(f"{key} is {_limit(hn)}, config says {_limit(wn)}")
    return out


async def ensure_stream(js: JetStreamContext, cfg: NatsConfig) -> EnsureResult:
    """Make sure the stream of ``cfg`` is there and as configured (mode ``cfg.streams``).

    Returns:
        ``"created"`` (it was missing, mode ``create``), ``"matches"`` (it exists with our settings) or
        ``"unchecked"`` (mode ``off``: nothing asked).

    Raises:
        NatsError: the stream differs from ``cfg.stream`` (every differing setting named), is missing in mode
            ``check``, cannot be created (e.g. its subjects overlap another stream's), or JetStream does not
            answer (not enabled on the server, no responders, timeout).
    """
    if cfg.streams == "off":
        return "unchecked"
    want = stream_config(cfg)
    name = cfg.stream.name
    try:
        try:
            info = await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            if cfg.streams == "check":
                raise NatsError(
                    f"stream {name} does not exist (nats.streams is check): create it, or set nats.streams "
                    "to create"
                ) from None
            try:
                await js.add_stream(want)
                return "created"
            except nats.js.errors.APIError as exc:
                if exc.err_code != _STREAM_NAME_IN_USE:
                    raise NatsError(
                        f"stream {name} could not be created: {exc.description} (error {exc.err_code})"
                    ) from exc
            info = await js.stream_info(name)  # created by another publisher meanwhile: check it
    except NatsError:
        raise
    except (nats.js.errors.Error, nats.errors.Error, TimeoutError) as exc:
        raise NatsError(f"stream {name} could not be looked up: {type(exc).__name__} {exc}".rstrip()) from exc
    problems = stream_differences(info.config, want)
    if problems:
        raise NatsError(f"stream {name}: {'; '.join(problems)}")
    return "matches"
