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
    assert r.on_ack(Ack("subscribe", 1)) == ("subscribe", [A, B])
    assert set(r.confirmed) == {A, B} and r.pending_subscribe == (C,)


def test_ack_without_op_is_resolved_by_this_registry_request_id() -> None:
    """Binance acks say only ``{"result":null,"id":N}``: the op comes from the registry that sent N, so an
    unsubscribe ack is an unsubscribe ack even when another socket used the same number for a subscribe."""
    r = SubscriptionRegistry()
    r.want([A])
    r.sent(req("subscribe", 1, A), 0.0)
    assert r.on_ack(Ack(None, 1)) == ("subscribe", [A])
    r.drop([A])
    r.sent(req("unsubscribe", 2, A), 1.0)
    assert r.on_ack(Ack(None, 2)) == ("unsubscribe", [A])
    assert r.pending_unsubscribe == () and r.confirmed == ()
    other = SubscriptionRegistry()  # another socket: id 2 means nothing to it
    other.want([B])
    other.sent(req("subscribe", 3, B), 0.0)
    assert other.on_ack(Ack(None, 2)) == (None, []) and other.stale_acks == 1
    assert other.pending_subscribe == (B,)


def test_ack_naming_subscriptions_one_by_one() -> None:
    r = SubscriptionRegistry()
    r.want([A, B])
    r.sent(req("subscribe", 7, A, B), 0.0)
    assert r.on_ack(Ack("subscribe", 7, (Subscription(Channel.TRADES, "BTC/USDT"),))) == ("subscribe", [B])
    assert r.on_ack(Ack("subscribe", 7, (A,))) == ("subscribe", [A])
    assert r.on_ack(Ack("subscribe", 7, (A,))) == ("subscribe", [])  # duplicate: stale
    assert r.stale_acks == 1


def test_stale_and_late_acks_ignored() -> None:
    r = SubscriptionRegistry()
    r.want([A])
    r.sent(req("subscribe", 1, A), 0.0)
    assert r.on_ack(Ack("subscribe", 99)) == ("subscribe", [])  # unknown id
    r.drop([A])
    assert r.on_ack(Ack("subscribe", 1)) == ("subscribe", [])  # already removed
    assert r.confirmed == () and r.stale_acks == 2
    r.want([A])
    r.sent(req("subscribe", 2, A), 1.0)
    r.replay()
    r.sent(req("subscribe", 3, A), 2.0)
    assert r.on_ack(Ack("subscribe", 2)) == ("subscribe", [])  # ack from the old socket
    assert r.on_ack(Ack("subscribe", 3)) == ("subscribe", [A])


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
    assert r.on_ack(Ack("unsubscribe", 2)) == ("unsubscribe", [A])
    assert r.is_desired(A.key) and r.pending_subscribe == (A,)
    assert r.on_ack(Ack("subscribe", 3)) == ("subscribe", [A])


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
