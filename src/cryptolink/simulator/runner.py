"""The public entry: :class:`Simulator` (async context manager), :func:`serve_forever` and
:func:`run_simulator`.

Example::

    async with Simulator(exchanges=["binance", "okx"], mode="synthetic", seed=1) as sim:
        ep = sim.endpoints()["binance"]   # {"exchange": "binance", "ws_url": "ws://127.0.0.1:PORT",
                                          #  "rest_url": ..., "hosts": {"https://api.binance.com": ...}}
        ... connect to ep["ws_url"] + "/stream?streams=btcusdt@trade" ...
        sim.inject(Fault("drop"), exchange="binance")
        print(sim.stats())
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from cryptolink.clock import Clock, SystemClock
from cryptolink.simulator import registry
from cryptolink.simulator.capture import CaptureError, load_capture
from cryptolink.simulator.config import SimConfig
from cryptolink.simulator.faults import Fault, RandomFaults, parse_spec
from cryptolink.simulator.server import ExchangeServer

__all__ = ["PORT_OFFSETS", "SERVERS", "Simulator", "parse_rest_limit", "run_simulator", "serve_forever"]

#: Server class per exchange id, from :mod:`cryptolink.simulator.registry`.
SERVERS: dict[str, type[ExchangeServer]] = {name: spec.server for name, spec in registry.specs().items()}

#: With ``Simulator(port=N)`` exchange ``e`` listens on ``N + PORT_OFFSETS[e]``, whatever subset or order is asked
#: (registered offsets, stable):
#:
#: ================  ======  ==========================================
#: exchange          port    serves
#: ================  ======  ==========================================
#: ``binance``       N + 0   Binance spot (WS + ``/api/v3``)
#: ``binanceusdm``   N + 1   Binance USDⓈ-M (WS + ``/fapi/v1``)
#: ``okx``           N + 2   OKX v5 (WS + ``/api/v5``)
#: ``binancecoinm``  N + 3   Binance COIN-M (WS + ``/dapi/v1``)
#: ================  ======  ==========================================
PORT_OFFSETS: dict[str, int] = {name: spec.port_offset for name, spec in registry.specs().items()}


def parse_rest_limit(text: str) -> tuple[str, tuple[int, float]]:
    """``"binance=50/10"`` -> ``("binance", (50, 10.0))``: REST weight 50 per 10 s (``--rest-limit``); the
    seconds may carry a unit as in fault specs (``50/500ms``, ``1200/1m``).

    Raises:
        ValueError: not ``EXCHANGE=WEIGHT/SECONDS`` with a registered exchange, WEIGHT >= 1 and SECONDS > 0.
    """
    name, sep, rest = text.partition("=")
    weight, slash, window = rest.partition("/")
    if not sep or not slash or not weight.strip().isdigit() or int(weight) < 1:
        raise ValueError(f"--rest-limit {text!r}: expected EXCHANGE=WEIGHT/SECONDS, e.g. binance=50/10")
    registry.get(name.strip())
    window = window.strip()
    try:
        seconds = float(window)
    except ValueError:
        from cryptolink.simulator.faults import parse_duration

        seconds = parse_duration(window)
    if seconds <= 0:
        raise ValueError(f"--rest-limit {text!r}: SECONDS must be > 0")
    return name.strip(), (int(weight), seconds)


class Simulator:
    """Simulated exchanges on loopback, one port per exchange.

    Args:
        exchanges: ids from :data:`SERVERS` (``binance`` = spot, ``binanceusdm``, ``binancecoinm``, ``okx``);
            default: every registered exchange. Note that ccxt's default ``load_markets`` for ``binance`` also asks
            the USDⓈ-M and COIN-M exchangeInfo, so point it at a simulator serving all three.
        host: bind address (keep ``127.0.0.1``).
        port: 0 = ephemeral ports; N = each exchange listens on N + its :data:`PORT_OFFSETS` entry (binance N,
            binanceusdm N + 1, okx N + 2, binancecoinm N + 3), whichever exchanges are asked for.
        mode: ``"replay"`` (recordings where available, synthetic otherwise: Binance spot/USD-M BTCUSDT and
            ETHUSDT loop the hftbacktest 2024-08-08 recordings, OKX BTC-USDT, UNI-USD-SWAP and BTC-USD-220527 the
            cryptofeed 2022-05 OKX recording, COIN-M BTCUSD_PERP the hftbacktest 2024-08-08 recording) or
            ``"synthetic"``.
        speed: replay/synthetic pacing multiple (2.0 = twice recorded speed).
        faults: a spec string (grammar in :mod:`cryptolink.simulator.faults`) or a list of :class:`Fault` /
            :class:`RandomFaults`; times are seconds after start on ``clock``.
        seed: seeds synthetic markets and random faults.
        clock: timing source for pings, idle/lifetime closes, pacing, REST windows and faults.
        config: rules/symbols; defaults are the exchanges' documented values.
        rest_limits: per exchange ``(weight, seconds)`` REST limits scaled down for tests (merged over
            ``config.rest_limits``; see :class:`SimConfig`).

    Raises:
        ValueError: unknown or repeated exchange, bad mode or speed; :class:`FaultSpecError` for a bad spec.

    Attributes are the servers by id (``sim.binance``, ``sim.binanceusdm``, ``sim.binancecoinm``, ``sim.okx``) and
    ``sim.servers``.
    """

    def __init__(
        self,
        exchanges: Sequence[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        mode: str = "replay",
        speed: float = 1.0,
        faults: str | Iterable[Fault | RandomFaults] | None = None,
        seed: int = 0,
        clock: Clock | None = None,
        config: SimConfig | None = None,
        rest_limits: Mapping[str, tuple[int, float]] | None = None,
    ) -> None:
        exchanges = list(exchanges) if exchanges is not None else list(SERVERS)
        unknown = [e for e in exchanges if e not in SERVERS]
        if unknown:
            raise ValueError(f"unknown exchanges {unknown}; known: {sorted(SERVERS)}")
        if len(set(exchanges)) != len(exchanges):
            raise ValueError(f"each exchange may be asked for once: {list(exchanges)}")
        if mode not in ("replay", "synthetic"):
            raise ValueError(f"mode must be 'replay' or 'synthetic', not {mode!r}")
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.exchanges = list(exchanges)
        self.host, self.port, self.mode, self.speed, self.seed = host, port, mode, speed, seed
        self.clock: Clock = clock or SystemClock()
        self.config = config or SimConfig()
        if rest_limits:
            for name in rest_limits:
                if name not in SERVERS:
                    raise ValueError(f"rest_limits: unknown exchange {name!r}; known: {sorted(SERVERS)}")
            self.config = dataclasses.replace(
                self.config, rest_limits={**self.config.rest_limits, **rest_limits}
            )
        if isinstance(faults, str):
            scripted, randoms = parse_spec(faults)
        else:
            items = list(faults or [])
            scripted = sorted((f for f in items if isinstance(f, Fault)), key=lambda f: f.at_s)
            randoms = [f for f in items if isinstance(f, RandomFaults)]
        self._scripted, self._randoms = scripted, randoms
        self.servers: dict[str, ExchangeServer] = {}
        self.faults_applied: list[tuple[float, Fault]] = []
        self._tasks: list[asyncio.Task[None]] = []

    def __getattr__(self, name: str) -> ExchangeServer:
        servers = self.__dict__.get("servers", {})
        if name in servers:
            return servers[name]  # type: ignore[no-any-return]
        raise AttributeError(name)

    async def start(self) -> None:
        """Create and bind every exchange server, then start the fault schedule."""
        try:
            for exch in self.exchanges:
                server = SERVERS[exch](self.config, self.clock, self.mode, self.speed, self.seed)
                self.servers[exch] = server
                await server.start(self.host, self.port + PORT_OFFSETS[exch] if self.port else 0)
        except BaseException:
            await self.stop()
            raise
        self._started_at = self.clock.monotonic()
        if self._scripted:
            self._tasks.append(asyncio.create_task(self._run_faults(self._scripted)))
        for i, rnd in enumerate(self._randoms):
            self._tasks.append(asyncio.create_task(self._run_faults(rnd.schedule(self.seed + i))))

    async def stop(self) -> None:
        """Stop faults and every server (connections are cut)."""
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for server in self.servers.values():
            await server.stop()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _run_faults(self, faults: Iterable[Fault]) -> None:
        for fault in faults:
            wait = self._started_at + fault.at_s - self.clock.monotonic()
            if wait > 0:
                await self.clock.sleep(wait)
            self.inject(fault, exchange=fault.exchange)

    def endpoints(self) -> dict[str, dict[str, Any]]:
        """Per exchange ``{"exchange", "ws_url", "rest_url", "hosts"}``.

        ``hosts`` maps every real base URL the exchange uses (its server class's ``hosts``: REST and WebSocket
        hosts and ports from its docs and ccxt) to ``rest_url`` (``https://``) or ``ws_url`` (``wss://``); paths
        are the real ones, so a client is pointed at the simulator by replacing these prefixes only.

        ``ws_url`` is ``ws://HOST:PORT`` with no path: Binance spot clients append ``/ws``,
        ``/ws/<streams>`` or
        ``/stream?streams=..``; USD-M clients ``/public/ws``, ``/market/stream`` etc.; OKX clients
        ``/ws/v5/public``. ``rest_url`` is ``http://HOST:PORT`` (append ``/api/v3/..``, ``/fapi/v1/..``,
        ``/api/v5/..``).
        """
        return {
            name: {
                "exchange": name,
                "ws_url": s.ws_url,
                "rest_url": s.rest_url,
                "hosts": registry.hosts_of(name, s.rest_url, s.ws_url),
            }
            for name, s in self.servers.items()
        }

    def inject(self, fault: Fault, exchange: str | None = None, connection: int | None = None) -> None:
        """Apply ``fault`` now: to ``exchange`` (None = all) and, if given, only connection id ``connection``.

        An ``outage`` takes each targeted exchange down as a whole (see :meth:`ExchangeServer.begin_outage`).

        Raises:
            KeyError: ``exchange`` not running, or ``connection`` not an open connection of it.
            ValueError: an ``outage`` with a ``connection``.
        """
        targets = [self.servers[exchange]] if exchange is not None else list(self.servers.values())
        self.faults_applied.append((self.clock.monotonic(), fault))
        if len(self.faults_applied) > 1000:
            del self.faults_applied[:500]
        for server in targets:
            server.inject(fault, connection=connection)

    def stats(self) -> dict[str, Any]:
        """Per exchange: connections (open and recent closed, as immutable snapshots) and source counters."""
        return {name: s.stats() for name, s in self.servers.items()}


async def serve_forever(sim: Simulator, out: TextIO | None = None) -> None:
    """Start ``sim``, print one JSON line per exchange (``{"exchange","ws_url","rest_url","hosts"}``, see
    :meth:`Simulator.endpoints`) and run until cancelled; the servers are stopped on the way out."""
    stream = out or sys.stdout
    async with sim:
        for ep in sim.endpoints().values():
            stream.write(json.dumps(ep) + "\n")
        stream.flush()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()


_HFT_KIND_EXCHANGE = {"spot": "binance", "usdm": "binanceusdm", "coinm": "binancecoinm"}


def sniff_hftbacktest(path: Path) -> tuple[str, str]:
    """``(market kind, exchange symbol)`` of an hftbacktest-format file (the shipped Binance format:
    ``<receive ns> <combined-stream frame>`` per line): the symbol of its first ``@depth`` stream; ``coinm`` for a
    ``_PERP`` symbol, ``usdm`` when its diffs carry ``pu``, else ``spot``.

    Raises:
        CaptureError: no ``@depth`` stream in the first 10,000 lines (not a recording we can replay).
    """
    with open(path, "rb") as head:
        gz = head.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh):
            if n >= 10_000:
                break
            _, _, frame = line.partition(" ")
            try:
                doc = json.loads(frame)
            except ValueError:
                continue
            stream = doc.get("stream", "") if isinstance(doc, dict) else ""
            if "@depth" not in stream:
                continue
            symbol = stream.split("@", 1)[0].upper()
            data = doc.get("data")
            if "_" in symbol:  # COIN-M: BTCUSD_PERP, and delivery contracts such as BTCUSD_240927
                return "coinm", symbol
            return ("usdm" if isinstance(data, dict) and "pu" in data else "spot"), symbol
    raise CaptureError(
        f"{path}: neither a cryptolink capture nor an hftbacktest recording with an @depth stream"
    )


def replay_config(path: Path, exchanges: Sequence[str] | None) -> tuple[list[str], SimConfig]:
    """The exchanges to serve and the :class:`SimConfig` replaying ``path``: a cryptolink capture
    (``cryptolink record``, docs/recording.md) or a recording in the shipped hftbacktest format. The file's
    symbols are served from it, for every exchange it holds (or only those of ``exchanges``).

    Raises:
        CaptureError: not a replayable file, or a recorded symbol with book updates but no snapshot.
        OSError: the file cannot be read.
    """
    try:
        capture = load_capture(path)
    except CaptureError as exc:
        if "not a cryptolink capture" not in str(exc):
            raise
        kind, symbol = sniff_hftbacktest(path)
        name = _HFT_KIND_EXCHANGE[kind]
        chosen = list(exchanges) if exchanges else [name]
        return chosen, SimConfig(replay_files={(kind, symbol): path}, symbols={name: (symbol,)})
    chosen = list(exchanges) if exchanges else [e for e in capture.exchanges if e in SERVERS]
    if not chosen:
        raise CaptureError(
            f"{path}: the capture holds no market data of a simulated exchange; nothing to serve"
        )
    sources = {ex: capture.sources(ex) for ex in chosen}  # raises for an exchange the capture does not hold
    symbols = {ex: tuple(found) for ex, found in sources.items()}
    return chosen, SimConfig(capture_sources=sources, symbols=symbols)


async def run_simulator(
    exchanges: Sequence[str],
    host: str = "127.0.0.1",
    port: int = 0,
    mode: str = "replay",
    speed: float = 1.0,
    faults: str | None = None,
    seed: int = 0,
    rest_limits: Mapping[str, tuple[int, float]] | None = None,
    replay: Path | None = None,
) -> None:
    """CLI entry: build a :class:`Simulator` from plain arguments and :func:`serve_forever`.

    ``replay``: serve this file (a capture or an hftbacktest recording, see :func:`replay_config`) instead of
    the shipped recordings; ``exchanges`` then defaults to the exchanges the file holds.

    Raises:
        CaptureError: ``replay`` cannot be replayed.
    """
    config = None
    if replay is not None:
        if mode != "replay":
            raise CaptureError(f"--replay {replay} serves a recording: it needs --mode replay, not {mode}")
        exchanges, config = await asyncio.to_thread(replay_config, replay, exchanges)
    await serve_forever(
        Simulator(
            exchanges=exchanges,
            host=host,
            port=port,
            mode=mode,
            speed=speed,
            faults=faults,
            seed=seed,
            config=config,
            rest_limits=rest_limits,
        )
    )
