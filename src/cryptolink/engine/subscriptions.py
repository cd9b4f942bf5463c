"""Subscription registry of one logical connection: what we want, what the exchange confirmed, what is in
flight.

Sets, keyed by ``Subscription.key`` = ``(channel, symbol)`` (one subscription per key per connection):

- ``confirmed``: acked by the exchange on the current socket;
- ``pending_subscribe``: wanted, not acked yet (``request_id`` ``None`` while not sent);
- ``pending_unsubscribe``: unsubscribe sent, not acked yet;
- ``rejected``: refused by the exchange (or never acked after one retry); kept for reporting and **not retried
  automatically** (only an explicit new ``want`` retries it).

``desired`` = confirmed + pending_subscribe, in the order first asked for. Acks that name only an id (Binance
``{"result":null,"id":1}``, docs/protocols/binance.md) are resolved through this registry's request-id map,
op included (subscribe or unsubscribe: the adapter does not know which); acks that name the subscriptions (OKX
echoes each ``arg``, docs/protocols/okx.md) are resolved by key. Request ids are unique in the process
(:func:`take_request_ids`), so one socket's ack can never resolve another socket's request. Late or stale
acks (unknown id, a key that was removed or re-requested under a newer id) are ignored and counted in
``stale_acks``.

After a reconnect :meth:`SubscriptionRegistry.replay` returns every desired subscription with its ORIGINAL
arguments (the ``Subscription`` objects as first given, ``depth`` included) and marks them pending again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from cryptolink.exchanges.base import Ack, OutboundRequest, Rejected
from cryptolink.models import Channel, Subscription

__all__ = ["Pending", "RejectedSubscription", "SubscriptionRegistry", "peek_request_id", "take_request_ids"]

Key = tuple[Channel, str]

_next_request_id = 1


def peek_request_id() -> int:
    """The next request id :func:`take_request_ids` will hand out."""
    return _next_request_id


def take_request_ids(n: int) -> int:
    """Reserve ``n`` consecutive request ids, unique in this process; return the first."""
    global _next_request_id
    first = _next_request_id
    _next_request_id += max(0, n)
    return first


@dataclass(slots=True)
class Pending:
    """An in-flight request for one subscription (``sent_at`` monotonic s; ``attempts`` sends so far)."""

    subscription: Subscription
    request_id: int | str | None = None
    sent_at: float | None = None
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class RejectedSubscription:
    """A subscription the exchange refused: its code and message as sent by the exchange."""

    subscription: Subscription
    code: str
    message: str


class SubscriptionRegistry:
    """Protocol state of the subscriptions of one logical connection (sans-I/O)."""

    def __init__(self) -> None:
        self._order: dict[Key, Subscription] = {}  # desired, insertion-ordered
        self._confirmed: dict[Key, Subscription] = {}
        self._pending_sub: dict[Key, Pending] = {}
        self._pending_unsub: dict[Key, Pending] = {}
        self._rejected: dict[Key, RejectedSubscription] = {}
        self._by_id: dict[int | str, tuple[Literal["subscribe", "unsubscribe"], list[Key]]] = {}
        self.stale_acks = 0
        """Acks or rejections ignored because they matched nothing in flight."""

    # views --------------------------------------------------------------------------------------------------
    @property
    def desired(self) -> tuple[Subscription, ...]:
        """Confirmed and pending subscriptions, in the order first asked for."""
        return tuple(self._order.values())

    @property
    def confirmed(self) -> tuple[Subscription, ...]:
        return tuple(self._confirmed.values())

    @property
    def pending_subscribe(self) -> tuple[Subscription, ...]:
        return tuple(p.subscription for p in self._pending_sub.values())

    @property
    def pending_unsubscribe(self) -> tuple[Subscription, ...]:
        return tuple(p.subscription for p in self._pending_unsub.values())

    @property
    def rejected(self) -> tuple[RejectedSubscription, ...]:
        return tuple(self._rejected.values())

    def is_desired(self, key: Key) -> bool:
        """Whether ``key`` is confirmed or pending subscribe."""
        return key in self._order

    def __len__(self) -> int:
        return len(self._order)

    # changes asked by the user ------------------------------------------------------------------------------
    def want(self, subs: Iterable[Subscription]) -> list[Subscription]:
        """Add ``subs`` to the desired set (unsent) and return the ones that were not desired yet.

        Re-wanting a rejected subscription clears its rejection (an explicit retry).
        """
        added: list[Subscription] = []
        for sub in subs:
            key = sub.key
            if key in self._order:
                continue
            self._rejected.pop(key, None)
            self._order[key] = sub
            self._pending_sub[key] = Pending(sub)
            added.append(sub)
        return added

    def drop(self, subs: Iterable[Subscription]) -> list[Subscription]:
        """Remove ``subs`` from the desired set; return those that were desired (to unsubscribe)."""
        removed: list[Subscription] = []
        for sub in subs:
            key = sub.key
            original = self._order.pop(key, None)
            if original is None:
                continue
            self._confirmed.pop(key, None)
            self._forget(key, self._pending_sub.pop(key, None))
            removed.append(original)
        return removed

    def mark_resubscribe(self, subs: Iterable[Subscription]) -> list[Subscription]:
        """Move desired ``subs`` back to pending subscribe (unsent), for an unsubscribe + subscribe cycle.

        Returns the original desired subscriptions concerned (unknown ones are skipped).
        """
        out: list[Subscription] = []
        for sub in subs:
            original = self._order.get(sub.key)
            if original is None:
                continue
            self._confirmed.pop(sub.key, None)
            self._forget(sub.key, self._pending_sub.get(sub.key))
            self._pending_sub[sub.key] = Pending(original)
            out.append(original)
        return out

    def unsent(self) -> list[Subscription]:
        """Pending subscriptions with no request sent yet, in desired order."""
        pending = self._pending_sub
        return [
            p.subscription
            for key in self._order
            if (p := pending.get(key)) is not None and p.request_id is None and p.sent_at is None
        ]

    # protocol -----------------------------------------------------------------------------------------------
    def sent(self, request: OutboundRequest, now: float) -> None:
        """Record that ``request`` was sent at monotonic ``now`` (s)."""
        keys: list[Key] = []
        for sub in request.subscriptions:
            key = sub.key
            if request.op == "subscribe":
                p = self._pending_sub.get(key)
                if p is None:
                    continue
            else:
                p = self._pending_unsub.get(key)
                if p is None:
                    p = self._pending_unsub[key] = Pending(sub)
            self._forget(key, p)  # an earlier request of this key is superseded
            p.request_id = request.request_id
            p.sent_at = now
            p.attempts += 1
            keys.append(key)
        if request.request_id is not None and keys:
            self._by_id[request.request_id] = (request.op, keys)

    def _op_of(self, request_id: int | str | None) -> Literal["subscribe", "unsubscribe"] | None:
        entry = self._by_id.get(request_id) if request_id is not None else None
        return entry[0] if entry is not None else None

    def _resolve(
        self, op: str, request_id: int | str | None, named: tuple[Subscription, ...]
    ) -> list[tuple[Key, Pending]]:
        table = self._pending_sub if op == "subscribe" else self._pending_unsub
        out: list[tuple[Key, Pending]] = []
        entry = self._by_id.get(request_id) if request_id is not None else None
        if entry is not None and entry[0] != op:
            entry = None
        if named:
            candidates = [s.key for s in named]
        elif entry is not None:
            candidates = list(entry[1])
        else:
            return out
        for key in candidates:
            p = table.get(key)
            if p is None or p.sent_at is None:
                continue
            if request_id is not None and p.request_id != request_id:
                continue  # an ack for an older request of the same key
            out.append((key, p))
        if entry is not None and request_id is not None:
            remaining = [k for k in entry[1] if k not in {k2 for k2, _ in out}]
            if remaining and named:
                self._by_id[request_id] = (entry[0], remaining)
            else:
                del self._by_id[request_id]
        return out

    def on_ack(self, ack: Ack) -> tuple[Literal["subscribe", "unsubscribe"] | None, list[Subscription]]:
        """Apply an ack; return its op (the adapter's, or resolved from the request id when the adapter left
        it ``None``) and the subscriptions it confirmed (subscribe) or released (unsubscribe)."""
        op = ack.op or self._op_of(ack.request_id)
        if op is None:
            self.stale_acks += 1
            return None, []
        resolved = self._resolve(op, ack.request_id, ack.subscriptions)
        if not resolved:
            self.stale_acks += 1
            return op, []
        out: list[Subscription] = []
        for key, p in resolved:
            if op == "subscribe":
                del self._pending_sub[key]
                self._confirmed[key] = p.subscription
            else:
                del self._pending_unsub[key]
            out.append(p.subscription)
        return op, out

    def on_rejected(self, rejection: Rejected) -> list[Subscription]:
        """Apply a rejection; return the subscriptions it refused (they leave the desired set, not retried).

        A rejection that matches no in-flight subscribe (e.g. ``id`` null) returns ``[]``; an unsubscribe
        that was refused is simply forgotten.
        """
        resolved = self._resolve("subscribe", rejection.request_id, rejection.subscriptions)
        if not resolved:
            unsub = self._resolve("unsubscribe", rejection.request_id, rejection.subscriptions)
            for key, _ in unsub:
                del self._pending_unsub[key]
            if not unsub:
                self.stale_acks += 1
            return []
        out: list[Subscription] = []
        for key, p in resolved:
            self._reject(key, p.subscription, rejection.code, rejection.message)
            out.append(p.subscription)
        return out

    def _reject(self, key: Key, sub: Subscription, code: str, message: str) -> None:
        self._forget(key, self._pending_sub.pop(key, None))
        self._confirmed.pop(key, None)
        self._order.pop(key, None)
        self._rejected[key] = RejectedSubscription(sub, code, message)

    def reject(self, sub: Subscription, code: str, message: str) -> None:
        """Record a local rejection of ``sub`` (e.g. ``ack_timeout``); it leaves the desired set."""
        original = self._order.get(sub.key, sub)
        self._reject(sub.key, original, code, message)

    def expired(self, now: float, timeout_s: float) -> list[Pending]:
        """Sent subscribe requests unacked ``timeout_s`` after sending (live entries)."""
        return [
            p for p in self._pending_sub.values() if p.sent_at is not None and now - p.sent_at >= timeout_s
        ]

    def mark_unsent(self, sub: Subscription) -> None:
        """Make a pending subscription eligible for sending again (keeps its attempt count)."""
        p = self._pending_sub.get(sub.key)
        if p is not None:
            self._forget(sub.key, p)
            p.request_id = None
            p.sent_at = None

    def _forget(self, key: Key, p: Pending | None) -> None:
        """Take ``key`` out of the request-id entry of ``p``, a pending request being discarded or superseded;
        an entry left with nothing in flight is deleted, so the map is bounded by what is in flight (not by
        the requests that were never answered)."""
        if p is None or p.request_id is None:
            return
        entry = self._by_id.get(p.request_id)
        if entry is None:
            return
        keys = [k for k in entry[1] if k != key]
        if keys:
            self._by_id[p.request_id] = (entry[0], keys)
        else:
            del self._by_id[p.request_id]

    # sessions -----------------------------------------------------------------------------------------------
    def replay(self) -> list[Subscription]:
        """After a reconnect: every desired subscription (original arguments), now all pending and unsent.

        Pending unsubscribes and the request-id map are dropped (they belonged to the old socket).
        """
        self._confirmed.clear()
        self._pending_unsub.clear()
        self._by_id.clear()
        self._pending_sub = {key: Pending(sub) for key, sub in self._order.items()}
        return list(self._order.values())

    def fork(self) -> SubscriptionRegistry:
        """A registry for a replacement socket: same desired set (pending, unsent), same rejections."""
        other = SubscriptionRegistry()
        other._order = dict(self._order)
        other._pending_sub = {key: Pending(sub) for key, sub in self._order.items()}
        other._rejected = dict(self._rejected)
        return other
