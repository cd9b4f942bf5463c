"""The REST manager: pooled ccxt instances in groups, load balancing, failover, health checks, exact shared rate
limits (``docs/rest.md``).

>>> async with RestManager(config.rest) as rm:                                 # doctest: +SKIP
...     book = await rm.call("binance-a", "fetch_order_book", "BTC/USDT", limit=100)
...     ticker = await rm.call_group("btc-spot", "fetch_ticker", "BTC/USDT")

- **Members**: one ccxt async instance each (:class:`~cryptolink.rest.managed.ManagedExchange`), created at
  start and reused: ccxt's own HTTP session, keep-alive and connection limits; closed at exit.
- **Groups** choose a member per call with their strategy (:mod:`cryptolink.rest.strategy`). A failure another
  member can absorb (network error, timeout, 429/418, exchange unavailable or in maintenance, no room in the
  member's budget within its timeout) moves the call to the next member in the strategy's order, at most
  ``retry.max_attempts`` tries with capped, jittered backoff. Errors another member cannot fix (bad symbol, bad
  request, authentication, insufficient funds...) are raised at once. A call that may change state on the
  exchange (any method not starting with ``fetch``/``load``) is tried again only when the exchange certainly did
  not act on it: a 429/418 answer or a budget wait that never sent it.
- **Health** (:mod:`cryptolink.rest.health`): every member is checked every ``health.interval_s`` with
  ``fetch_time`` (or ``fetch_status`` where ccxt has no ``fetchTime``) and judged on every call as well; an
  ``offline`` or ``maintenance`` member gets no group traffic until a check succeeds, then regains its weight
  gradually. After a failed check the next one comes sooner (``interval_s / 10``, at least 1 s).
- **Budgets** (:mod:`cryptolink.rest.budget`): a member draws on the budget of (exchange, ``ip``), shared with
  every member and engine gateway of the same exchange and IP in this process and, with ``limits.redis_url``,
  in every process.

Errors: :class:`UnknownMember` / :class:`UnknownGroup` for names not configured, :class:`NoMemberAvailable`
when every member of a group is offline or in maintenance; ccxt's own errors otherwise (``ccxt.BadSymbol``...).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptolink.clock import Clock, SystemClock
from cryptolink.config import RestConfig, RestGroupConfig, RestMemberConfig
from cryptolink.engine.quality import LATENCY_BUCKETS_MS, LatencyHistogram
from cryptolink.errors import ConfigError, CryptolinkError
from cryptolink.ratelimit.line import LineFull
from cryptolink.redact import scrub
from cryptolink.rest.budget import RateBudget, RateBudgets
from cryptolink.rest.health import HealthThresholds, MemberHealth, MemberState
from cryptolink.rest.managed import ManagedExchange, MemberClosed, RequestTiming
from cryptolink.rest.stats import GroupStats, MemberStats, RestManagerStats
from cryptolink.rest.strategy import Candidate, Strategy, make_strategy

__all__ = [
    "NoMemberAvailable",
    "ReconfigureResult",
    "RestManager",
    "UnknownGroup",
    "UnknownMember",
    "classify",
]

_log = logging.getLogger(__name__)

#: priority of health checks in the budgets' wait lines (book snapshots 0, user calls 1, backfills 10)
CHECK_PRIORITY = 5
CALL_PRIORITY = 1


class UnknownMember(CryptolinkError, KeyError):
    """No member of that name is configured."""


class UnknownGroup(CryptolinkError, KeyError):
    """No group of that name is configured."""


class NoMemberAvailable(CryptolinkError):
    """Every member of the group is offline or in maintenance (``states``: member -> state)."""

    def __init__(self, group: str, states: Mapping[str, str]) -> None:
        detail = ", ".join(f"{m}: {s}" for m, s in states.items())
        super().__init__(f"group {group!r}: no member available ({detail})")
        self.group = group
        self.states = dict(states)


#: error kinds another member can absorb, and whether the exchange certainly did not act on the request
_ABSORBABLE = {"network", "timeout", "rate_limit", "unavailable", "maintenance", "budget", "bad_response"}
_NOT_SENT = {"rate_limit", "budget"}
_HEALTH_FAILURE = {"network", "timeout", "unavailable", "bad_response"}


def classify(exc: BaseException) -> str:
    """The kind of a call's failure: ``budget`` (never sent: no room in the budget in time, its line full, or
    the member closed by a reload meanwhile), ``nonce`` (``InvalidNonce``: a timestamp outside the exchange's
    receive window or a reused nonce; neither retried nor a health failure),
    ``rate_limit`` (429/418, ccxt ``RateLimitExceeded``/``DDoSProtection``), ``maintenance``
    (``OnMaintenance``), ``unavailable`` (``ExchangeNotAvailable``), ``timeout`` (``RequestTimeout``),
    ``network`` (other ``NetworkError``), ``bad_response`` (``BadResponse``), ``auth``
    (``AuthenticationError``, ``PermissionDenied``, ``AccountSuspended``), ``bad_request`` (``BadRequest`` and
    its ``BadSymbol``, ``ArgumentsRequired``, ``NotSupported``), ``exchange`` (other ``ExchangeError``),
    ``other``."""
    import ccxt  # here, not at the top: ccxt takes over a second to import, and a run without members needs none

    if isinstance(exc, TimeoutError | LineFull | MemberClosed):
        return "budget"
    if isinstance(exc, ccxt.InvalidNonce):  # a stale timestamp or reused nonce: the member is fine
        return "nonce"
    if isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
        return "rate_limit"
    if isinstance(exc, ccxt.OnMaintenance):
        return "maintenance"
    if isinstance(exc, ccxt.ExchangeNotAvailable):
        return "unavailable"
    if isinstance(exc, ccxt.RequestTimeout):
        return "timeout"
    if isinstance(exc, ccxt.NetworkError):
        return "network"
    if isinstance(exc, ccxt.BadResponse):
        return "bad_response"
    if isinstance(exc, ccxt.AuthenticationError | ccxt.PermissionDenied | ccxt.AccountSuspended):
        return "auth"
    if isinstance(exc, ccxt.BadRequest | ccxt.ArgumentsRequired | ccxt.NotSupported):
        return "bad_request"
    if isinstance(exc, ccxt.ExchangeError):
        return "exchange"
    return "other"


def _check_method(managed: ManagedExchange) -> str | None:
    """The health check of a member: ``fetch_time``, else ``fetch_status``, else ``None`` (ccxt has neither)."""
    has = getattr(managed.exchange, "has", {}) or {}
    if has.get("fetchTime"):
        return "fetch_time"
    if has.get("fetchStatus"):
        return "fetch_status"
    return None


def _idempotent(method: str) -> bool:
    return method.startswith(("fetch", "load"))


def _secrets(config: RestMemberConfig) -> list[str]:
    return [
        s.get_secret_value() for s in (config.api_key, config.api_secret, config.password) if s is not None
    ]


def _error_text(exc: BaseException, config: RestMemberConfig) -> str:
    """``"<Type>: <message>"`` of a call's error, without the member's credentials, at most 300 characters."""
    return scrub(f"{type(exc).__name__}: {exc}", _secrets(config))[:300]


@dataclass(eq=False)
class _Member:
    name: str
    config: RestMemberConfig
    managed: ManagedExchange
    health: MemberHealth
    calls: int = 0
    successes: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    http_requests: int = 0
    http_429: int = 0
    http_418: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    checks: int = 0
    check_failures: int = 0
    last_error: str | None = None
    next_check_at: float = 0.0
    created_at: float = 0.0
    check_method: str | None = None
    """``fetch_time``, ``fetch_status`` or ``None`` (ccxt can check neither: never judged offline)."""


@dataclass(eq=False)
class _GroupCounters:
    calls: int = 0
    successes: int = 0
    failures: int = 0
    retries: int = 0
    unavailable: int = 0
    chosen: dict[str, int] = field(default_factory=dict)


@dataclass(eq=False)
class _Group:
    name: str
    config: RestGroupConfig
    strategy: Strategy
    c: _GroupCounters = field(default_factory=_GroupCounters)


@dataclass(frozen=True, slots=True)
class ReconfigureResult:
    """What :meth:`RestManager.reconfigure` did: members added, removed, replaced (their instance rebuilt),
    reweighted (weight or priority only), groups changed, and settings that need a restart (``limits``)."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    replaced: tuple[str, ...]
    reweighted: tuple[str, ...]
    groups_changed: tuple[str, ...]
    restart_required: tuple[str, ...]


def _thresholds(config: RestConfig) -> HealthThresholds:
    h = config.health
    return HealthThresholds(
        degraded_latency_ms=h.degraded_latency_ms,
        degraded_error_rate=h.degraded_error_rate,
        offline_after_failures=h.offline_after_failures,
        recovery_s=h.recovery_s,
    )


class RestManager:
    """See the module docstring. An async context manager: members are created on enter and closed on exit.

    Args:
        config: the ``rest:`` section (:class:`cryptolink.config.RestConfig`).
        budgets: the process's rate budgets, shared with an :class:`~cryptolink.manager.ExchangeManager`;
            ``None`` builds them from ``config.limits`` (and closes them at exit).
        clock: time source of health checks, backoff and latency.
        rng: randomness of the backoff jitter (seeded in tests).

    Raises:
        ConfigError: (on enter) a member's exchange unknown to ccxt.
    """

    def __init__(
        self,
        config: RestConfig,
        *,
        budgets: RateBudgets | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._clock = clock if clock is not None else SystemClock()
        self._owns_budgets = budgets is None
        self._budgets = (
            budgets if budgets is not None else RateBudgets.from_config(config.limits, self._clock)
        )
        self._rng = rng if rng is not None else random.Random()
        self._members: dict[str, _Member] = {}
        self._groups: dict[str, _Group] = {}
        self._health_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()
        self._checks: set[asyncio.Task[None]] = set()
        self.reloads = 0
        self._started = False
        self._listeners: list[Callable[[str, str, str], None]] = []
        self._health_passes = 0

    # ------------------------------------------------------------------------------------------ life cycle

    @classmethod
    def from_yaml(cls, path: str | Path, **kwargs: Any) -> RestManager:
        """A manager from the ``rest:`` section of the YAML file at ``path``.

        Raises:
            ConfigError: every wrong field of the section; OSError: the file cannot be read.
        """
        text = Path(path).read_text(encoding="utf-8")
        return cls(RestConfig.from_yaml_text(text, source=str(path)), **kwargs)

    @property
    def config(self) -> RestConfig:
        """The configuration in force."""
        return self._config

    @property
    def budgets(self) -> RateBudgets:
        """The rate budgets the members draw on."""
        return self._budgets

    async def start(self) -> None:
        """Create every member's instance and start the health checks.

        Raises:
            ConfigError: a member's exchange unknown to ccxt (nothing is left open).
        """
        if self._started:
            return
        problems: list[tuple[str, str]] = []
        built: dict[str, _Member] = {}
        for name, member in self._config.members.items():
            try:
                built[name] = self._build_member(name, member)
            except ConfigError as exc:
                problems.extend((f"rest.members.{name}.{p}", m) for p, m in exc.problems)
        if problems:
            for m in built.values():
                await m.managed.close()
            raise ConfigError(problems)
        self._members = built
        self._groups = {n: self._build_group(n, g) for n, g in self._config.groups.items()}
        self._started = True
        self._health_task = asyncio.create_task(self._health_loop(), name="rest-health")

    async def close(self) -> None:
        """Stop the health checks and close every instance (and the budgets this manager built)."""
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
            self._health_task = None
        for task in list(self._checks):  # a check may wait long for the budget (a ban): it is not needed now
            task.cancel()
        if self._checks:
            await asyncio.gather(*self._checks, return_exceptions=True)
        for m in self._members.values():
            await m.managed.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        if self._owns_budgets:
            await self._budgets.aclose()
        self._started = False

    async def __aenter__(self) -> RestManager:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _budget_of(self, member: RestMemberConfig) -> RateBudget | None:
        try:
            return self._budgets.get(member.exchange, member.ip)
        except KeyError:
            _log.warning(
                "REST %s: no documented rate limits known for this exchange; ccxt's own (per-process) "
                "throttler stays on",
                member.exchange,
            )
            return None

    def _build_member(self, name: str, config: RestMemberConfig) -> _Member:
        health = MemberHealth(config.weight, _thresholds(self._config))
        record: list[_Member] = []

        def on_http(status: int | None, seconds: float) -> None:
            m = record[0]
            m.http_requests += 1
            if status is not None:
                m.latency.observe(seconds * 1000.0)
            if status == 429:
                m.http_429 += 1
            elif status == 418:
                m.http_418 += 1

        managed = ManagedExchange(name, config, self._budget_of(config), self._clock, on_http)
        now = self._clock.monotonic()
        first = now if self._config.health.check_at_start else now + self._config.health.interval_s
        check_method = _check_method(managed)
        if check_method is None:
            first = math.inf
            _log.warning(
                "REST member %s: ccxt's %s has neither fetchTime nor fetchStatus: no health checks, so it is "
                "never taken offline (nothing could bring it back); its errors are counted",
                name,
                config.exchange,
            )
        member = _Member(
            name, config, managed, health, next_check_at=first, created_at=now, check_method=check_method
        )
        record.append(member)
        return member

    def _build_group(self, name: str, config: RestGroupConfig) -> _Group:
        return _Group(name, config, make_strategy(config.strategy))

    # ------------------------------------------------------------------------------------------ calls

    def _member(self, name: str) -> _Member:
        member = self._members.get(name)
        if member is None:
            raise UnknownMember(f"no REST member {name!r}; members: {sorted(self._members)}")
        return member

    async def call(self, member: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """``await <member's ccxt instance>.<method>(*args, **kwargs)`` within the member's budget.

        Raises:
            UnknownMember: no such member.
            ccxt.BaseError: ccxt's error; TimeoutError: no room in the budget within the member's timeout.
        """
        m = self._member(member)
        return await self._call_member(m, method, args, kwargs)

    async def _call_member(
        self,
        m: _Member,
        method: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        timing: RequestTiming | None = None,
    ) -> Any:
        m.calls += 1
        try:
            result, timing = await m.managed.call(
                method,
                *args,
                priority=CALL_PRIORITY,
                wait_timeout_s=m.config.timeout_s,
                timing=timing,
                **kwargs,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            kind = classify(exc)
            m.errors[kind] = m.errors.get(kind, 0) + 1
            m.last_error = _error_text(exc, m.config)
            self._judge_failure(m, kind)
            raise
        m.successes += 1
        if timing.requests:
            m.health.record_success(timing.http_s * 1000.0 / timing.requests, self._clock.monotonic())
        return result

    def _judge_failure(self, m: _Member, kind: str) -> None:
        if m.check_method is None:
            return  # no check could bring it back: never judged offline
        now = self._clock.monotonic()
        before = m.health.state
        if kind == "maintenance":
            m.health.record_maintenance(now)
        elif kind in _HEALTH_FAILURE or kind == "rate_limit":
            m.health.record_failure(now, kind=kind)
        if m.health.state != before:
            self._state_changed(m, before)

    def add_state_listener(self, listener: Callable[[str, str, str], None]) -> None:
        """Call ``listener(member, old_state, new_state)`` on every health state change of a member (in the event
        loop, synchronously: keep it short; an exception it raises is logged and ignored)."""
        self._listeners.append(listener)

    def _state_changed(self, m: _Member, before: MemberState) -> None:
        level = logging.INFO if m.health.state is MemberState.HEALTHY else logging.WARNING
        _log.log(level, "REST member %s: %s -> %s", m.name, before.value, m.health.state.value)
        for listener in list(self._listeners):
            try:
                listener(m.name, before.value, m.health.state.value)
            except Exception:
                _log.exception("REST state listener %r failed", listener)
        if m.health.state in (MemberState.OFFLINE, MemberState.MAINTENANCE):
            m.next_check_at = min(m.next_check_at, self._clock.monotonic() + self._retry_check_s())
            self._wake.set()

    async def call_group(self, group: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` on a member chosen by the group's strategy; on a failure another member can absorb,
        try the next in the strategy's order (see the module docstring).

        Raises:
            UnknownGroup: no such group.
            NoMemberAvailable: every member offline or in maintenance.
            ccxt.BaseError: an error no other member can fix, or the last error after ``max_attempts`` tries.
        """
        g = self._groups.get(group)
        if g is None:
            raise UnknownGroup(f"no REST group {group!r}; groups: {sorted(self._groups)}")
        g.c.calls += 1
        now = self._clock.monotonic()
        members = [self._members[n] for n in g.config.members if n in self._members]
        order = g.strategy.order([self._candidate(m, now) for m in members], now)
        if not order:
            g.c.unavailable += 1
            g.c.failures += 1
            raise NoMemberAvailable(group, {m.name: m.health.state.value for m in members})
        g.c.chosen[order[0]] = g.c.chosen.get(order[0], 0) + 1
        retry = self._config.retry
        idempotent = _idempotent(method)
        last: BaseException | None = None
        for attempt in range(retry.max_attempts):
            m = self._members.get(order[attempt % len(order)])
            if m is None:  # removed by a reload during this call
                continue
            if attempt:
                g.c.retries += 1
                cap = min(retry.backoff_max_s, retry.backoff_initial_s * 2 ** (attempt - 1))
                await self._clock.sleep(self._rng.uniform(0.0, cap))
            timing = RequestTiming()
            try:
                result = await self._call_member(m, method, args, kwargs, timing)
            except asyncio.CancelledError:
                g.c.failures += 1
                raise
            except Exception as exc:
                kind = classify(exc)
                # a call that may change state goes again only when nothing it sent can have acted (a
                # multi-request method such as an emulated edit_order may have done its first step)
                safe = idempotent or (kind in _NOT_SENT and timing.acted == 0)
                if kind not in _ABSORBABLE or not safe:
                    g.c.failures += 1
                    raise
                last = exc
                continue
            g.c.successes += 1
            return result
        g.c.failures += 1
        if last is None:  # every member of the order was removed by a reload meanwhile
            raise NoMemberAvailable(group, {n: "removed" for n in order})
        raise last

    def _candidate(self, m: _Member, now: float) -> Candidate:
        return Candidate(
            name=m.name,
            weight=m.config.weight,
            priority=m.config.priority,
            effective_weight=m.health.effective_weight(now),
            latency_ms=m.health.latency_ms,
        )

    # ------------------------------------------------------------------------------------------ health

    def _retry_check_s(self) -> float:
        return max(1.0, self._config.health.interval_s / 10.0)

    async def _health_loop(self) -> None:
        while True:
            self._health_passes += 1
            self._wake.clear()
            now = self._clock.monotonic()
            due = [m for m in self._members.values() if m.next_check_at <= now]
            for m in due:
                m.next_check_at = float("inf")  # until its check is done
                task = asyncio.create_task(self._check(m), name=f"rest-check-{m.name}")
                self._checks.add(task)
                task.add_done_callback(self._checks.discard)
            # the next check due; at least once per interval (members may come and go), woken early by _wake
            earliest = min((m.next_check_at for m in self._members.values()), default=math.inf)
            wait = min(earliest - self._clock.monotonic(), self._config.health.interval_s)
            if wait <= 0:
                await asyncio.sleep(0)  # a check fell due meanwhile: dispatch it on the next pass
                continue
            sleeper = asyncio.ensure_future(self._clock.sleep(wait))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()

    async def _check(self, m: _Member) -> None:
        """One health check of ``m``: ``fetch_time`` (``fetch_status`` where ccxt has no ``fetchTime``)."""
        method = m.check_method
        if method is None:
            return
        timeout = self._config.health.timeout_s
        started = self._clock.monotonic()
        ok = False
        maintenance = False
        latency_ms: float | None = None
        m.checks += 1
        try:
            result, timing = await m.managed.call(
                method, priority=CHECK_PRIORITY, wait_timeout_s=timeout, http_timeout_s=timeout
            )
            ok = True
            if (
                method == "fetch_status"
                and isinstance(result, dict)
                and result.get("status") == "maintenance"
            ):
                ok, maintenance = False, True
            if timing.requests:
                latency_ms = timing.http_s * 1000.0 / timing.requests
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            kind = classify(exc)
            maintenance = kind == "maintenance"
            if (
                kind == "budget"
            ):  # never sent (no room in the budget in time): it says nothing; ask again soon
                if self._members.get(m.name) is m:
                    m.next_check_at = started + self._retry_check_s()
                    self._wake.set()
                return
            if kind == "rate_limit":
                ok = True  # the member answered: not a health failure
            else:
                m.check_failures += 1
                m.last_error = f"health check {method}: " + _error_text(exc, m.config)
        if m.name not in self._members or self._members[m.name] is not m:
            return  # removed or replaced meanwhile
        before = m.health.state
        m.health.check_result(ok, latency_ms, self._clock.monotonic(), maintenance=maintenance)
        if m.health.state != before:
            self._state_changed(m, before)
        healthy_now = m.health.state in (MemberState.HEALTHY, MemberState.DEGRADED)
        interval = self._config.health.interval_s if (ok and healthy_now) else self._retry_check_s()
        m.next_check_at = started + interval
        self._wake.set()

    async def check_now(self, member: str) -> str:
        """Run one health check of ``member`` now and return its state.

        Raises:
            UnknownMember: no such member.
        """
        m = self._member(member)
        await self._check(m)
        return m.health.state.value

    def state(self, member: str) -> str:
        """The member's health state (``healthy``, ``degraded``, ``offline``, ``maintenance``).

        Raises:
            UnknownMember: no such member.
        """
        return self._member(member).health.state.value

    # ------------------------------------------------------------------------------------------ reload

    async def reconfigure(self, config: RestConfig) -> ReconfigureResult:
        """Apply a new ``rest:`` section without touching what did not change: members added, removed (closed
        once their calls in flight end), rebuilt when their exchange, hosts, credentials, options, ip, timeout or
        concurrency change, reweighted in place when only ``weight``/``priority`` change; groups rebuilt when
        their members or strategy change (a group whose definition is unchanged keeps its strategy state);
        health and retry settings apply to every member. ``limits`` changes need a restart (the budgets are
        shared with the engine and other processes): they are reported in ``restart_required`` and logged.
        """
        async with self._reload_lock:
            old = self._config
            added, removed, replaced, reweighted, groups_changed = [], [], [], [], []
            restart = ["rest.limits"] if config.limits != old.limits else []
            if restart:
                _log.warning("REST reload: rest.limits changed; it takes effect at the next restart")
            for name in old.members:
                if name not in config.members:
                    removed.append(name)
            new_members: dict[str, _Member] = {}
            to_close: list[_Member] = []
            for name, mc in config.members.items():
                current = self._members.get(name)
                if current is None:
                    new_members[name] = self._build_member(name, mc)
                    added.append(name)
                    continue
                same = current.config.model_copy(update={"weight": mc.weight, "priority": mc.priority})
                if same != mc:
                    new_members[name] = self._build_member(name, mc)
                    to_close.append(current)
                    replaced.append(name)
                    continue
                if current.config != mc:
                    current.config = mc
                    current.health.set_weight(mc.weight)
                    reweighted.append(name)
                new_members[name] = current
            to_close.extend(self._members[n] for n in removed if n in self._members)
            if config.health != old.health:
                for m in new_members.values():
                    m.health.set_thresholds(_thresholds(config))
            new_groups: dict[str, _Group] = {}
            for gname, gc in config.groups.items():
                current_g = self._groups.get(gname)
                if current_g is not None and current_g.config == gc and not (set(gc.members) & set(replaced)):
                    new_groups[gname] = current_g
                else:
                    new_groups[gname] = self._build_group(gname, gc)
                    if current_g is not None:  # one set of counters: calls in flight on the old one count too
                        new_groups[gname].c = current_g.c
                    groups_changed.append(gname)
            groups_changed.extend(g for g in self._groups if g not in config.groups)
            self._members = new_members
            self._groups = new_groups
            self._config = config
            self.reloads += 1
            for m in to_close:
                task = asyncio.create_task(self._close_when_idle(m), name=f"rest-close-{m.name}")
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            self._wake.set()
            result = ReconfigureResult(
                tuple(added),
                tuple(removed),
                tuple(replaced),
                tuple(reweighted),
                tuple(groups_changed),
                tuple(restart),
            )
            _log.info(
                "REST reload: added %s, removed %s, replaced %s, reweighted %s, groups changed %s",
                list(added),
                removed,
                replaced,
                reweighted,
                groups_changed,
            )
            return result

    async def _close_when_idle(self, m: _Member, bound_s: float = 60.0) -> None:
        """Close a removed or replaced member once its requests in flight have ended (at most ``bound_s``)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(m.managed.wait_idle(), bound_s)
        await m.managed.close()

    # ------------------------------------------------------------------------------------------ stats

    def stats(self) -> RestManagerStats:
        """An immutable snapshot (:class:`~cryptolink.rest.stats.RestManagerStats`)."""
        now = self._clock.monotonic()
        members = []
        for m in self._members.values():
            h = m.health.snapshot(now)
            members.append(
                MemberStats(
                    name=m.name,
                    exchange=m.config.exchange,
                    ip=m.config.ip,
                    state=h.state.value,
                    since_s=max(0.0, now - (h.since if h.since is not None else m.created_at)),
                    weight=m.config.weight,
                    effective_weight=h.effective_weight,
                    priority=m.config.priority,
                    calls=m.calls,
                    successes=m.successes,
                    errors=dict(m.errors),
                    http_requests=m.http_requests,
                    http_429=m.http_429,
                    http_418=m.http_418,
                    latency_ms=h.latency_ms,
                    latency_buckets_ms=LATENCY_BUCKETS_MS,
                    latency_counts=m.latency.cumulative(),
                    latency_sum_ms=m.latency.sum_ms,
                    latency_count=m.latency.count,
                    error_rate=h.error_rate,
                    consecutive_failures=h.consecutive_failures,
                    checks=m.checks,
                    check_failures=m.check_failures,
                    last_error=m.last_error,
                    transitions=h.transitions,
                    in_flight=m.managed.in_flight,
                )
            )
        groups = tuple(
            GroupStats(
                name=g.name,
                strategy=g.config.strategy,
                members=tuple(g.config.members),
                calls=g.c.calls,
                successes=g.c.successes,
                failures=g.c.failures,
                retries=g.c.retries,
                chosen=dict(g.c.chosen),
                unavailable=g.c.unavailable,
            )
            for g in self._groups.values()
        )
        return RestManagerStats(
            members=tuple(members),
            groups=groups,
            budgets=self._budgets.stats(),
            reloads=self.reloads,
            taken_at_ms=time.time_ns() // 1_000_000,
        )
