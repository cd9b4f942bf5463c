"""The subscription registry as a hypothesis state machine, against a model written from its contract.

Rules are what the engine does with one registry (``engine/connection.py``, ``engine/session.py`` and the ack
timeout check): the user wants and drops subscriptions and forces resubscriptions; subscribe / unsubscribe
requests are sent in chunks under fresh process-unique ids; the exchange answers with acks by id only (Binance
``{"result":null,"id":N}``: op unknown), with op and id, or naming the subscriptions (OKX echoes each ``arg``),
rejects requests, or says nothing (ack timeouts: one retry, then a local ``ack_timeout`` rejection); answers can
be duplicated or arrive late, for requests of an earlier socket; the socket is replaced (``replay``) and a
rotation candidate is forked.

Invariants after every step: each subscription is in exactly one state (confirmed, pending, rejected or not
wanted), equal to the model's; ``desired`` keeps the order first asked for and the original arguments; counts
agree; request ids are never reused; every request-id entry the registry keeps refers to a request that still
has something in flight (bounded by what is in flight, not by history).

Protocol sources: Binance answers a SUBSCRIBE / UNSUBSCRIBE with ``{"result": null, "id": N}``
(https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams#live-subscribingunsubscribing-to-streams);
OKX answers each ``arg`` with ``{"event": "subscribe", "arg": {...}}`` or ``{"event": "error", ...}``
(https://www.okx.com/docs-v5/en/#overview-websocket-subscribe).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cryptolink.engine.subscriptions import SubscriptionRegistry, take_request_ids
from cryptolink.exchanges.base import Ack, OutboundRequest, Rejected
from cryptolink.models import Channel, Subscription
from tests.property import PROFILE, examples

Key = tuple[Channel, str]
Op = Literal["subscribe", "unsubscribe"]
State = Literal["unsent", "sent", "confirmed", "rejected"]

SUBS = [
    Subscription(ch, sym, depth=400 if ch is Channel.BOOK else None)
    for sym in ("BTC/USDT", "ETH/USDT")
    for ch in (Channel.BOOK, Channel.TRADES, Channel.TICKER)
]
ACK_TIMEOUT_S = 10.0
subsets = st.lists(st.sampled_from(SUBS), min_size=1, max_size=4, unique=True)


@dataclass
class KeyModel:
    state: State
    original: Subscription
    request_id: int | None = None
    sent_at: float | None = None
    attempts: int = 0


@dataclass
class Model:
    keys: dict[Key, KeyModel] = field(default_factory=dict)
    order: list[Key] = field(default_factory=list)
    unsub: dict[Key, tuple[int, Subscription]] = field(default_factory=dict)
    stale_acks: int = 0

    def desired(self) -> list[Key]:
        return [k for k in self.order if self.keys[k].state != "rejected"]


class RegistryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.reg = SubscriptionRegistry()
        self.m = Model()
        self.now = 0.0
        self.issued: set[int] = set()
        self.wire: list[tuple[int, Op, tuple[Subscription, ...]]] = []
        """Every request sent (answers may come late, twice, or for an earlier socket)."""

    # ------------------------------------------------------------------------------------------ user actions
    @rule(subs=subsets, depth=st.sampled_from([None, 5]))
    def want(self, subs: list[Subscription], depth: int | None) -> None:
        given = [Subscription(s.channel, s.symbol, depth if depth else s.depth) for s in subs]
        expected = []
        for s in given:
            km = self.m.keys.get(s.key)
            if km is not None and km.state != "rejected":
                continue
            self.m.keys[s.key] = KeyModel("unsent", s)
            if s.key in self.m.order:
                self.m.order.remove(s.key)
            self.m.order.append(s.key)
            expected.append(s)
        assert self.reg.want(given) == expected

    @rule(subs=subsets, send=st.booleans(), chunk=st.integers(1, 3))
    def drop(self, subs: list[Subscription], send: bool, chunk: int) -> None:
        expected = []
        for s in subs:
            km = self.m.keys.get(s.key)
            if km is None or km.state == "rejected":
                continue
            expected.append(km.original)
            del self.m.keys[s.key]
            self.m.order.remove(s.key)
        removed = self.reg.drop(subs)
        assert removed == expected
        if send and removed:
            self._send("unsubscribe", removed, chunk)

    @rule(subs=subsets, chunk=st.integers(1, 3))
    def resubscribe(self, subs: list[Subscription], chunk: int) -> None:
        """``ManagedConnection.resubscribe``: back to pending, unsubscribe sent, then subscribe again."""
        expected = []
        for s in subs:
            km = self.m.keys.get(s.key)
            if km is None or km.state == "rejected":
                continue
            self.m.keys[s.key] = KeyModel("unsent", km.original)
            expected.append(km.original)
        originals = self.reg.mark_resubscribe(subs)
        assert originals == expected
        if originals:
            self._send("unsubscribe", originals, chunk)

    # ------------------------------------------------------------------------------------------- sending
    @rule(chunk=st.integers(1, 4))
    def send_pending(self, chunk: int) -> None:
        unsent = self.reg.unsent()
        assert [s.key for s in unsent] == [k for k in self.m.desired() if self.m.keys[k].state == "unsent"]
        assert unsent == [self.m.keys[s.key].original for s in unsent]
        if unsent:
            self._send("subscribe", unsent, chunk)

    def _send(self, op: Op, subs: list[Subscription], chunk: int) -> None:
        for i in range(0, len(subs), chunk):
            part = tuple(subs[i : i + chunk])
            rid = take_request_ids(1)
            assert rid not in self.issued, "request id reused"
            self.issued.add(rid)
            self.reg.sent(OutboundRequest("{}", rid, op, part), self.now)
            self.wire.append((rid, op, part))
            for s in part:
                if op == "subscribe":
                    km = self.m.keys[s.key]
                    km.state, km.request_id, km.sent_at = "sent", rid, self.now
                    km.attempts += 1
                else:
                    # a key already being unsubscribed keeps the subscription first given
                    first = self.m.unsub[s.key][1] if s.key in self.m.unsub else s
                    self.m.unsub[s.key] = (rid, first)

    # ------------------------------------------------------------------------------------- exchange answers
    def _in_flight(self, rid: int, op: Op, keys: list[Key]) -> list[Key]:
        if op == "subscribe":
            return [
                k
                for k in keys
                if k in self.m.keys and self.m.keys[k].state == "sent" and self.m.keys[k].request_id == rid
            ]
        return [k for k in keys if k in self.m.unsub and self.m.unsub[k][0] == rid]

    @precondition(lambda self: bool(self.wire))
    @rule(data=st.data(), style=st.sampled_from(["id", "op+id", "named", "named-part", "unknown"]))
    def ack(self, data: st.DataObject, style: str) -> None:
        rid, op, part = data.draw(st.sampled_from(self.wire), label="request")
        keys = [s.key for s in part]
        if style == "unknown":
            rid = 10**12 + rid  # never issued
        if style.startswith("named"):
            n = len(part) if style == "named" else data.draw(st.integers(1, len(part)), label="named")
            named = tuple(Subscription(s.channel, s.symbol) for s in part[:n])
            keys = [s.key for s in named]
            answer = Ack(op, rid, named)
        else:
            answer = Ack(op if style != "id" else None, rid)
        done = self._in_flight(rid, op, keys)
        got_op, got = self.reg.on_ack(answer)
        if op == "subscribe":
            assert got == [self.m.keys[k].original for k in done]
            for k in done:
                km = self.m.keys[k]
                km.state, km.request_id, km.sent_at = "confirmed", None, None
        else:
            assert got == [self.m.unsub[k][1] for k in done]
            for k in done:
                del self.m.unsub[k]
        if done:
            assert got_op == op
        else:
            self.m.stale_acks += 1

    @precondition(lambda self: bool(self.wire))
    @rule(data=st.data(), named=st.booleans())
    def reject(self, data: st.DataObject, named: bool) -> None:
        rid, op, part = data.draw(st.sampled_from(self.wire), label="request")
        subs = tuple(Subscription(s.channel, s.symbol) for s in part) if named else ()
        keys = [s.key for s in part]
        refused = self.reg.on_rejected(Rejected(rid, "-1", "refused", subs))
        if op == "subscribe":
            done = self._in_flight(rid, "subscribe", keys)
            assert refused == [self.m.keys[k].original for k in done]
            for k in done:
                self.m.keys[k].state = "rejected"
            if not done:
                self.m.stale_acks += 1
        else:
            assert refused == []
            done = self._in_flight(rid, "unsubscribe", keys)
            for k in done:
                del self.m.unsub[k]
            if not done:
                self.m.stale_acks += 1

    # ------------------------------------------------------------------------------------------------ time
    @rule(dt=st.sampled_from([1.0, 5.0, ACK_TIMEOUT_S]))
    def tick(self, dt: float) -> None:
        """The engine's ack-timeout check: one retry, then a local ``ack_timeout`` rejection."""
        self.now += dt
        expired = self.reg.expired(self.now, ACK_TIMEOUT_S)
        want = [
            k
            for k in self.m.desired()
            if self.m.keys[k].sent_at is not None
            and self.m.keys[k].state == "sent"
            and self.now - (self.m.keys[k].sent_at or 0.0) >= ACK_TIMEOUT_S
        ]
        assert sorted(p.subscription.key for p in expired) == sorted(want)
        for p in expired:
            km = self.m.keys[p.subscription.key]
            assert p.attempts == km.attempts
            if p.attempts < 2:
                self.reg.mark_unsent(p.subscription)
                km.state, km.request_id, km.sent_at = "unsent", None, None
            else:
                self.reg.reject(p.subscription, "ack_timeout", "no ack after one retry")
                km.state = "rejected"

    # ----------------------------------------------------------------------------------------- sessions
    @rule()
    def reconnect(self) -> None:
        replay = self.reg.replay()
        desired = self.m.desired()
        assert replay == [self.m.keys[k].original for k in desired]
        for k in desired:
            self.m.keys[k] = KeyModel("unsent", self.m.keys[k].original)
        self.m.unsub.clear()

    @rule()
    def fork(self) -> None:
        f = self.reg.fork()
        desired = [self.m.keys[k].original for k in self.m.desired()]
        assert list(f.desired) == desired and f.unsent() == desired
        assert f.confirmed == () and f.pending_unsubscribe == ()
        assert {r.subscription.key for r in f.rejected} == {r.subscription.key for r in self.reg.rejected}

    # ------------------------------------------------------------------------------------------ invariants
    @invariant()
    def states_agree_with_the_model(self) -> None:
        reg, m = self.reg, self.m
        confirmed = [s.key for s in reg.confirmed]
        pending = [s.key for s in reg.pending_subscribe]
        rejected = [r.subscription.key for r in reg.rejected]
        desired = [s.key for s in reg.desired]
        # exactly one state per subscription
        assert len(set(confirmed)) == len(confirmed) and len(set(pending)) == len(pending)
        assert not set(confirmed) & set(pending)
        assert not set(rejected) & set(desired)
        assert set(desired) == set(confirmed) | set(pending)
        assert len(reg) == len(desired) == len(confirmed) + len(pending)
        # equal to the model, order and original arguments included
        assert desired == m.desired()
        assert list(reg.desired) == [m.keys[k].original for k in m.desired()]
        assert set(confirmed) == {k for k, km in m.keys.items() if km.state == "confirmed"}
        assert set(pending) == {k for k, km in m.keys.items() if km.state in ("unsent", "sent")}
        assert set(rejected) == {k for k, km in m.keys.items() if km.state == "rejected"}
        assert {s.key for s in reg.pending_unsubscribe} == set(m.unsub)
        assert reg.stale_acks == m.stale_acks

    @invariant()
    def request_id_map_is_bounded_by_what_is_in_flight(self) -> None:
        live = {km.request_id for km in self.m.keys.values() if km.state == "sent"}
        live |= {rid for rid, _ in self.m.unsub.values()}
        kept = set(self.reg._by_id)
        assert kept <= live, f"request ids kept with nothing in flight: {sorted(kept - live)}"


RegistryMachine.TestCase.settings = settings(PROFILE, max_examples=examples(200), stateful_step_count=30)
test_subscription_registry = RegistryMachine.TestCase


def test_superseded_requests_leave_no_request_id_behind() -> None:
    """Found by the machine: two resubscriptions of one key before any answer left the first unsubscribe's id
    in the request-id map for good (likewise a dropped or timed-out subscribe never answered), so the map grew
    with every unanswered request of a long-lived socket."""
    a = SUBS[0]
    r = SubscriptionRegistry()
    r.want([a])
    for _ in range(3):
        r.mark_resubscribe([a])
        r.sent(OutboundRequest("{}", take_request_ids(1), "unsubscribe", (a,)), 0.0)
    sub_id = take_request_ids(1)
    r.sent(OutboundRequest("{}", sub_id, "subscribe", (a,)), 0.0)
    r.reject(a, "ack_timeout", "no ack after one retry")
    assert len(r._by_id) == 1  # only the last unsubscribe is still in flight
    b, c = SUBS[1], SUBS[2]
    r.want([b, c])
    both = take_request_ids(1)
    r.sent(OutboundRequest("{}", both, "subscribe", (b, c)), 0.0)
    r.mark_unsent(b)  # only b is resent: c's id-only ack must still resolve
    assert r.on_ack(Ack(None, both)) == ("subscribe", [c])


def test_unsent_is_in_desired_order_after_a_resubscription() -> None:
    """Found by the machine: ``unsent()`` promised desired order but followed the pending map's insertion order,
    so a confirmed subscription sent back to pending went behind ones asked for after it."""
    a, b = SUBS[0], SUBS[1]
    r = SubscriptionRegistry()
    r.want([a, b])
    rid = take_request_ids(1)
    r.sent(OutboundRequest("{}", rid, "subscribe", (a,)), 0.0)
    assert r.on_ack(Ack(None, rid)) == ("subscribe", [a])
    r.mark_resubscribe([a])
    assert r.unsent() == [a, b]
