"""Real exchange recordings shipped with cryptolink (test vectors and simulator replay input).

The files are copies of third-party recordings, gzip-compressed:

- ``hftbacktest_binance_*.gz``: nkaz001/hftbacktest examples (MIT, see ``LICENSE.hftbacktest``), recorded
  2024-08-08: spot and USDⓈ-M BTCUSDT/ETHUSDT, and COIN-M BTCUSD_PERP
  (``hftbacktest_binance_coinm_btcusd_perp_20240808.gz``: the first 40,000 lines, about 4.7 min, of hftbacktest's
  ``cm_btcusd_perp_20240808``, whole lines, its REST snapshot line kept; ``@depth@0ms`` diffs with ``pu``,
  ``@trade``, ``@bookTicker``; quantities in contracts of 100 USD). One line per frame: ``<local receive time, ns>
  <raw frame>``; frames are Binance combined-stream wrappers ``{"stream": ..., "data": ...}``. One line near the
  start is the bare REST depth snapshot (limit 1000).
- ``cryptofeed_<exchange>_<FILE>.gz``: bmoscon/cryptofeed ``sample_data`` (see ``LICENSE.cryptofeed``). "This
  product includes software developed by Bryant Moscon (http://www.bryantmoscon.com/)". WebSocket files hold
  ``wss://addr <-> ts`` (connect), ``wss://addr <- ts: {sent}`` and ``ts: {received}`` lines; HTTP files hold
  ``URL -> ts: body`` lines. ``ts`` is epoch seconds.

Nothing here reads outside the installed package.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Literal

__all__ = [
    "HttpRecord",
    "WsRecord",
    "available",
    "iter_cryptofeed_http",
    "iter_cryptofeed_ws",
    "iter_hftbacktest",
    "parse_hftbacktest",
    "read_bytes",
]


def _root() -> resources.abc.Traversable:
    return resources.files(__name__)


def available() -> list[str]:
    """Names of the shipped recording files (``*.gz``), sorted."""
    return sorted(p.name for p in _root().iterdir() if p.name.endswith(".gz"))


def read_bytes(name: str) -> bytes:
    """Decompressed content of recording ``name``.

    Raises:
        FileNotFoundError: no such recording is shipped.
    """
    path = _root() / name
    if not path.is_file():
        raise FileNotFoundError(f"no recording named {name!r}; shipped: {available()}")
    return gzip.decompress(path.read_bytes())


def iter_hftbacktest(name: str) -> Iterator[tuple[int, str]]:
    """Yield ``(local_receive_time_ns, raw_frame)`` for a shipped hftbacktest Binance file."""
    return parse_hftbacktest(read_bytes(name).decode(), name)


def parse_hftbacktest(text: str, origin: str = "<text>") -> Iterator[tuple[int, str]]:
    """Yield ``(local_receive_time_ns, raw_frame)`` from hftbacktest-format text (one ``<ns> <frame>`` per line).

    Blank lines are skipped. ``origin`` names the source in error messages.

    Raises:
        ValueError: a line is not an integer timestamp, one space and a frame (message: origin and line number).
    """
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        ts, sep, frame = line.partition(" ")
        if not sep or not frame or not ts.isdigit():
            raise ValueError(f"{origin}: line {lineno} is not '<timestamp ns> <frame>': {line[:80]!r}")
        yield int(ts), frame


@dataclass(frozen=True, slots=True)
class WsRecord:
    """One line of a cryptofeed WebSocket recording.

    ``kind`` is ``connect`` (payload empty), ``sent`` (a frame the client sent) or ``received``.
    ``ts_s`` is epoch seconds; ``url`` is empty on received lines.
    """

    kind: Literal["connect", "sent", "received"]
    ts_s: float
    url: str
    payload: str


def iter_cryptofeed_ws(name: str) -> Iterator[WsRecord]:
    """Yield the records of a cryptofeed ``<EXCH>.ws.<n>.0`` recording in file order."""
    for line in read_bytes(name).decode().splitlines():
        if not line:
            continue
        if line.startswith("wss://") or line.startswith("ws://"):
            if " <-> " in line:
                url, ts = line.split(" <-> ", 1)
                yield WsRecord("connect", float(ts), url, "")
            else:
                url, rest = line.split(" <- ", 1)
                ts, payload = rest.split(": ", 1)
                yield WsRecord("sent", float(ts), url, payload)
            continue
        ts, payload = line.split(": ", 1)
        yield WsRecord("received", float(ts), "", payload)


@dataclass(frozen=True, slots=True)
class HttpRecord:
    """One REST response of a cryptofeed ``<EXCH>.http.0.0`` or ``<EXCH>.0`` recording."""

    url: str
    ts_s: float
    body: str


def iter_cryptofeed_http(name: str) -> Iterator[HttpRecord]:
    """Yield the REST responses of a cryptofeed HTTP recording (``configuration:`` lines are skipped)."""
    for line in read_bytes(name).decode().splitlines():
        if " -> " not in line or line.startswith("configuration:"):
            continue
        url, rest = line.split(" -> ", 1)
        ts, body = rest.split(": ", 1)
        yield HttpRecord(url, float(ts), body)
