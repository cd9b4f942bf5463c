"""Process-wide logging: structlog over the standard library, secrets redacted, connection events as records.

:func:`configure_logging` installs one handler on the root logger whose formatter is structlog's
:class:`~structlog.stdlib.ProcessorFormatter`, so every ``logging.getLogger(...).info("%s ...", ...)`` call of
the code base and of its libraries (uvicorn, aiohttp) and every structlog logger render the same way:

- ``json`` (``cryptolink run``/``record``): one JSON object per line with ``timestamp`` (ISO 8601, UTC),
  ``level``, ``logger``, ``event`` (the rendered message), the record's structured fields, and ``exception``
  (the formatted traceback) when there is one.
- ``console`` (``cryptolink demo``/``simulate``): ``timestamp [level] event  key=value ...`` lines, the
  traceback below.

Every configured secret (:func:`config_secrets`: exchange ``api_key``/``api_secret``, ``status.token``, a
password in ``status.redis_url``) is replaced by ``***`` in every field, the message and the traceback
included, before rendering, and once more in the rendered line, in each form it may take there
(:func:`secret_forms`: as given, percent-encoded as Python and browsers encode it, in upper- or lowercase hex,
as a ``repr`` and as a JSON string). Whatever the secrets, the value of any ``token=`` query parameter in a
rendered line becomes ``***`` (:func:`redact_query_tokens`): a token a client sent in an address (the
dashboard's ``?token=``), right or wrong, however it was encoded.

:func:`log_connection_event` turns a :class:`~cryptolink.engine.events.ConnectionEvent` into one record of the
``cryptolink.events`` logger with the fields ``exchange``, ``feed``, ``connection``, ``event_type``,
``severity``, ``state``, ``cause``, ``attempt``, ``latency_ms``, ``stream`` and ``symbol`` (see
:data:`EVENT_FIELDS`); ``cryptolink run`` registers it with
:meth:`cryptolink.manager.ExchangeManager.add_event_listener`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, TextIO
from urllib.parse import quote, quote_plus

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from cryptolink.engine.events import ConnectionEvent, ConnectionEventType, Severity
from cryptolink.redact import url_secrets

if TYPE_CHECKING:
    from cryptolink.config import CryptolinkConfig

__all__ = [
    "EVENTS_LOGGER",
    "EVENT_FIELDS",
    "REDACTED",
    "LogFormat",
    "Redactor",
    "config_secrets",
    "configure_logging",
    "event_fields",
    "log_connection_event",
    "redact_query_tokens",
    "secret_forms",
]

LogFormat = Literal["json", "console"]

REDACTED: Final = "***"
"""What a secret value is replaced by."""

EVENTS_LOGGER: Final = "cryptolink.events"
"""Name of the logger connection events are written to."""

EVENT_FIELDS: Final = (
    "exchange",
    "feed",
    "connection",
    "event_type",
    "severity",
    "state",
    "cause",
    "attempt",
    "latency_ms",
    "stream",
    "symbol",
)
"""Structured fields of a connection-event record (``None`` when the event has no such detail)."""

_QUIET_LOGGERS: Final = {
    "aiohttp.access": logging.WARNING,
    # ccxt logs every request's headers (signed ones: API key, passphrase) at DEBUG; a member added by a reload
    # carries secrets the redactor was never told about
    "ccxt": logging.INFO,
}
"""Loggers kept at a higher level than the service's: they add nothing to a service log."""

_DROPPED_EXTRAS: Final = frozenset({"color_message"})  # uvicorn's ANSI-coloured copy of the message
_STANDARD_RECORD = logging.LogRecord("", 0, "", 0, "", (), None)
_RECORD_KEYS: Final = frozenset({*_STANDARD_RECORD.__dict__, "message", "asctime"})

_SEVERITY_LEVELS: Final = {
    Severity.INFO: logging.INFO,
    Severity.WARNING: logging.WARNING,
    Severity.ERROR: logging.ERROR,
    Severity.CRITICAL: logging.CRITICAL,
}

_events_log = logging.getLogger(EVENTS_LOGGER)


# ----------------------------------------------------------------------------------------------- redaction


_URI_COMPONENT_SAFE: Final = "-_.!~*'()"
"""What JavaScript's ``encodeURIComponent`` leaves as it is (the dashboard encodes its token with it)."""
_PERCENT_ESCAPE = re.compile(r"%[0-9A-F]{2}")


def secret_forms(secret: str) -> set[str]:
    """Every form ``secret`` may take in a log line: as given; percent-encoded as ``quote(s, safe="")``,
    ``quote(s)``, ``quote_plus(s)`` and JavaScript's ``encodeURIComponent`` (``!~*'()`` kept), each with upper-
    and lowercase hex; the inside of its ``repr``, of its UTF-8 bytes' ``repr`` (``\\xc3\\xb6``) and of its JSON
    string (ASCII-escaped or not). Empty for an empty secret."""
    if not secret:
        return set()
    forms = {secret}
    for encoded in (
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret, safe=""),
        quote(secret, safe=_URI_COMPONENT_SAFE),
    ):
        forms.add(encoded)
        forms.add(_PERCENT_ESCAPE.sub(lambda m: m.group(0).lower(), encoded))
    forms.add(repr(secret)[1:-1])
    forms.add(repr(secret.encode())[2:-1])
    forms.add(json.dumps(secret)[1:-1])
    forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    forms.discard("")
    return forms


_QUERY_TOKEN: Final = re.compile(r"(token(?:=|%3d))(?:(?!%26)[^&\s\"#\\])+", re.IGNORECASE)
"""A ``token`` query parameter (``token=``, or ``token%3D`` inside an encoded address) and its value, up to the
next parameter (``&``, ``%26``), fragment, whitespace, double quote or backslash (a JSON escape)."""


def redact_query_tokens(text: str) -> str:
    """``text`` with the value of every ``token=`` query parameter (``access_token=`` too) replaced by
    :data:`REDACTED`, whatever its encoding: ``GET /ws/status?token=Tk%20ab!c`` -> ``GET /ws/status?token=***``.
    """
    return _QUERY_TOKEN.sub(lambda m: m.group(1) + REDACTED, text)


class Redactor:
    """Replaces secret values by :data:`REDACTED` in strings and, as a structlog processor, in every value of
    an event dict (nested mappings and sequences included; other objects are replaced by their redacted
    ``repr``, which is what the renderers would print).

    Each secret is matched in every form of :func:`secret_forms` (percent-encoded as in a URL, escaped as in a
    ``repr`` or JSON). Empty secrets are ignored; longer needles are replaced first so that a secret
    containing another is hidden whole.

    Args:
        secrets: the values to hide.
    """

    __slots__ = ("_needles",)

    def __init__(self, secrets: Iterable[str]) -> None:
        needles: set[str] = set()
        for secret in secrets:
            needles.update(secret_forms(secret))
        self._needles = tuple(sorted(needles, key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self._needles)

    def text(self, value: str) -> str:
        """``value`` with every secret replaced."""
        for needle in self._needles:
            if needle in value:
                value = value.replace(needle, REDACTED)
        return value

    def value(self, value: Any) -> Any:
        """``value`` with every secret replaced, recursively (strings, mappings, lists, tuples)."""
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, Mapping):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(v) for v in value]
        return self.text(repr(value))

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        if not self._needles:
            return event_dict
        return {k: (v if k.startswith("_") else self.value(v)) for k, v in event_dict.items()}


def config_secrets(config: CryptolinkConfig) -> list[str]:
    """Every secret value of ``config``: each entry's ``api_key`` and ``api_secret``, ``status.token``, each REST
    member's ``api_key``, ``api_secret`` and ``password``, and the passwords of ``status.redis_url`` and
    ``rest.limits.redis_url`` (in the user part or as ``?password=``; as written and percent-decoded), and
    ``nats.password``, ``nats.token`` and the credentials written in a ``nats.servers`` URL."""
    out: list[str] = []
    for entry in config.exchanges.values():
        for secret in (entry.api_key, entry.api_secret):
            if secret is not None:
                out.append(secret.get_secret_value())
    if config.status.token is not None:
        out.append(config.status.token.get_secret_value())
    if config.status.redis_url is not None:
        out.extend(url_secrets(config.status.redis_url.get_secret_value()))
    for member in config.rest.members.values():
        out.extend(s.get_secret_value() for s in (member.api_key, member.api_secret, member.password) if s)
    if config.rest.limits.redis_url is not None:
        out.extend(url_secrets(config.rest.limits.redis_url.get_secret_value()))
    if config.nats is not None:
        out.extend(s.get_secret_value() for s in (config.nats.password, config.nats.token) if s)
        for server in config.nats.servers:
            out.extend(url_secrets(server))
    return list(dict.fromkeys(s for s in out if s))


# ------------------------------------------------------------------------------------------- configuration


def _add_extras(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Copy the ``extra=`` fields of a standard-library record into the event dict."""
    record = event_dict.get("_record")
    if isinstance(record, logging.LogRecord):
        for key, value in record.__dict__.items():
            if key not in _RECORD_KEYS and key not in _DROPPED_EXTRAS and not key.startswith("_"):
                event_dict.setdefault(key, value)
    return event_dict


class _Handler(logging.StreamHandler[TextIO]):
    """The root handler :func:`configure_logging` installs (a distinct class so that a second call finds and
    replaces it). Without an explicit stream it writes to whatever ``sys.stderr`` is at each record (so a
    caller that swaps and closes ``sys.stderr``, such as a CLI test runner, does not leave it writing to a
    closed file)."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(sys.stderr if stream is None else stream)
        self._follow_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self._follow_stderr and self.stream is not sys.stderr:
            self.stream = sys.stderr  # not setStream(): it flushes the old stream, which may be closed
        super().emit(record)


def _renderer(mode: LogFormat, redactor: Redactor, stream: TextIO) -> Processor:
    render: Processor
    if mode == "json":
        render = structlog.processors.JSONRenderer()
    else:
        isatty = getattr(stream, "isatty", None)
        render = structlog.dev.ConsoleRenderer(
            colors=bool(isatty and isatty()),
            exception_formatter=structlog.dev.plain_traceback,
            pad_event_to=40,
        )

    def rendered(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
        line = render(logger, method_name, event_dict)
        return redact_query_tokens(redactor.text(line if isinstance(line, str) else str(line)))

    return rendered


_LEADING_KEYS: Final = ("timestamp", "level", "logger", "event")


def _leading_keys_first(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Order a JSON line as ``timestamp``, ``level``, ``logger``, ``event``, then the fields."""
    head = {k: event_dict[k] for k in _LEADING_KEYS if k in event_dict}
    return head | {k: v for k, v in event_dict.items() if k not in head}


def _drop_none(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    return {k: v for k, v in event_dict.items() if v is not None}


def configure_logging(
    mode: LogFormat,
    level: str,
    *,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Route every log record of the process through structlog (see the module docstring).

    Installs one handler on the root logger (replacing the one a previous call installed; other handlers,
    such as pytest's, are kept), sets the root level, keeps ``aiohttp.access`` at ``WARNING``, sends
    :mod:`warnings` to the log, and configures structlog's own loggers to go through the same handler.

    Args:
        mode: ``"json"`` (one JSON object per line) or ``"console"`` (readable lines).
        level: ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR`` or ``CRITICAL`` (any case).
        secrets: values replaced by ``***`` everywhere (:func:`config_secrets`).
        stream: where lines go (default: ``sys.stderr``, looked up at each record).

    Raises:
        ValueError: unknown ``mode`` or ``level``.
    """
    if mode not in ("json", "console"):
        raise ValueError(f"unknown log format {mode!r}; expected 'json' or 'console'")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}; expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    redactor = Redactor(secrets)
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
    ]
    final: list[Processor] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        structlog.processors.format_exc_info,
        redactor,
    ]
    final.append(_drop_none if mode == "console" else _leading_keys_first)
    final.append(_renderer(mode, redactor, sys.stderr if stream is None else stream))
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, _add_extras],
        processors=final,
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    handler = _Handler(stream)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name, quiet in _QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(quiet, numeric))
    logging.captureWarnings(True)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


# ---------------------------------------------------------------------------------------- connection events


def _parse_transition(description: str) -> tuple[str | None, str | None, str | None]:
    """``"connecting -> connected: reason"`` -> ``("connecting", "connected", "reason")``."""
    head, sep, reason = description.partition(": ")
    source, arrow, target = head.partition(" -> ")
    if not arrow:
        return None, None, description or None
    return source.strip() or None, target.strip() or None, (reason.strip() or None) if sep else None


_CAUSE_FROM_DESCRIPTION: Final = frozenset(
    {
        ConnectionEventType.DISCONNECTED,
        ConnectionEventType.RECONNECT_FAILED,
        ConnectionEventType.HEARTBEAT_TIMEOUT,
        ConnectionEventType.ERROR,
        ConnectionEventType.STALE_SUBSCRIPTION,
        ConnectionEventType.SUBSCRIPTION_REJECTED,
        ConnectionEventType.ROTATION_STARTED,
        ConnectionEventType.SERVER_NOTICE,
    }
)


def event_fields(event: ConnectionEvent) -> dict[str, Any]:
    """The structured fields of ``event`` (keys :data:`EVENT_FIELDS`, plus ``from_state`` for a state change).

    ``state`` is the target state of a ``state_changed`` event (parsed from its ``"a -> b: reason"``
    description), else ``None``; ``cause`` is the transition's reason, else the event's error, else (for
    events that report a problem: disconnects, failures, timeouts, stale or rejected subscriptions, server
    notices, rotations) its description.
    """
    state: str | None = None
    from_state: str | None = None
    cause: str | None = event.error
    if event.type is ConnectionEventType.STATE_CHANGED:
        from_state, state, reason = _parse_transition(event.description)
        cause = reason or cause
    elif cause is None and event.type in _CAUSE_FROM_DESCRIPTION:
        cause = event.description or None
    fields: dict[str, Any] = {
        "exchange": event.exchange,
        "feed": event.feed or None,
        "connection": event.connection_id,
        "event_type": event.type.value,
        "severity": event.severity.name.lower(),
        "state": state,
        "cause": cause,
        "attempt": event.attempt,
        "latency_ms": event.latency_ms,
        "stream": event.stream,
        "symbol": event.symbol,
    }
    if from_state is not None:
        fields["from_state"] = from_state
    return fields


def log_connection_event(event: ConnectionEvent) -> None:
    """Log ``event`` as one record of the :data:`EVENTS_LOGGER` logger with :func:`event_fields` as its
    structured fields (``extra``) and ``"<connection> <event_type>: <description>"`` as its message.

    The level follows the severity (INFO, WARNING, ERROR, CRITICAL); sampled ``data_received`` events are
    logged at DEBUG. A listener for :meth:`cryptolink.manager.ExchangeManager.add_event_listener`: quick,
    and a disabled level costs one check.
    """
    if event.type is ConnectionEventType.DATA_RECEIVED:
        level = logging.DEBUG
    else:
        level = _SEVERITY_LEVELS.get(event.severity, logging.WARNING)
    if not _events_log.isEnabledFor(level):
        return
    text = f"{event.connection_id} {event.type.value}"
    if event.description:
        text += f": {event.description}"
    _events_log.log(level, "%s", text, extra=event_fields(event))
