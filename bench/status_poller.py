"""A status client in its own process (so its CPU is not the engine's): ``GET /api/system/status`` every
``--poll`` s and a Prometheus-style scrape of ``/metrics`` every ``--scrape`` s, until SIGTERM; then prints one
JSON line ``{"polls", "scrapes", "errors", "missed", "poll_ms_p50", "scrape_ms_p50"}``.

Requests run on a fixed schedule, as a monitoring system's do: the k-th poll is due at ``start + k * poll``
(not ``poll`` after the previous answer, which would drift by each request's time). A slot that passes while a
request is still running is skipped and counted in ``missed``. ``poll_ms_p50`` / ``scrape_ms_p50`` are the
median round trips, ms (``null`` when none succeeded).

It prints ``{"ready": true}`` before its first request.

``python -m bench.status_poller URL [--poll 1] [--scrape 5]``
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import time

import httpx

__all__ = ["Schedule", "main"]


class Schedule:
    """Due times ``start + k * period_s`` (k = 1, 2, ...), monotonic s.

    Args:
        start: the schedule's origin, monotonic s.
        period_s: the period, s (> 0).

    Raises:
        ValueError: ``period_s`` is not positive.
    """

    def __init__(self, start: float, period_s: float) -> None:
        if period_s <= 0:
            raise ValueError("period_s must be > 0")
        self.start = start
        self.period_s = period_s
        self.k = 0
        self.missed = 0
        """Due times skipped because they passed before the previous request ended."""

    def next_due(self) -> float:
        """The next due time, monotonic s."""
        return self.start + (self.k + 1) * self.period_s

    def take(self, now: float) -> bool:
        """Whether a request is due at ``now``; if so, consume its slot (slots already past are counted in
        :attr:`missed` and skipped)."""
        due = self.next_due()
        if now < due:
            return False
        k_now = max(self.k + 1, math.floor((now - self.start) / self.period_s))  # rounding never goes back
        self.missed += k_now - (self.k + 1)
        self.k = k_now
        return True


def _p50(values: list[float]) -> float | None:
    return sorted(values)[len(values) // 2] if values else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("url")
    ap.add_argument("--poll", type=float, default=1.0)
    ap.add_argument("--scrape", type=float, default=5.0)
    args = ap.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    polls: list[float] = []
    scrapes: list[float] = []
    errors = 0
    start = time.monotonic()
    schedules = {
        "/api/system/status": (Schedule(start, args.poll), polls),
        "/metrics": (Schedule(start, args.scrape), scrapes),
    }
    print(json.dumps({"ready": True}), flush=True)
    with httpx.Client(base_url=args.url, timeout=10) as http:
        while not stop.is_set():
            for path, (schedule, times) in schedules.items():
                if not schedule.take(time.monotonic()):
                    continue
                t0 = time.perf_counter()
                try:
                    http.get(path).raise_for_status()
                    times.append((time.perf_counter() - t0) * 1000)
                except httpx.HTTPError:
                    errors += 1
            wake = min(schedule.next_due() for schedule, _ in schedules.values())
            stop.wait(max(0.0, wake - time.monotonic()))

    out = {
        "polls": len(polls),
        "scrapes": len(scrapes),
        "errors": errors,
        "missed": sum(schedule.missed for schedule, _ in schedules.values()),
        "poll_ms_p50": _p50(polls),
        "scrape_ms_p50": _p50(scrapes),
    }
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
