"""The shared store: the weighted sliding-window log of every pool in Redis, one Lua script per operation.

Keys, under a configurable ``prefix`` (put a hash tag in it, ``{cl}``, to keep every key in one slot of a
Redis Cluster):

- ``<prefix>:pool:<name>:log``: sorted set of grants; member ``<weight>:<unique id>``, score = grant time in
  epoch µs of the Redis server (integers, exact in a double);
- ``<prefix>:pool:<name>:total``: the summed weight of the log (rebuilt from the log if it goes missing);
- ``<prefix>:pool:<name>:pause``: present while the pool is paused (a 429), lifetime = the pause;
- ``<prefix>:scope:<scope>:ban``: present while a scope is banned (a 418), lifetime = the ban.

Log and total get a lifetime of one window plus :data:`KEY_MARGIN_MS` at every write: an abandoned pool
vanishes. Time comes from Redis ``TIME`` inside the script: one clock for every process and machine.

Acquisition (:data:`ACQUIRE`): for every pool touched, drop the grants older than the window (subtracting their
weight from the total), read the pause and ban lifetimes and the room; if every pool has room and none is paused
or banned, add the grant to every log and total and answer the server time; else write nothing but the pruning
and answer the wait, µs: the longest of the pauses, bans, and per full pool the time until its oldest grants
that must expire to make room have expired.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from cryptolink.ratelimit.pool import Attempt, Grant, Pool, WaitReason, pool_table, seconds_to_us

__all__ = [
    "ACQUIRE",
    "ADJUST",
    "BLOCK",
    "KEY_MARGIN_MS",
    "RedisWindowStore",
    "ban_key",
    "pool_keys",
]

KEY_MARGIN_MS = 1000
"""A pool's keys live this long (ms) beyond one window after their last write."""

_PRUNE = """
local function weight_of(member)
  return tonumber(string.match(member, '^(%d+):'))
end

-- Drop the grants of log that left the window at now; answer the up-to-date total.
local function prune(log, tot, horizon)
  if redis.call('ZCARD', log) == 0 then
    return 0
  end
  local total = tonumber(redis.call('GET', tot))
  local old = redis.call('ZRANGEBYSCORE', log, '-inf', horizon)
  if #old > 0 then
    redis.call('ZREMRANGEBYSCORE', log, '-inf', horizon)
  end
  if total == nil then
    total = 0
    for _, m in ipairs(redis.call('ZRANGE', log, 0, -1)) do
      total = total + weight_of(m)
    end
  else
    for _, m in ipairs(old) do
      total = total - weight_of(m)
    end
  end
  if total < 0 then
    total = 0
  end
  return total
end

local function store(log, tot, total, ttl)
  redis.call('SET', tot, total, 'PX', ttl)
  redis.call('PEXPIRE', log, ttl)
end

-- After a prune without a grant: refresh the lifetimes, or drop the total of an emptied log.
local function keep(log, tot, total, ttl)
  if redis.call('EXISTS', log) == 1 then
    store(log, tot, total, ttl)
  else
    redis.call('DEL', tot)
  end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"""

ACQUIRE = (
    _PRUNE
    + """
local n = tonumber(ARGV[1])
local id = ARGV[2]
local wait, reason, culprit = 0, '', ''
local totals = {}
for i = 1, n do
  local log, tot, pause, ban = KEYS[4*i-3], KEYS[4*i-2], KEYS[4*i-1], KEYS[4*i]
  local cost, limit = tonumber(ARGV[4*i-1]), tonumber(ARGV[4*i])
  local window, ttl = tonumber(ARGV[4*i+1]), tonumber(ARGV[4*i+2])
  local total = prune(log, tot, now - window)
  totals[i] = total
  keep(log, tot, total, ttl)
  local p = redis.call('PTTL', pause)
  if p > 0 and p * 1000 > wait then
    wait, reason, culprit = p * 1000, 'paused', i
  end
  local b = redis.call('PTTL', ban)
  if b > 0 and b * 1000 > wait then
    wait, reason, culprit = b * 1000, 'banned', i
  end
  local need = total + cost - limit
  if need > 0 then
    local freed, start, room = 0, 0, window
    while freed < need do
      local batch = redis.call('ZRANGE', log, start, start + 127, 'WITHSCORES')
      if #batch == 0 then
        break
      end
      for j = 1, #batch, 2 do
        freed = freed + weight_of(batch[j])
        if freed >= need then
          room = tonumber(batch[j + 1]) + window - now
          break
        end
      end
      start = start + 128
    end
    if room < 1 then
      room = 1
    end
    if room > wait then
      wait, reason, culprit = room, 'full', i
    end
  end
end
if wait > 0 then
  return {0, now, wait, reason, culprit}
end
for i = 1, n do
  local log, tot = KEYS[4*i-3], KEYS[4*i-2]
  local cost, ttl = tonumber(ARGV[4*i-1]), tonumber(ARGV[4*i+2])
  redis.call('ZADD', log, now, string.format('%d:%s', cost, id))
  store(log, tot, totals[i] + cost, ttl)
end
return {1, now, 0, '', ''}
"""
)
"""KEYS: per pool ``log, total, pause, ban``. ARGV: pool count, request id, then per pool ``weight, limit,
window µs, key lifetime ms``. Answers ``{1, now µs, 0, '', ''}`` or ``{0, now µs, wait µs, reason, pool index
(1-based)}``."""

ADJUST = (
    _PRUNE
    + """
local log, tot = KEYS[1], KEYS[2]
local used, window, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local mode, id = ARGV[5], ARGV[6]
local at = now
if ARGV[4] ~= '' then
  at = math.min(tonumber(ARGV[4]), now)
end
local total = prune(log, tot, now - window)
if at <= now - window then
  return {0, total}
end
local deficit = used
if mode == 'used' then
  local later = 0
  if at < now then
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', log, string.format('(%.0f', at), '+inf')) do
      later = later + weight_of(m)
    end
  end
  deficit = used - (total - later)
end
if deficit <= 0 then
  keep(log, tot, total, ttl)
  return {0, total}
end
redis.call('ZADD', log, at, string.format('%d:%s', deficit, id))
store(log, tot, total + deficit, ttl)
return {deficit, total + deficit}
"""
)
"""KEYS: ``log, total`` of one pool. ARGV: count, window µs, key lifetime ms, at µs (``''``: now), mode
(``used``: raise the count to ``count`` as seen at ``at``; ``add``: add ``count`` at ``at``), id. Answers
``{weight added, total}``."""

BLOCK = """
for i, key in ipairs(KEYS) do
  local ms = tonumber(ARGV[i])
  if redis.call('PTTL', key) < ms then
    redis.call('SET', key, '1', 'PX', ms)
  end
end
return #KEYS
"""
"""KEYS: pause or ban keys. ARGV: per key, its lifetime ms. Sets each key for that long unless it already
lives longer."""

_REASONS: dict[str, WaitReason] = {"full": "full", "paused": "paused", "banned": "banned"}


def pool_keys(prefix: str, pool: str) -> tuple[str, str, str]:
    """``(log, total, pause)`` keys of ``pool`` under ``prefix``."""
    base = f"{prefix}:pool:{pool}"
    return f"{base}:log", f"{base}:total", f"{base}:pause"


def ban_key(prefix: str, scope: str) -> str:
    """The ban key of ``scope`` under ``prefix``."""
    return f"{prefix}:scope:{scope}:ban"


class RedisWindowStore:
    """The pools' windows in Redis (see the module docstring). Every call is one script (EVALSHA, the script
    loaded again if the server lost it).

    Args:
        client: a ``redis.asyncio`` client (owned by the caller; give it short timeouts).
        pools: the pools (every process sharing them must use the same names, limits and windows).
        prefix: key prefix.

    Raises:
        ValueError: no pool, duplicate names, or an empty prefix.

    Every method raises the client's errors (``redis.exceptions.RedisError``, ``OSError``,
    ``TimeoutError``) as they come.
    """

    def __init__(self, client: aioredis.Redis, pools: Iterable[Pool], prefix: str) -> None:
        if not prefix:
            raise ValueError("the Redis key prefix must not be empty")
        self.pools = pool_table(pools)
        self.prefix = prefix
        self._client = client
        self._acquire = client.register_script(ACQUIRE)
        self._adjust = client.register_script(ADJUST)
        self._block = client.register_script(BLOCK)

    async def try_acquire(self, costs: dict[str, int]) -> Attempt:
        """One try: grant ``costs`` (validated) in every pool or in none.

        Returns:
            The attempt; a grant has ``source == "redis"`` and the server's epoch µs.
        """
        names = list(costs)
        keys: list[str] = []
        args: list[Any] = [len(names), uuid.uuid4().hex]
        for name in names:
            pool = self.pools[name]
            keys.extend(pool_keys(self.prefix, name))
            keys.append(ban_key(self.prefix, pool.scope))
            args.extend((costs[name], pool.limit, pool.window_us, self._ttl_ms(pool)))
        reply = await self._acquire(keys=keys, args=args)
        granted, now, wait, reason, index = reply
        if int(granted) == 1:
            return Attempt(Grant(int(now), dict(costs), "redis"), now_us=int(now))
        why = reason.decode() if isinstance(reason, bytes) else str(reason)
        return Attempt(None, max(1, int(wait)), _REASONS.get(why, "full"), names[int(index) - 1], int(now))

    async def observe_used(self, pool: str, used: int, at_us: int | None = None) -> int:
        """Raise ``pool``'s shared count to ``used`` as the exchange counted it at ``at_us`` (server epoch µs;
        ``None``: now); never lower it. Same rules as
        :meth:`cryptolink.ratelimit.local.LocalWindows.observe_used`: a count above the pool's limit is taken
        as the limit (a garbled or foreign header of 10**15 would otherwise sit in the log for a window).

        Returns:
            The weight added.

        Raises:
            KeyError: unknown pool.
        """
        return await self._adjust_pool(pool, min(used, self.pools[pool].limit), at_us, "used")

    async def add(self, pool: str, weight: int) -> int:
        """Count ``weight`` in ``pool`` now whatever the room (weight granted elsewhere). Returns ``weight``
        (0 when ``weight <= 0``).

        Raises:
            KeyError: unknown pool.
        """
        if weight <= 0:
            return 0
        return await self._adjust_pool(pool, weight, None, "add")

    async def _adjust_pool(self, pool: str, count: int, at_us: int | None, mode: str) -> int:
        spec = self.pools[pool]
        log, total, _pause = pool_keys(self.prefix, pool)
        args: list[Any] = [
            count,
            spec.window_us,
            self._ttl_ms(spec),
            "" if at_us is None else at_us,
            mode,
            uuid.uuid4().hex,
        ]
        added, _total = await self._adjust(keys=[log, total], args=args)
        return int(added)

    async def pause(self, pools: Sequence[str], duration_s: float) -> None:
        """No grant in ``pools`` for any process for ``duration_s`` s (a longer pause in force is kept).

        Raises:
            KeyError: an unknown pool.
        """
        await self.block(dict.fromkeys(pools, duration_s), {})

    async def ban(self, scope: str, duration_s: float) -> None:
        """No grant in any pool of ``scope`` for any process for ``duration_s`` s.

        Raises:
            KeyError: no pool has this scope.
        """
        await self.block({}, {scope: duration_s})

    async def block(self, pauses: Mapping[str, float], bans: Mapping[str, float]) -> None:
        """Pauses (pool -> s) and bans (scope -> s) at once, each for its own time from now, in one call; a
        longer pause or ban in force is kept. Nothing is sent when both are empty.

        Raises:
            KeyError: an unknown pool, or a scope no pool has.
        """
        keys: list[str] = []
        args: list[int] = []
        for name, seconds in pauses.items():
            keys.append(pool_keys(self.prefix, self.pools[name].name)[2])
            args.append(_ms(seconds))
        for scope, seconds in bans.items():
            if all(pool.scope != scope for pool in self.pools.values()):
                raise KeyError(scope)
            keys.append(ban_key(self.prefix, scope))
            args.append(_ms(seconds))
        if keys:
            await self._block(keys=keys, args=args)

    @staticmethod
    def _ttl_ms(pool: Pool) -> int:
        return -(-pool.window_us // 1000) + KEY_MARGIN_MS


def _ms(seconds: float) -> int:
    return max(1, -(-seconds_to_us(seconds) // 1000))
