"""One pooled ccxt instance under cryptolink's control: the rate budget decides when each of its HTTP requests
goes, and every answer feeds the budget back.

ccxt sends every REST request of an async instance through ``Exchange.fetch(url, method, headers, body)`` and
hands each answer, before it raises for an error status, to ``Exchange.on_rest_response(status, reason, url,
method, headers, body, request_headers, request_body)`` (both in ``ccxt/async_support/base/exchange.py``). A
:class:`ManagedExchange` wraps those two on its instance:

- before a request: a concurrency slot of the member (``max_concurrent``), then a grant of the request's costs
  from the member's :class:`~cryptolink.rest.budget.RateBudget` (``costs`` from the exchange's
  :mod:`~cryptolink.rest.costs` rules for the request's method, path and parameters), so the request leaves right
  after its grant;
- after it: the answer's status and headers (``X-MBX-USED-WEIGHT-1M``, 429/418 with ``Retry-After``...) go to
  ``RateBudget.feed``, which corrects the shared count, pauses the pools for every process or bans the IP.

ccxt's own throttler is off (``enableRateLimit: False``) when the exchange has rules: one throttle, and the
exact one. An exchange without rules keeps ccxt's throttler (a request rate per instance, not shared), and a
warning says so.

The answer of each request is matched to its request through a context variable: ccxt calls
``on_rest_response`` inside the same task as ``fetch``, so concurrent requests of one instance never mix.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from cryptolink.clock import Clock
from cryptolink.config import RestMemberConfig
from cryptolink.errors import ConfigError, CryptolinkError
from cryptolink.rest.budget import RateBudget

__all__ = ["ManagedExchange", "MemberClosed", "RequestTiming", "ccxt_class", "move_urls"]

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Answer:
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class RequestTiming:
    """What the HTTP requests of one call cost: time waiting for the budget and a slot (s), time on the wire
    (s, grant to answer), requests sent, and ``acted``: requests other than GET that were sent and not refused
    by a 429/418 (the exchange may have acted on them: a call with ``acted`` > 0 is never sent again)."""

    wait_s: float = 0.0
    http_s: float = 0.0
    requests: int = 0
    acted: int = 0


_answer: contextvars.ContextVar[_Answer | None] = contextvars.ContextVar(
    "cryptolink_rest_answer", default=None
)
_timing: contextvars.ContextVar[RequestTiming | None] = contextvars.ContextVar(
    "cryptolink_rest_timing", default=None
)
_priority: contextvars.ContextVar[int] = contextvars.ContextVar("cryptolink_rest_priority", default=0)
_wait_timeout: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "cryptolink_rest_wait_timeout", default=None
)
_http_timeout: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "cryptolink_rest_http_timeout", default=None
)


def ccxt_class(exchange: str) -> type[Any]:
    """ccxt's async class of ``exchange`` (a ccxt id).

    Raises:
        ConfigError: ccxt has no such exchange.
    """
    import ccxt.async_support as ccxt_async  # loaded with the first member: it takes over a second

    cls = getattr(ccxt_async, exchange, None)
    if not isinstance(cls, type) or exchange not in ccxt_async.exchanges:
        raise ConfigError([("exchange", f"ccxt has no exchange {exchange!r}")])
    return cls


def move_urls(value: Any, hosts: Mapping[str, str], hostname: str | None) -> Any:
    """``value`` (ccxt's ``urls`` tree) with every URL under a key of ``hosts`` moved to its replacement,
    longest prefix first; ccxt's ``{hostname}`` template is filled in first."""
    if isinstance(value, dict):
        return {k: move_urls(v, hosts, hostname) for k, v in value.items()}
    if isinstance(value, list):
        return [move_urls(v, hosts, hostname) for v in value]
    if isinstance(value, str):
        if hostname:
            value = value.replace("{hostname}", hostname)
        for real in sorted(hosts, key=len, reverse=True):
            if value == real or value.startswith(real + "/"):
                return hosts[real] + value[len(real) :]
    return value


class MemberClosed(CryptolinkError):
    """A request of a member that a reload removed or rebuilt while the request waited: it was never sent (a
    group call moves on to another member)."""


def _has_url(urls: Any, real: str) -> bool:
    """Whether some URL of ccxt's ``urls`` tree is ``real`` or lies under it."""
    if isinstance(urls, dict):
        return any(_has_url(v, real) for v in urls.values())
    if isinstance(urls, list):
        return any(_has_url(v, real) for v in urls)
    return isinstance(urls, str) and (urls == real or urls.startswith(real + "/"))


def _params(url: str, method: str, body: Any) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    if method != "GET" and isinstance(body, str) and "=" in body and not body.startswith(("{", "[")):
        params.update(parse_qsl(body, keep_blank_values=True))
    return parts.path or "/", params


class ManagedExchange:
    """A ccxt async instance of one member, throttled by its rate budget.

    Args:
        name: the member's name.
        config: the member's configuration.
        budget: the member's budget (exchange, ip); ``None``: the exchange has no rules, ccxt's throttler stays.
        clock: time source of the wait and latency figures.
        on_http: called after every HTTP request with (status or ``None`` for a transport error, seconds on the
            wire); the manager's latency and health figures.

    Raises:
        ConfigError: ccxt has no such exchange.
    """

    def __init__(
        self,
        name: str,
        config: RestMemberConfig,
        budget: RateBudget | None,
        clock: Clock,
        on_http: Callable[[int | None, float], None] | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.budget = budget
        self._clock = clock
        self._on_http = on_http
        cls = ccxt_class(config.exchange)
        params: dict[str, Any] = {
            "enableRateLimit": budget is None,
            "timeout": int(config.timeout_s * 1000),
            "options": dict(config.options),
        }
        for key, attr in (
            ("apiKey", config.api_key),
            ("secret", config.api_secret),
            ("password", config.password),
        ):
            if attr is not None:
                params[key] = attr.get_secret_value()
        self.exchange: Any = cls(params)
        hosts = {k.rstrip("/"): v.rstrip("/") for k, v in config.hosts.items()}
        if hosts:
            hostname = getattr(self.exchange, "hostname", None)
            filled = move_urls(self.exchange.urls, {}, hostname)  # ccxt's {hostname} templates filled in
            if not any(_has_url(filled, real) for real in hosts):
                raise ConfigError(
                    [
                        (
                            "hosts",
                            f"{sorted(hosts)} replace none of ccxt's {config.exchange} URLs (check the spelling)",
                        )
                    ]
                )
            self.exchange.urls = move_urls(filled, hosts, hostname)
        # a replacement with a path (a proxy at https://proxy/binance): the exchange's own path follows it
        self._path_prefixes = sorted(
            {p for p in (urlsplit(v).path for v in hosts.values()) if p not in ("", "/")},
            key=len,
            reverse=True,
        )
        # ccxt shares one market-loading task among concurrent callers: one caller's cancellation must not
        # cancel the others'
        load_markets = self.exchange.load_markets

        async def shielded_load_markets(reload: bool = False, params: Any = None) -> Any:
            return await asyncio.shield(load_markets(reload, {} if params is None else params))

        self.exchange.load_markets = shielded_load_markets
        self._slots = asyncio.Semaphore(config.max_concurrent)
        self._fetch = self.exchange.fetch
        self._on_rest_response = self.exchange.on_rest_response
        self.exchange.fetch = self._managed_fetch
        self.exchange.on_rest_response = self._record_answer
        self.in_flight = 0
        self.sent = 0
        self.closed = False
        self._calls = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def call(
        self,
        method: str,
        *args: Any,
        priority: int = 0,
        wait_timeout_s: float | None = None,
        http_timeout_s: float | None = None,
        timing: RequestTiming | None = None,
        **kwargs: Any,
    ) -> tuple[Any, RequestTiming]:
        """``await exchange.<method>(*args, **kwargs)``; returns its result and what its HTTP requests cost.

        Args:
            priority: place of its requests in the budget's wait line (lower first).
            wait_timeout_s: longest wait for room in the budget per HTTP request, s (``None``: no bound).
            http_timeout_s: a shorter bound than the instance's ``timeout_s`` for each HTTP request once sent,
                s (health checks); exceeding it raises ``ccxt.RequestTimeout``.
            timing: the object to fill (the caller keeps it when the call raises); ``None``: a new one.

        Raises:
            AttributeError: ccxt has no such method.
            ccxt.BaseError: whatever ccxt raises; TimeoutError / LineFull from the budget's wait line (the
                request was not sent).
        """
        fn: Callable[..., Awaitable[Any]] = getattr(self.exchange, method)
        timing = timing if timing is not None else RequestTiming()
        t_token = _timing.set(timing)
        p_token = _priority.set(priority)
        w_token = _wait_timeout.set(wait_timeout_s)
        h_token = _http_timeout.set(http_timeout_s)
        self._calls += 1
        self._idle.clear()
        try:
            result = await fn(*args, **kwargs)
        finally:
            _timing.reset(t_token)
            _priority.reset(p_token)
            _wait_timeout.reset(w_token)
            _http_timeout.reset(h_token)
            self._calls -= 1
            if not self._calls:
                self._idle.set()
        return result, timing

    async def wait_idle(self) -> None:
        """Return when no call of this instance is running (waiting for the budget, in flight, or between two of
        its requests)."""
        await self._idle.wait()

    def _record_answer(
        self,
        status: int,
        reason: str,
        url: str,
        method: str,
        headers: Mapping[str, str],
        body: Any,
        request_headers: Any,
        request_body: Any,
    ) -> Any:
        answer = _answer.get()
        if answer is not None:
            answer.status = status
            answer.headers = headers
        return self._on_rest_response(
            status, reason, url, method, headers, body, request_headers, request_body
        )

    async def _managed_fetch(
        self, url: str, method: str = "GET", headers: Any = None, body: Any = None
    ) -> Any:
        timing = _timing.get()
        start = self._clock.monotonic()
        path, params = _params(url, method, body)
        for prefix in self._path_prefixes:
            if path.startswith(prefix + "/"):
                path = path[len(prefix) :]
                break
        if self.closed:  # removed or replaced by a reload: refused before anything is charged
            raise MemberClosed(f"REST member {self.name} was closed (reconfigured)")
        async with self._slots:
            grant = None
            if self.budget is not None:
                grant = await self.budget.acquire(
                    method, path, params, priority=_priority.get(), timeout_s=_wait_timeout.get()
                )
            if self.closed:  # removed or replaced by a reload while it waited: never sent
                raise MemberClosed(f"REST member {self.name} was closed (reconfigured) before sending")
            sent = self._clock.monotonic()
            answer = _Answer()
            token = _answer.set(answer)
            self.in_flight += 1
            self.sent += 1
            try:
                bound = _http_timeout.get()
                if bound is None:
                    return await self._fetch(url, method, headers, body)
                try:
                    return await asyncio.wait_for(self._fetch(url, method, headers, body), bound)
                except TimeoutError as exc:
                    from ccxt.base.errors import RequestTimeout

                    raise RequestTimeout(f"{self.name} {method} {path}: no answer in {bound:g} s") from exc
            finally:
                self.in_flight -= 1
                _answer.reset(token)
                done = self._clock.monotonic()
                if timing is not None:
                    timing.wait_s += sent - start
                    timing.http_s += done - sent
                    timing.requests += 1
                    if method.upper() != "GET" and answer.status not in (429, 418):
                        timing.acted += 1
                if self._on_http is not None:
                    self._on_http(answer.status, done - sent)
                if grant is not None and self.budget is not None and answer.status is not None:
                    await self.budget.feed(grant, answer.status, answer.headers, path=path)

    async def close(self) -> None:
        """Close the instance's HTTP session (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.exchange.timeout_on_exit = 0
        await self.exchange.close()
