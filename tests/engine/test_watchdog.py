import pytest

from cryptolink.engine.watchdog import Watchdog, WatchdogConfig

BUSY = ("book", "BTC/USDT")
QUIET = ("trades", "XYZ/USDT")


def feed(w: Watchdog, key: object, start: float, gap: float, n: int) -> float:
    t = start
    for _ in range(n):
        w.on_data(key, t)
        t += gap
    return t - gap


def test_busy_stream_caught_within_3_s() -> None:
    w = Watchdog()
    w.arm(BUSY, 0.0)
    last = feed(w, BUSY, 0.0, 0.1, 600)  # depth@100ms for a minute
    assert w.check(last + 1.0) == []
    t = last
    while not (reports := w.check(t)):
        t += 0.05
    assert t - last <= 3.0
    assert reports[0].key == BUSY and not reports[0].first_data and reports[0].count == 1


def test_quiet_stream_judged_by_its_rhythm() -> None:
    w = Watchdog()
    w.arm(QUIET, 0.0)
    last = feed(w, QUIET, 0.0, 60.0, 20)  # one trade a minute
    assert w.check(last + 180.0) == []  # three quiet minutes are normal for it
    assert w.threshold(QUIET) >= 300
    assert w.check(last + 901.0)[0].key == QUIET  # capped at max_idle_s


def test_first_data_timeout() -> None:
    w = Watchdog(WatchdogConfig(first_data_timeout_s=10))
    w.arm(BUSY, 100.0)
    assert w.check(109.9) == []
    (r,) = w.check(110.1)
    assert r.first_data and r.silence_s == pytest.approx(10.1)


def test_only_on_data_resets_and_reports_back_off() -> None:
    w = Watchdog()
    w.arm(BUSY, 0.0)
    feed(w, BUSY, 0.0, 0.1, 100)
    # pings/pongs/heartbeats are not fed to the watchdog at all: silence keeps growing
    assert w.check(20.0)[0].count == 1
    assert w.is_stale(BUSY)
    assert w.check(20.1) == []  # not re-reported at once
    later = w.check(40.0)
    assert later and later[0].count == 2
    w.on_data(BUSY, 41.0)
    assert not w.is_stale(BUSY)


def test_next_deadline_and_unknown_keys() -> None:
    w = Watchdog(WatchdogConfig(first_data_timeout_s=5))
    assert w.next_deadline() is None
    w.on_data(("x", "y"), 1.0)  # unknown: ignored
    w.arm(BUSY, 2.0)
    assert w.next_deadline() == 7.0
    w.remove(BUSY)
    assert w.check(100.0) == []


def test_rearm_keeps_learned_rhythm() -> None:
    w = Watchdog()
    w.arm(QUIET, 0.0)
    feed(w, QUIET, 0.0, 60.0, 10)
    learned = w.threshold(QUIET)
    w.arm_all(1000.0)  # reconnect
    assert w.threshold(QUIET) == w.config.first_data_timeout_s  # waits for first data again
    w.on_data(QUIET, 1005.0)
    assert w.threshold(QUIET) == learned
