"""Fault injection: what can go wrong, a spec-string grammar for the CLI, and a seeded random schedule.

Spec grammar (``--faults SPEC``)::

    SPEC     := ITEM ("," ITEM)*
    ITEM     := [EXCHANGE "/"] KIND (":" ARG)* ["@" TIME]        scripted fault at TIME after start (default
                  0s)
              | "random:every=" TIME [":kinds=" KIND ("+" KIND)*] [":exchange=" EXCHANGE]
    TIME     := NUMBER ("ms" | "s" | "m")                          e.g. 500ms, 5s, 1.5m
    EXCHANGE := a registered simulator exchange id (binance, binanceusdm, okx, binancecoinm, bybit, bitget,
                gate, htx; see :mod:`cryptolink.simulator.registry`)   (omitted: every exchange)

A SYMBOL argument is the simulator's symbol as ``/_sim/stats`` names it; market-qualified ones keep their colon
or slash (``gate/gap:futures:BTC_USDT``, ``gap:linear/BTCUSDT``: a slash after the kind is part of the symbol).

Kinds and their arguments (faults hit every open connection of the exchange unless injected on one
connection; ``outage`` always hits the whole exchange):

==============  =================  =========================================================================
kind            args               effect
==============  =================  =========================================================================
drop                               abort TCP, no close frame
close           [CODE]             close with CODE (default 1011)
stall           DURATION           send no data frames for DURATION (pings/pongs still answered); dropped
                                   frames are counted as ``stalled``
noping          [DURATION]         stop the keepalive: Binance and Gate stop sending pings and answering
                                   client pings; OKX, Bybit, Bitget stop replying ``pong``; HTX stops its JSON
                                   pings and protocol pongs. Default: until the connection ends
delay           AMOUNT [DURATION]  hold every outgoing frame AMOUNT (e.g. 200ms) for DURATION (default 10s)
corrupt                            next outgoing data frame is replaced by invalid JSON
gap             [SYMBOL]           next book delta (of SYMBOL, exchange-native id) is not sent: a sequence gap
badchecksum     [SYMBOL]           OKX, Bitget: next ``books`` update carries a wrong checksum
reject                             next subscription request is answered with an error
notice                             Binance ``serverShutdown`` event / OKX ``notice`` 64008
lifetime                           the lifetime close now (Binance 24 h connection life, "General WSS
                                   information" of https://developers.binance.com/docs/binance-spot-api-docs/
                                   web-socket-streams)
seqreset        [SYMBOL]           OKX: seqIds restart lower (maintenance reset, "Sequence ID" in
                                   https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-order-book-channel);
                                   Bybit: a snapshot with ``u = 1`` (service restart); Bitget: ``seq`` restarts
                                   lower (symbol maintenance)
outage          DURATION           the exchange is unreachable for DURATION: every open connection (WebSocket
                                   and REST keep-alive) is aborted and the listening socket closed, so new TCP
                                   connects are refused; then it listens again on the same port. Markets keep
                                   running meanwhile (ids keep increasing)
==============  =================  =========================================================================

A kind with no counterpart in an exchange's protocol (``notice`` on Bybit, Bitget, Gate and HTX; ``badchecksum``
where books carry no checksum; ``seqreset`` on Gate and HTX) is counted and changes nothing (the server class's
``inert_faults``; the demo's fault cycle skips them).

Example: ``"drop@5s,stall:3s@12s,okx/gap:BTC-USDT@20s,binance/outage:10s@60s,random:every=30s:kinds=drop+gap"``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "KINDS",
    "Fault",
    "FaultSpecError",
    "RandomFaults",
    "known_exchanges",
    "parse_duration",
    "parse_spec",
]

KINDS = (
    "drop",
    "close",
    "stall",
    "noping",
    "delay",
    "corrupt",
    "gap",
    "badchecksum",
    "reject",
    "notice",
    "lifetime",
    "seqreset",
    "outage",
)
DEFAULT_RANDOM_KINDS = ("drop", "stall", "gap", "corrupt", "notice")


class FaultSpecError(ValueError):
    """A fault spec string or fault argument is malformed (message says where)."""


def known_exchanges() -> tuple[str, ...]:
    """Exchange ids a fault may target: the simulator registry's names (imported lazily: the protocol modules
    import this module)."""
    from cryptolink.simulator import registry

    return registry.names()


def __getattr__(name: str) -> tuple[str, ...]:
    if name == "EXCHANGES":  # kept for callers of the former constant; derived from the registry
        return known_exchanges()
    raise AttributeError(name)


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault.

    Args:
        kind: one of :data:`KINDS`.
        at_s: seconds after simulator start (scripted faults; ignored by :meth:`Simulator.inject`).
        exchange: target exchange id, ``None`` = all.
        code: close code (``close``).
        duration_s: how long in seconds (``stall``, ``noping``, ``delay``, ``outage``); ``None`` = until the
            connection ends.
        amount_ms: frame delay (``delay``).
        symbol: exchange-native symbol (``gap``, ``badchecksum``, ``seqreset``); ``None`` = any.
    """

    kind: str
    at_s: float = 0.0
    exchange: str | None = None
    code: int = 1011
    duration_s: float | None = None
    amount_ms: float = 0.0
    symbol: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FaultSpecError(f"unknown fault kind {self.kind!r}; known: {', '.join(KINDS)}")
        if self.exchange is not None and self.exchange not in known_exchanges():
            raise FaultSpecError(f"unknown exchange {self.exchange!r}; known: {', '.join(known_exchanges())}")
        if self.kind in ("stall", "outage") and self.duration_s is None:
            raise FaultSpecError(f"{self.kind} needs a duration, e.g. {self.kind}:3s")


_TIME = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)$")


def parse_duration(text: str) -> float:
    """``"500ms"`` -> 0.5, ``"5s"`` -> 5.0, ``"2m"`` -> 120.0 (seconds).

    Raises:
        FaultSpecError: not NUMBER followed by ms, s or m.
    """
    m = _TIME.match(text.strip())
    if not m:
        raise FaultSpecError(f"bad duration {text!r}; use e.g. 500ms, 5s, 1m")
    value = float(m.group(1))
    return value / 1000.0 if m.group(2) == "ms" else value * (60.0 if m.group(2) == "m" else 1.0)


@dataclass(frozen=True, slots=True)
class RandomFaults:
    """A seeded random schedule: one fault of a random kind about every ``every_s`` seconds (uniform
    0.5x-1.5x)."""

    every_s: float
    kinds: tuple[str, ...] = DEFAULT_RANDOM_KINDS
    exchange: str | None = None

    def schedule(self, seed: int, start_s: float = 0.0) -> Iterator[Fault]:
        """Endless faults in time order, reproducible for a given ``seed``."""
        rng = random.Random(seed)
        t = start_s
        while True:
            t += self.every_s * rng.uniform(0.5, 1.5)
            kind = rng.choice(self.kinds)
            dur = rng.uniform(1.0, 5.0) if kind in ("stall", "delay", "outage") else None
            amount = 200.0 if kind == "delay" else 0.0
            yield Fault(kind, at_s=t, exchange=self.exchange, duration_s=dur, amount_ms=amount)


def _parse_item(item: str) -> Fault | RandomFaults:
    if item.startswith("random:"):
        opts = dict(part.split("=", 1) for part in item.split(":")[1:] if "=" in part)
        if "every" not in opts:
            raise FaultSpecError(f"{item!r}: random needs every=TIME")
        kinds = tuple(opts["kinds"].split("+")) if "kinds" in opts else DEFAULT_RANDOM_KINDS
        for k in kinds:
            if k not in KINDS:
                raise FaultSpecError(f"{item!r}: unknown kind {k!r}")
        exch = opts.get("exchange")
        if exch is not None and exch not in known_exchanges():
            raise FaultSpecError(f"{item!r}: unknown exchange {exch!r}")
        return RandomFaults(parse_duration(opts["every"]), kinds, exch)
    body, _, when = item.partition("@")
    at_s = parse_duration(when) if when else 0.0
    exchange: str | None = None
    head, slash, rest = body.partition("/")
    if slash and ":" not in head:  # ``okx/gap:BTC-USDT``; a slash after the kind belongs to the symbol
        exchange, body = head, rest
    kind, *args = body.split(":")
    kw: dict[str, object] = {}
    try:
        if kind == "close" and args:
            kw["code"] = int(args[0])
        elif kind in ("stall", "noping", "outage") and args:
            kw["duration_s"] = parse_duration(args[0])
        elif kind == "delay":
            if not args:
                raise FaultSpecError(f"{item!r}: delay needs an amount, e.g. delay:200ms")
            kw["amount_ms"] = parse_duration(args[0]) * 1000.0
            kw["duration_s"] = parse_duration(args[1]) if len(args) > 1 else 10.0
        elif kind in ("gap", "badchecksum", "seqreset") and args:
            kw["symbol"] = ":".join(args)  # market-qualified symbols carry a colon (``futures:BTC_USDT``)
    except ValueError as exc:
        raise FaultSpecError(f"{item!r}: {exc}") from exc
    return Fault(kind, at_s=at_s, exchange=exchange, **kw)  # type: ignore[arg-type]


def parse_spec(spec: str) -> tuple[list[Fault], list[RandomFaults]]:
    """Parse a spec string into scripted faults (sorted by time) and random schedules.

    Raises:
        FaultSpecError: any malformed item (the message quotes it).
    """
    scripted: list[Fault] = []
    randoms: list[RandomFaults] = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        parsed = _parse_item(item)
        (randoms if isinstance(parsed, RandomFaults) else scripted).append(parsed)  # type: ignore[arg-type]
    scripted.sort(key=lambda f: f.at_s)
    return scripted, randoms
