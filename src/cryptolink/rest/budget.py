"""Rate budgets: an exchange's documented REST limits on one IP, bound to one limiter, shared by every REST caller
of the process (the engine's book snapshots and trade backfills, the REST manager's ccxt members) and, through
Redis, by every process of the deployment.

- :class:`RateBudget`: one exchange's pools on one IP (*scope*) and the limiter that guards them. A request asks
  :meth:`RateBudget.acquire` for a grant (it waits until every pool it touches has room), is sent, and its answer
  is handed to :meth:`RateBudget.feed` (the exchange's own counts correct ours; 429-like answers pause the pools
  the request touched, 418-like answers ban the whole scope, for every process sharing the budget).
- :class:`RateBudgets`: the per-process registry ``(exchange, scope) -> RateBudget``, created on first use from
  :func:`cryptolink.rest.costs.rules_for`.

**Pools.** For every documented pool (:class:`~cryptolink.rest.costs.PoolSpec`) of exchange ``E`` on scope ``S``
the limiter holds ``Pool(f"{E}:{S}:{key}", limit=max(1, floor(limit * share)), window_s=window_s +
window_margin_s, scope=f"{E}:{S}")``; an override ``(limit, window_s)`` replaces the documented pair of its pool
key before ``share`` and the margin are applied (it stands for the documented limit: a VIP tier, a simulator
scaled with ``--rest-limit``). Every process sharing a budget through Redis must use the same names, limits and
windows, hence the same ``share``, ``window_margin_s`` and ``overrides``.

**Why the margin makes "never above a limit" hold for fixed server windows.** The limiter is a sliding-window
log: in any interval of ``window_s`` seconds of *grant* times, the granted weight is at most ``limit``
(docs/ratelimit.md). Binance counts weight per fixed window of its own clock (per minute,
https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits) on the request's *arrival*. A request
arrives ``d`` seconds after its grant, with ``0 <= d <= jitter`` (the time to write it on the socket and cross
the network, plus any event-loop delay). The requests that arrive in one server window ``[a, a + W)`` were
granted in ``[a - jitter, a + W)``: an interval of ``W + jitter`` seconds. With ``window_s = W + margin`` and
``margin >= jitter``, that interval lies inside one limiter window, so their weight is at most ``limit``: the
server never counts more than the limit in any of its windows, whatever its windows' alignment. The price is a
rate of ``limit / (W + margin)`` instead of ``limit / W`` (0.4 % for 60 s and 0.25 s). The margin does not cover
a jitter above it (a process stalled between grant and send): that is why :class:`~cryptolink.rest.RestClient`
takes its concurrency slot *before* the grant and sends right after it.

**Background requests.** Trade backfills (``background=True``) also take their weight from a *background pool*
per main pool: ``Pool(f"{E}:{S}:{key}:background", limit=max(1, floor(L * background_share)), window_s=<the
main pool's>, scope=f"{E}:{S}")`` where ``L`` is the main pool's limit (after ``share``). A background request of
cost ``c`` in pool ``key`` takes ``c`` from ``key`` *and* ``c`` from ``key:background``, in one atomic grant. So
in any window background weight is at most ``floor(L * background_share)`` and foreground requests (book
snapshots, which a live book waits for) always find at least ``L - floor(L * background_share)`` of every pool
that backfills cannot take, whatever the backfills do; foreground requests take no background weight, so they
may still use the whole pool when backfills leave it free. Background requests also wait with a worse priority
(the client gives them 10; snapshots 0): within the process a snapshot that arrives is the next to be granted.

**One limiter per budget.** All of an exchange's pools on one scope share one limiter and so one waiting line,
which is strict: only the head of the line tries, so a request for a pool with room waits behind a head that
waits for another, full pool. For exchanges whose requests touch one main pool (Binance spot ``weight``) that
costs nothing; the ccxt ``binance`` id also reaches the futures hosts (``fapi``/``dapi`` pools, 2400 per minute),
and a call waiting there holds back the spot requests of its budget (up to a minute); the ``binance`` id's
``fapi`` pool and ``binanceusdm``'s ``weight`` are the same real limit counted in two budgets today. For exchanges with per-endpoint pools (OKX's "20 requests per 2 s" per endpoint,
https://www.okx.com/docs-v5/en/#overview-rate-limits) a storm of book snapshots waiting on the order-book pool
also holds back this process's requests to other endpoints (instrument lists, trades) until the head is granted:
at most about one window (2 s) per head. Splitting such exchanges into one limiter per independent pool set is the
remedy if that ever matters.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from cryptolink.clock import Clock
from cryptolink.config import RestLimitsConfig
from cryptolink.ratelimit import Grant, LimiterStats, LocalLimiter, Pool, SharedLimiter
from cryptolink.ratelimit.shared import DEFAULT_PREFIX
from cryptolink.rest.costs import Feedback, PoolSpec, rules_for

__all__ = [
    "BACKGROUND_SUFFIX",
    "DEFAULT_BAN_S",
    "DEFAULT_PAUSE_S",
    "REDIS_CALL_TIMEOUT_S",
    "REDIS_MAX_CONNECTIONS",
    "BudgetStats",
    "RateBudget",
    "RateBudgets",
    "RateRulesLike",
]

log = logging.getLogger(__name__)

BACKGROUND_SUFFIX = ":background"
"""Appended to a main pool's name to name its background pool."""

DEFAULT_PAUSE_S = 60.0
"""Pause of a 429 answer whose rules name no duration (the rules normally do: Binance ``Retry-After``)."""

DEFAULT_BAN_S = 120.0
"""Ban of a 418 answer whose rules name no duration (Binance's shortest documented IP ban, 2 minutes:
https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits)."""

REDIS_CALL_TIMEOUT_S = 0.5
"""Longest wait for one Redis call of the shared limiters (then they fall back to their local share)."""

REDIS_MAX_CONNECTIONS = 16
"""Connections of the one Redis client a :class:`RateBudgets` shares between its limiters."""


class RateRulesLike(Protocol):
    """What a budget needs of an exchange's rules: the public side of :class:`cryptolink.rest.costs.RateRules`
    (tests pass their own)."""

    @property
    def exchange(self) -> str:
        """ccxt id."""
        ...

    @property
    def pools(self) -> tuple[PoolSpec, ...]:
        """The documented pools; the first is the exchange's main limit."""
        ...

    def costs(self, method: str, path: str, params: Mapping[str, str]) -> dict[str, int]:
        """Pool key -> weight (>= 1) of one request."""
        ...

    def feedback(self, status: int, headers: Mapping[str, str], *, path: str = "") -> Feedback:
        """What one answer says about the exchange's own counters."""
        ...


@dataclass(frozen=True, slots=True)
class BudgetStats:
    """One budget's counters at one moment (cumulative since it was created).

    Attributes:
        exchange: ccxt id; scope: the IP scope (``"default"`` unless configured).
        limiter: the limiter's own statistics (mode, grants, refusals, per pool use).
        answers_429: HTTP 429 answers fed; answers_418: HTTP 418 answers fed; answers_ban_other: other statuses
            the rules read as a rate-limit refusal (Bybit's 403), counted once each.
        pauses: pauses applied (each 429-like answer pauses the pools its request touched, for every process);
        bans: bans applied (each 418-like answer bans every pool of the scope, for every process).
        header_corrections: weight added to our count from the exchange's own counts (``X-MBX-USED-WEIGHT-1M``
            above ours: other users of the IP, requests made outside the budget).
        garbled_headers: rate-limit header values the rules could not read (ignored).
        paused_for_s: seconds left of the longest pause or ban this process has applied (0 when none; pauses
            applied by other processes through Redis are not seen here).
    """

    exchange: str
    scope: str
    limiter: LimiterStats
    answers_429: int
    answers_418: int
    answers_ban_other: int
    pauses: int
    bans: int
    header_corrections: int
    garbled_headers: int
    paused_for_s: float


class RateBudget:
    """One exchange's documented limits on one IP (scope), bound to one limiter. Built by
    :meth:`RateBudgets.get`; see the module docstring.

    Attributes:
        exchange: ccxt id; scope: the IP scope; rules: the exchange's :class:`~cryptolink.rest.costs.RateRules`.
        limiter: the limiter (process-local or shared through Redis).
        pool_names: pool key -> limiter pool name ``f"{exchange}:{scope}:{key}"``.
        background_names: pool key -> background pool name (``pool_names[key] + ":background"``).
        limiter_scope: the limiter scope a ban covers, ``f"{exchange}:{scope}"``.
        main_pool: the limiter name of the rules' first pool (the exchange's main limit: Binance REQUEST_WEIGHT).
    """

    def __init__(
        self,
        exchange: str,
        scope: str,
        rules: RateRulesLike,
        limiter: LocalLimiter | SharedLimiter,
        pool_names: Mapping[str, str],
        background_names: Mapping[str, str],
        clock: Clock,
        reserved: Mapping[str, int] | None = None,
    ) -> None:
        self.exchange = exchange
        self.scope = scope
        self.rules = rules
        self.limiter = limiter
        self.pool_names = dict(pool_names)
        self.reserved = dict(reserved or {})
        """Pool key -> the part of the documented limit left to others on the IP (``share`` < 1): an exchange's
        used-weight header counts the whole IP, so this much of it is not ours."""
        self.background_names = dict(background_names)
        self.limiter_scope = f"{exchange}:{scope}"
        self.main_pool = self.pool_names[rules.pools[0].key]
        self._clock = clock
        self._paused_until = -math.inf
        self.answers_429 = 0
        self.answers_418 = 0
        self.answers_ban_other = 0
        self.pauses = 0
        self.bans = 0
        self.header_corrections = 0
        self.garbled_headers = 0

    def __repr__(self) -> str:
        return f"RateBudget({self.exchange!r}, {self.scope!r})"

    @property
    def main_limit(self) -> int:
        """The main pool's limit (after ``share``), weight units per :attr:`main_window_s`."""
        return self.limiter.pools[self.main_pool].limit

    @property
    def main_window_s(self) -> float:
        """The main pool's window (the documented one plus the margin), s."""
        return self.limiter.pools[self.main_pool].window_s

    def costs(
        self, method: str, path: str, params: Mapping[str, str], *, background: bool = False
    ) -> dict[str, int]:
        """The limiter costs of one request: the rules' pool key -> weight mapped to pool names; a ``background``
        request also takes the same weights from the background pools.

        Args:
            method: ``"GET"``...; path: URL path without host and query (``/api/v3/depth``); params: the
                query/body params as strings.

        Raises:
            ValueError: the rules named a pool key they do not declare (a bug in the rules).
        """
        raw = self.rules.costs(method, path, params)
        out: dict[str, int] = {}
        for key, weight in raw.items():
            name = self.pool_names.get(key)
            if name is None:
                raise ValueError(f"{self.exchange}: the rules cost {method} {path} in unknown pool {key!r}")
            out[name] = weight
        if background:
            for key, weight in raw.items():
                out[self.background_names[key]] = weight
        return out

    async def acquire(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        *,
        priority: int = 0,
        background: bool = False,
        timeout_s: float | None = None,
    ) -> Grant:
        """Wait until every pool the request touches has room (and no pause or ban is in force), then take its
        weight from all of them at once.

        Args:
            method, path, params: the request (see :meth:`costs`).
            priority: lower is served first within the process (book snapshots 0, backfills 10).
            background: also take the weight from the background pools (see the module docstring).
            timeout_s: longest wait, s (``None``: no limit).

        Returns:
            The grant; hand it to :meth:`feed` with the answer.

        Raises:
            ValueError: the request can never be granted: a weight above a pool's limit (a configuration error:
                a limit, share or override too small for this request), raised at once.
            TimeoutError: no room within ``timeout_s``; nothing was taken.
            cryptolink.ratelimit.LineFull: too many requests already waiting.
        """
        costs = self.costs(method, path, params, background=background)
        try:
            return await self.limiter.acquire(costs, priority=priority, timeout_s=timeout_s)
        except ValueError as exc:
            raise ValueError(
                f"{self.exchange} ({self.scope}): {method} {path} costs {costs}, which can never be granted: "
                f"{exc} (check the limits: share, background_share, overrides)"
            ) from exc

    async def feed(
        self, grant: Grant, status: int, headers: Mapping[str, str], *, path: str = ""
    ) -> float | None:
        """Feed one answer back: the exchange's own counts raise ours (never lower them), a 429-like answer
        pauses the pools the request touched and a 418-like answer bans every pool of the scope, for every
        process sharing the budget. Logs one WARNING per pause or ban that starts (not for one that extends a
        pause already in force).

        Args:
            grant: the request's grant (places the exchange's count at the request's time).
            status: HTTP status; headers: response headers (any case); path: the request's URL path.

        Returns:
            The pause or ban applied, s (``None``: none). A 429 (418) whose rules name no duration pauses
            :data:`DEFAULT_PAUSE_S` (bans :data:`DEFAULT_BAN_S`).
        """
        fb = self.rules.feedback(status, headers, path=path)
        self.garbled_headers += len(fb.garbled)
        for key, used in fb.used.items():
            name = self.pool_names.get(key)
            if name is not None:
                ours = used - self.reserved.get(key, 0)  # the IP's count less the room left to others
                if ours > 0:
                    self.header_corrections += await self.limiter.observe_used(name, ours, at=grant)
        pause_s, ban_s = fb.pause_s, fb.ban_s
        if status == 418 and ban_s is None:
            ban_s = DEFAULT_BAN_S
        elif status == 429 and pause_s is None and ban_s is None:
            pause_s = DEFAULT_PAUSE_S
        if status == 429:
            self.answers_429 += 1
        elif status == 418:
            self.answers_418 += 1
        elif pause_s is not None or ban_s is not None:
            self.answers_ban_other += 1
        if ban_s is not None:
            await self.limiter.ban(self.limiter_scope, ban_s)
            self.bans += 1
            self._note("banned every pool of the IP", status, path, ban_s)
            return ban_s
        if pause_s is not None:
            await self.limiter.pause(list(grant.weights), pause_s)
            self.pauses += 1
            self._note(f"paused {', '.join(grant.weights)}", status, path, pause_s)
            return pause_s
        return None

    def _note(self, what: str, status: int, path: str, duration_s: float) -> None:
        now = self._clock.monotonic()
        if now >= self._paused_until:
            log.warning(
                "REST rate limit: %s scope %s: HTTP %d on %s; %s for %.0f s (every process sharing the budget)",
                self.exchange,
                self.scope,
                status,
                path or "?",
                what,
                duration_s,
            )
        self._paused_until = max(self._paused_until, now + duration_s)

    def paused_for_s(self) -> float:
        """Seconds left of the longest pause or ban this process applied (0 when none)."""
        return max(0.0, self._paused_until - self._clock.monotonic())

    def in_window(self, pool: str | None = None) -> int:
        """Weight this process counts in ``pool``'s window now (default: the main pool): its own grants and the
        exchange's corrections (with a shared limiter, other processes' grants are only in Redis).

        Raises:
            KeyError: unknown pool.
        """
        name = self.main_pool if pool is None else pool
        for p in self.limiter.stats().pools:
            if p.name == name:
                return p.local_in_window
        raise KeyError(name)

    def stats(self) -> BudgetStats:
        """An immutable snapshot."""
        return BudgetStats(
            exchange=self.exchange,
            scope=self.scope,
            limiter=self.limiter.stats(),
            answers_429=self.answers_429,
            answers_418=self.answers_418,
            answers_ban_other=self.answers_ban_other,
            pauses=self.pauses,
            bans=self.bans,
            header_corrections=self.header_corrections,
            garbled_headers=self.garbled_headers,
            paused_for_s=self.paused_for_s(),
        )


class RateBudgets:
    """Per-process registry ``(exchange, scope) -> RateBudget``, created on first use; see the module docstring.

    Args:
        clock: time source of the limiters' waits (and of the local windows).
        redis_url: a Redis URL: every budget is a :class:`~cryptolink.ratelimit.SharedLimiter` on one Redis client
            (bounded pool of :data:`REDIS_MAX_CONNECTIONS`, :data:`REDIS_CALL_TIMEOUT_S` timeouts, no retries)
            that this registry owns; ``None``: process-local :class:`~cryptolink.ratelimit.LocalLimiter`\\ s.
        prefix: Redis key prefix.
        fallback_share: share of each limit a shared limiter uses alone while Redis is unreachable (0 < x <= 1).
        window_margin_s: added to every window, s (>= 0; see the module docstring).
        share: fraction of each documented (or overridden) limit this deployment uses (0 < x <= 1).
        background_share: fraction of each pool background requests may fill (0 < x <= 1).
        overrides: exchange -> pool key -> ``(limit, window_s)`` replacing the documented pair.
        rules: the rules lookup (default :func:`cryptolink.rest.costs.rules_for`; tests pass their own).

    Raises:
        ValueError: a share or the margin out of range; an override for an exchange without rules, for a pool key
            its rules do not declare, or with ``limit < 1`` or ``window_s <= 0``.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        redis_url: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        fallback_share: float = 0.25,
        window_margin_s: float = 0.25,
        share: float = 1.0,
        background_share: float = 0.5,
        overrides: Mapping[str, Mapping[str, tuple[int, float]]] | None = None,
        rules: Callable[[str], RateRulesLike] = rules_for,
    ) -> None:
        for label, value in (
            ("fallback_share", fallback_share),
            ("share", share),
            ("background_share", background_share),
        ):
            if not 0 < value <= 1:
                raise ValueError(f"{label} must be in (0, 1], got {value}")
        if not window_margin_s >= 0:
            raise ValueError(f"window_margin_s must be >= 0, got {window_margin_s}")
        self._clock = clock
        self.redis_url = redis_url
        self.prefix = prefix
        self.fallback_share = fallback_share
        self.window_margin_s = window_margin_s
        self.share = share
        self.background_share = background_share
        self._rules = rules
        self.overrides: dict[str, dict[str, tuple[int, float]]] = {}
        for exchange, pools in (overrides or {}).items():
            try:
                known = {p.key for p in rules(exchange).pools}
            except KeyError as exc:
                raise ValueError(f"overrides: {exc.args[0] if exc.args else exchange}") from None
            for key, (limit, window_s) in pools.items():
                if key not in known:
                    raise ValueError(
                        f"overrides: {exchange} has no pool {key!r}; pools: {', '.join(sorted(known))}"
                    )
                if limit < 1 or not window_s > 0:
                    raise ValueError(f"overrides: {exchange} {key}: need limit >= 1 and window_s > 0")
            self.overrides[exchange] = {k: (int(v[0]), float(v[1])) for k, v in pools.items()}
        self._budgets: dict[tuple[str, str], RateBudget] = {}
        self._client: aioredis.Redis | None = None

    @classmethod
    def from_config(cls, limits: RestLimitsConfig, clock: Clock) -> RateBudgets:
        """The process's rate budgets as the ``rest.limits`` section describes them."""
        return cls(
            clock,
            redis_url=limits.redis_url.get_secret_value() if limits.redis_url is not None else None,
            prefix=limits.prefix,
            fallback_share=limits.fallback_share,
            window_margin_s=limits.window_margin_s,
            share=limits.share,
            background_share=limits.background_share,
            overrides=limits.overrides,
        )

    def get(self, exchange: str, scope: str = "default") -> RateBudget:
        """The budget of ``exchange`` (ccxt id) on IP ``scope``, created on first use.

        Raises:
            KeyError: no rules for ``exchange`` (the message lists the known ids).
            ValueError: ``scope`` empty.
        """
        budget = self._budgets.get((exchange, scope))
        if budget is not None:
            return budget
        if not scope:
            raise ValueError("a budget scope must not be empty")
        rules = self._rules(exchange)
        override = self.overrides.get(exchange, {})
        limiter_scope = f"{exchange}:{scope}"
        pools: list[Pool] = []
        names: dict[str, str] = {}
        background: dict[str, str] = {}
        reserved: dict[str, int] = {}
        for spec in rules.pools:
            limit, window_s = override.get(spec.key, (spec.limit, spec.window_s))
            name = f"{exchange}:{scope}:{spec.key}"
            main = Pool(
                name, max(1, math.floor(limit * self.share)), window_s + self.window_margin_s, limiter_scope
            )
            reserved[spec.key] = max(0, limit - main.limit)
            side = Pool(
                name + BACKGROUND_SUFFIX,
                max(1, math.floor(main.limit * self.background_share)),
                main.window_s,
                limiter_scope,
            )
            pools += [main, side]
            names[spec.key] = name
            background[spec.key] = side.name
        limiter: LocalLimiter | SharedLimiter
        if self.redis_url is None:
            limiter = LocalLimiter(pools, self._clock)
        else:
            limiter = SharedLimiter(
                pools,
                client=self._redis(self.redis_url),
                prefix=self.prefix,
                fallback_share=self.fallback_share,
                call_timeout_s=REDIS_CALL_TIMEOUT_S,
                clock=self._clock,
            )
        budget = RateBudget(exchange, scope, rules, limiter, names, background, self._clock, reserved)
        self._budgets[(exchange, scope)] = budget
        return budget

    def _redis(self, url: str) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.Redis.from_pool(
                aioredis.BlockingConnectionPool.from_url(
                    url,
                    max_connections=REDIS_MAX_CONNECTIONS,
                    timeout=REDIS_CALL_TIMEOUT_S,
                    socket_timeout=REDIS_CALL_TIMEOUT_S,
                    socket_connect_timeout=REDIS_CALL_TIMEOUT_S,
                    retry=Retry(NoBackoff(), 0),
                )
            )
        return self._client

    def budgets(self) -> tuple[RateBudget, ...]:
        """Every budget created so far, in creation order."""
        return tuple(self._budgets.values())

    def stats(self) -> tuple[BudgetStats, ...]:
        """Every budget's statistics, in creation order."""
        return tuple(b.stats() for b in self._budgets.values())

    async def aclose(self) -> None:
        """Close the shared Redis client (idempotent). The budgets' statistics stay readable; do not acquire
        through them afterwards."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
