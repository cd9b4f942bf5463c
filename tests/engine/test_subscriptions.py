from cryptolink.engine.subscriptions import SubscriptionRegistry
from cryptolink.exchanges.base import Ack, OutboundRequest, Rejected
from cryptolink.models import Channel, Subscription

A = Subscription(Channel.BOOK, "BTC/USDT", depth=400)
B = Subscription(Channel.TRADES, "BTC/USDT")
C = Subscription(Channel.TICKER, "ETH/USDT")


def req(op: str, rid: int | None, *subs: Subscription) -> OutboundRequest:
    return OutboundRequest("{}", rid, op, subs)  # type: ignore[arg-type]


def test_ack_by_id_only_confirms_the_request_subscriptions() -> None:
    r = SubscriptionRegistry()
    assert r.want([A, B, C]) == [A, B, C]
    r.sent(req("subscribe", 1, A, B), 0.0)
    r.sent(req("subscribe", 2, C), 0.0)
    assert r.on_ack(Ack("subscribe", 1)) == [A, B]
    assert set(r.confirmed) == {A, B} and r.pending_subscribe == (C,)


def test_ack_naming_subscriptions_one_by_one() -> None:
    r = SubscriptionRegistry()
    r.want([A, B])
    r.sent(req("subscribe", 7, A, B), 0.0)
    assert r.on_ack(Ack("subscribe", 7, (Subscription(Channel.TRADES, "BTC/USDT"),))) == [B]
    assert r.on_ack(Ack("subscribe", 7, (A,))) == [A]
    assert r.on_ack(Ack("subscribe", 7, (A,))) == []  # duplicate: stale
    assert r.stale_acks == 1


def test_stale_and_late_acks_ignored() -> None:
    r = SubscriptionRegistry()
    r.want([A])
    r.sent(req("subscribe", 1, A), 0.0)
    assert r.on_ack(Ack("subscribe", 99)) == []  # unknown id
    r.drop([A])
    assert r.on_ack(Ack("subscribe", 1)) == []  # already removed
    assert r.confirmed == () and r.stale_acks == 2
    r.want([A])
    r.sent(req("subscribe", 2, A), 1.0)
    r.replay()
    r.sent(req("subscribe", 3, A), 2.0)
    assert r.on_ack(Ack("subscribe", 2)) == []  # ack from the old socket
    assert r.on_ack(Ack("subscribe", 3)) == [A]


def test_rejection_recorded_and_not_replayed() -> None:
    r = SubscriptionRegistry()
    r.want([A, B])
    r.sent(req("subscribe", 1, A), 0.0)
    r.sent(req("subscribe", 2, B), 0.0)
    assert r.on_rejected(Rejected(1, "2", "bad")) == [A]
    assert [x.subscription for x in r.rejected] == [A]
    assert r.replay() == [B]  # never retried automatically
    assert r.on_rejected(Rejected(None, "3", "?")) == []  # id null: matches nothing
    r.want([A])  # explicit retry clears the rejection
    assert r.rejected == ()


def test_replay_returns_original_arguments_in_order() -> None:
    r = SubscriptionRegistry()
    r.want([A, B, C])
    r.sent(req("subscribe", 1, A, B, C), 0.0)
    r.on_ack(Ack("subscribe", 1))
    r.drop([B])
    r.sent(req("unsubscribe", 2, B), 0.0)
    replay = r.replay()
    assert replay == [A, C] and replay[0].depth == 400
    assert r.confirmed == () and r.pending_unsubscribe == () and r.unsent() == [A, C]


def test_unsubscribe_ack_and_resubscribe_cycle() -> None:
    r = SubscriptionRegistry()
    r.want([A])
    r.sent(req("subscribe", 1, A), 0.0)
    r.on_ack(Ack("subscribe", 1))
    assert r.mark_resubscribe([Subscription(Channel.BOOK, "BTC/USDT")]) == [A]
    r.sent(req("unsubscribe", 2, A), 1.0)
    r.sent(req("subscribe", 3, A), 1.0)
    assert r.on_ack(Ack("unsubscribe", 2)) == [A]
    assert r.is_desired(A.key) and r.pending_subscribe == (A,)
    assert r.on_ack(Ack("subscribe", 3)) == [A]


def test_expired_and_fork() -> None:
    r = SubscriptionRegistry()
    r.want([A, B])
    r.sent(req("subscribe", 1, A), 0.0)
    assert [p.subscription for p in r.expired(10.0, 10.0)] == [A]
    r.mark_unsent(A)
    assert r.expired(20.0, 10.0) == [] and A in r.unsent()
    r.reject(B, "ack_timeout", "x")
    f = r.fork()
    assert f.desired == (A,) and f.unsent() == [A] and len(f.rejected) == 1
